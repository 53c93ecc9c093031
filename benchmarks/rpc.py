"""RPC through the public API: durable increments (1 caller, 64 callers) and no-write pings.

Each benchmark opens its own runtime on a fresh data directory, warms up, then calls for a
fixed time or call count, whichever ends first. Afterwards it checks that the counters hold
exactly the number of increments acknowledged, also after reopening the data directory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import trio

from runtime import ActorStub, open_runtime

from .counter import BINDING, Counter
from .figures import BenchmarkResult, Target, add_event_loop_figures
from .latency import summarize

MIN_CONCURRENT_INCREMENTS_PER_SECOND = 20_000
MIN_PINGS_PER_SECOND = 50_000

_ACTORS = {BINDING: Counter}


async def sequential_increments(data_dir: Path, *, seconds: float, max_calls: int) -> BenchmarkResult:
    """One caller, one actor, one durable increment at a time: bounded by commit latency."""
    result = BenchmarkResult("increment-sequential", "Durable increment, 1 caller -> 1 actor, sequential")
    async with open_runtime(data_dir=str(data_dir), actors=_ACTORS) as rt:
        stub = rt.namespace(BINDING).get_by_name("solo")
        last = await stub.increment()
        before = rt.statistics()
        durations: list[float] = []
        started = time.perf_counter()
        deadline = started + seconds
        while len(durations) < max_calls:
            call_started = time.perf_counter()
            last = await stub.increment()
            call_ended = time.perf_counter()
            durations.append(call_ended - call_started)
            if call_ended >= deadline:
                break
        elapsed = time.perf_counter() - started
        commits = _delta(before, rt.statistics())
    expected = len(durations) + 1
    result.check(last == expected, f"counter returned {last} after {expected} increments")
    _check_healthy(result, commits)
    latency = summarize(durations)
    result.add("calls_per_s", "calls/s", len(durations) / elapsed, "calls/s")
    result.add("p50", "  latency p50", latency.p50_ms, "ms")
    result.add("p99", "  latency p99", latency.p99_ms, "ms")
    result.details.update(calls=len(durations), seconds=elapsed, max_ms=latency.max_ms, statistics=commits)
    await _check_reopened(result, data_dir, {"solo": expected})
    return result


async def concurrent_increments(
    data_dir: Path, *, callers: int, actors: int, seconds: float, max_calls: int
) -> BenchmarkResult:
    """``callers`` trio tasks doing durable increments over ``actors`` actors, group-committed.

    Caller ``c`` calls actor ``(c + k * callers) % actors`` on its ``k``-th call, so callers
    that keep pace never hit the same actor at once.
    """
    result = BenchmarkResult(
        "increment-concurrent",
        f"Durable increment, {callers} callers over {actors:,} actors",
    )
    names = [f"counter-{i}" for i in range(actors)]
    acknowledged = [0] * actors
    async with open_runtime(data_dir=str(data_dir), actors=_ACTORS) as rt:
        namespace = rt.namespace(BINDING)
        stubs = [namespace.get_by_name(name) for name in names]
        # Warm-up: every actor is built and has its counter stored before the clock starts.
        async with trio.open_nursery() as nursery:
            for c in range(callers):
                nursery.start_soon(_touch_each, stubs[c::callers])
        for i in range(actors):
            acknowledged[i] += 1

        before = rt.statistics()
        durations: list[float] = []
        remaining = max_calls
        started = time.perf_counter()
        cpu_started = time.thread_time()
        deadline = started + seconds

        async def caller(c: int) -> None:
            nonlocal remaining
            k = 0
            while remaining > 0:
                remaining -= 1
                i = (c + k * callers) % actors
                call_started = time.perf_counter()
                await stubs[i].increment()
                call_ended = time.perf_counter()
                durations.append(call_ended - call_started)
                acknowledged[i] += 1
                k += 1
                if call_ended >= deadline:
                    return

        async with trio.open_nursery() as nursery:
            for c in range(callers):
                nursery.start_soon(caller, c)
        elapsed = time.perf_counter() - started
        event_loop_cpu = time.thread_time() - cpu_started
        commits = _delta(before, rt.statistics())
        values = [await stub.value() for stub in stubs]
    wrong = [(names[i], values[i], acknowledged[i]) for i in range(actors) if values[i] != acknowledged[i]]
    result.check(not wrong, f"{len(wrong)} counters differ from acknowledged increments, e.g. {wrong[:3]}")
    _check_healthy(result, commits)
    latency = summarize(durations)
    n_commits = commits["commits"]
    result.add(
        "calls_per_s",
        "calls/s",
        len(durations) / elapsed,
        "calls/s",
        Target(">=", MIN_CONCURRENT_INCREMENTS_PER_SECOND),
    )
    result.add("p50", "  latency p50", latency.p50_ms, "ms")
    result.add("p99", "  latency p99", latency.p99_ms, "ms")
    result.add(
        "writes_per_commit", "  writes per commit", _ratio(commits["committed_writes"], n_commits), "writes"
    )
    result.add(
        "actors_per_commit", "  actors per commit", _ratio(commits["committed_actors"], n_commits), "actors"
    )
    result.add("commits_per_s", "  group commits/s", n_commits / elapsed, "commits/s")
    result.add(
        "commit_ms", "  mean commit time", _ratio(commits["commit_seconds_total"] * 1000, n_commits), "ms"
    )
    # Where the wall time went: inside group commits, or running (and waiting to run) calls.
    result.add(
        "commit_share", "  wall time in group commits", commits["commit_seconds_total"] / elapsed * 100, "%"
    )
    add_event_loop_figures(result, event_loop_cpu, elapsed, len(durations), "call")
    result.details.update(
        callers=callers,
        actors=actors,
        calls=len(durations),
        seconds=elapsed,
        max_ms=latency.max_ms,
        statistics=commits,
    )
    await _check_reopened(result, data_dir, dict(zip(names, acknowledged, strict=True)))
    return result


async def sequential_pings(data_dir: Path, *, seconds: float, max_calls: int) -> BenchmarkResult:
    """One caller, one actor, RPC that touches no storage: the cost of the call path itself."""
    result = BenchmarkResult("ping", "RPC without writes, 1 caller -> 1 actor, sequential")
    async with open_runtime(data_dir=str(data_dir), actors=_ACTORS) as rt:
        stub = rt.namespace(BINDING).get_by_name("pinged")
        await stub.ping()
        calls = 0
        started = time.perf_counter()
        deadline = started + seconds
        # Time is read once per 64 calls so the clock costs little next to a call.
        while calls < max_calls:
            for _ in range(64):
                await stub.ping()
            calls += 64
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - started
        statistics = rt.statistics()
    result.check(statistics["commits"] == 0, f"pings caused {statistics['commits']} commits")
    result.add("calls_per_s", "calls/s", calls / elapsed, "calls/s", Target(">=", MIN_PINGS_PER_SECOND))
    result.add("us_per_call", "  mean time per call", elapsed / calls * 1e6, "µs")
    result.details.update(calls=calls, seconds=elapsed)
    return result


async def _touch_each(stubs: list[ActorStub]) -> None:
    for stub in stubs:
        await stub.increment()


async def _check_reopened(result: BenchmarkResult, data_dir: Path, expected: dict[str, int]) -> None:
    """After close, a new runtime on the same directory must see every acknowledged increment."""
    async with open_runtime(data_dir=str(data_dir), actors=_ACTORS) as rt:
        namespace = rt.namespace(BINDING)
        found = {name: await namespace.get_by_name(name).value() for name in expected}
    lost = [(name, found[name], count) for name, count in expected.items() if found[name] != count]
    result.check(not lost, f"after reopening, {len(lost)} counters differ from acknowledged, e.g. {lost[:3]}")


def _check_healthy(result: BenchmarkResult, commits: dict[str, Any]) -> None:
    result.check(commits["failed_commits"] == 0, f"{commits['failed_commits']} group commits failed")
    result.check(commits["resets"] == 0, f"{commits['resets']} actors were reset")


_COUNTERS = (
    "commits",
    "committed_writes",
    "committed_actors",
    "commit_seconds_total",
    "failed_commits",
    "resets",
    "events",
)


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The change of the cumulative counters in ``rt.statistics()`` over a measured window."""
    return {name: after[name] - before[name] for name in _COUNTERS}


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None
