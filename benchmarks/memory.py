"""Memory per actor: RSS per idle resident actor, and RSS staying bounded under eviction.

Each measurement runs in a fresh interpreter (``python -m benchmarks.memory MODE ...``) so
earlier benchmarks' heap does not count; the child prints one JSON line and the parent
turns it into figures. RSS is ``VmRSS`` from /proc/self/status (``RssAnon``, the heap, and
``RssFile``, mostly LMDB's memory map, are reported beside it).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from runtime import Namespace, open_runtime

from .counter import BINDING, Counter
from .figures import BenchmarkResult, Target

MAX_BYTES_PER_RESIDENT_ACTOR = 2048
MAX_RSS_GROWTH_PERCENT = 10.0
RESIDENT_IDLE_TIMEOUT_SECONDS = 3600.0
SAMPLES_PER_RUN = 20
_REPO = Path(__file__).resolve().parent.parent
_RSS_FIELDS = ("VmRSS", "RssAnon", "RssFile")


def read_rss() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process, in bytes."""
    found: dict[str, int] = {}
    with open("/proc/self/status", encoding="utf-8") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in _RSS_FIELDS:
                found[name] = int(rest.split()[0]) * 1024
    return found


# -- parent side: run a child, turn its JSON into figures ---------------------------------


def resident_memory(
    data_dir: Path, *, actors: int, call: str, callers: int, timeout: float
) -> BenchmarkResult:
    """RSS growth per idle resident actor after touching ``actors`` actors once each."""
    result = BenchmarkResult("memory-resident", f"Memory, {actors:,} idle resident actors ({call} each)")
    report = run_child(
        ["resident", str(data_dir), "--actors", str(actors), "--call", call, "--callers", str(callers)],
        timeout,
    )
    added = report["live_after"] - report["live_before"]
    result.check(added == actors, f"{actors:,} actors touched but {added:,} more are live")
    result.check(
        report["evictions"] == 0, f"{report['evictions']:,} actors evicted despite a 1 h idle_timeout"
    )
    per_actor = {
        name: (report["after"][name] - report["before"][name]) / max(added, 1) for name in _RSS_FIELDS
    }
    result.add(
        "bytes_per_actor",
        "VmRSS per resident actor",
        per_actor["VmRSS"],
        "B",
        Target("<=", MAX_BYTES_PER_RESIDENT_ACTOR),
    )
    result.add("anon_bytes_per_actor", "  RssAnon (heap) per actor", per_actor["RssAnon"], "B")
    result.add("file_bytes_per_actor", "  RssFile (LMDB map) per actor", per_actor["RssFile"], "B")
    result.add("touch_rate", "  actors touched/s", actors / report["seconds"], "actors/s")
    result.details.update(report)
    return result


def bounded_memory(
    data_dir: Path, *, actors: int, call: str, callers: int, idle_timeout: float, seconds: float
) -> BenchmarkResult:
    """RSS while touching ``actors`` actors once each with a short idle timeout.

    Bounded means no growth trend: the highest RSS sampled in the second half of the run is
    compared with the highest in the first half (after the baseline sample).
    """
    result = BenchmarkResult(
        "memory-bounded", f"Memory, {actors:,} actors touched, idle_timeout {idle_timeout:g} s ({call} each)"
    )
    report = run_child(
        [
            "bounded",
            str(data_dir),
            "--actors",
            str(actors),
            "--call",
            call,
            "--callers",
            str(callers),
            "--idle-timeout",
            str(idle_timeout),
            "--seconds",
            str(seconds),
        ],
        timeout=seconds + 120,
    )
    samples = report["samples"]
    rss = [sample["VmRSS"] for sample in samples]
    half = report["touched"] / 2
    first = [s["VmRSS"] for s in samples if 0 < s["touched"] <= half]
    second = [s["VmRSS"] for s in samples if s["touched"] > half]
    growth = (max(second) - max(first)) / max(first) * 100 if first and second else None
    result.check(growth is not None, f"too few RSS samples to judge growth: {len(samples)}")
    result.check(
        report["live_after_idle"] == 0,
        f"{report['live_after_idle']:,} actors still live {report['idle_wait_seconds']:g} s after the last call",
    )
    # Reaching every actor within the time limit is a target; stopping short is slowness, not a fault.
    result.add(
        "touched", f"actors touched within {seconds:g} s", report["touched"], "actors", Target(">=", actors)
    )
    result.add("touch_rate", "  actors touched/s", report["touched"] / report["seconds"], "actors/s")
    result.add("max_rss", "  max VmRSS", max(rss) / 2**20, "MiB")
    result.add("final_rss", "  final VmRSS", rss[-1] / 2**20, "MiB")
    result.add(
        "rss_growth", "  VmRSS growth, 2nd half vs 1st", growth, "%", Target("<=", MAX_RSS_GROWTH_PERCENT)
    )
    result.add("idle_rss", "  VmRSS once all were evicted", report["rss_after_idle"]["VmRSS"] / 2**20, "MiB")
    result.add("live_at_end", "  live actors at end", report["live_at_end"], "actors")
    result.add("max_live", "  max live actors", max(s["live"] for s in samples), "actors")
    result.details.update(report)
    return result


def run_child(args: list[str], timeout: float, module: str = "benchmarks.memory") -> dict[str, Any]:
    """Run ``python -m module *args`` in a fresh interpreter; the JSON of its last line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    try:
        child = subprocess.run(
            [sys.executable, "-m", module, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"{module} {args[0]} did not finish within {timeout:g} s; stderr: {exc.stderr!r}"
        ) from exc
    if child.returncode != 0:
        raise RuntimeError(f"{module} {args[0]} exited {child.returncode}:\n{child.stderr.strip()}")
    return json.loads(child.stdout.strip().splitlines()[-1])


# -- child side: touch actors and sample RSS ----------------------------------------------


class _Touching:
    """Hands out actor indices to callers, stops at a count or deadline, samples RSS."""

    def __init__(
        self,
        namespace: Namespace,
        statistics: Callable[[], dict[str, Any]],
        call: str,
        actors: int,
        *,
        deadline: float,
        sample_every: int,
    ) -> None:
        self.namespace = namespace
        self.statistics = statistics
        self.call = call
        self.actors = actors
        self.deadline = deadline
        self.sample_every = sample_every
        self.next_index = 0
        self.touched = 0
        self.samples: list[dict[str, Any]] = []
        self.started = time.perf_counter()

    def indices(self) -> Iterator[int]:
        while self.next_index < self.actors and time.perf_counter() < self.deadline:
            index = self.next_index
            self.next_index += 1
            yield index

    async def caller(self) -> None:
        namespace, call = self.namespace, self.call
        for index in self.indices():
            await getattr(namespace.get_by_name(f"actor-{index}"), call)()
            self.touched += 1
            if self.sample_every and self.touched % self.sample_every == 0:
                self.sample()
            # A ping to an idle actor never yields to trio. Like a server's request handler,
            # which always awaits I/O, each call yields once, so the evictor runs on time.
            await trio.lowlevel.checkpoint()

    def sample(self) -> None:
        self.samples.append(
            {
                "touched": self.touched,
                "seconds": round(time.perf_counter() - self.started, 3),
                "live": self.statistics()["live_actors"],
                **read_rss(),
            }
        )


async def _touch_all(touching: _Touching, callers: int) -> float:
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(callers):
            nursery.start_soon(touching.caller)
    return time.perf_counter() - started


async def _resident(data_dir: str, actors: int, call: str, callers: int) -> dict[str, Any]:
    async with open_runtime(
        data_dir=data_dir, actors={BINDING: Counter}, idle_timeout=RESIDENT_IDLE_TIMEOUT_SECONDS
    ) as rt:
        namespace = rt.namespace(BINDING)
        # Warm every code path and cache with one actor before the baseline.
        await getattr(namespace.get_by_name("warm-up"), call)()
        gc.collect()
        live_before, before = rt.statistics()["live_actors"], read_rss()
        touching = _Touching(namespace, rt.statistics, call, actors, deadline=float("inf"), sample_every=0)
        seconds = await _touch_all(touching, callers)
        gc.collect()
        after = read_rss()
        statistics = rt.statistics()
    return {
        "call": call,
        "actors": actors,
        "callers": callers,
        "seconds": seconds,
        "live_before": live_before,
        "live_after": statistics["live_actors"],
        "evictions": statistics["evictions"],
        "before": before,
        "after": after,
    }


async def _bounded(
    data_dir: str, actors: int, call: str, callers: int, idle_timeout: float, seconds: float
) -> dict[str, Any]:
    async with open_runtime(data_dir=data_dir, actors={BINDING: Counter}, idle_timeout=idle_timeout) as rt:
        namespace = rt.namespace(BINDING)
        touching = _Touching(
            namespace,
            rt.statistics,
            call,
            actors,
            deadline=time.perf_counter() + seconds,
            sample_every=max(1, actors // SAMPLES_PER_RUN),
        )
        touching.sample()
        elapsed = await _touch_all(touching, callers)
        live_at_end = rt.statistics()["live_actors"]
        if touching.touched % touching.sample_every:
            touching.sample()
        # Every actor is idle now; after two idle timeouts the evictor must have dropped them all.
        idle_wait = 2 * idle_timeout + 0.5
        await trio.sleep(idle_wait)
        statistics = rt.statistics()
        after_idle = read_rss()
    return {
        "call": call,
        "actors": actors,
        "callers": callers,
        "idle_timeout": idle_timeout,
        "time_limit_seconds": seconds,
        "touched": touching.touched,
        "seconds": elapsed,
        "live_at_end": live_at_end,
        "idle_wait_seconds": idle_wait,
        "live_after_idle": statistics["live_actors"],
        "rss_after_idle": after_idle,
        "evictions": statistics["evictions"],
        "samples": touching.samples,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("mode", choices=["resident", "bounded"])
    parser.add_argument("data_dir")
    parser.add_argument("--actors", type=int, required=True)
    parser.add_argument("--call", choices=["increment", "ping"], default="increment")
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--idle-timeout", type=float, default=0.5)
    parser.add_argument("--seconds", type=float, default=120.0, help="time limit of a bounded run")
    args = parser.parse_args(argv)
    if args.mode == "resident":
        report = trio.run(_resident, args.data_dir, args.actors, args.call, args.callers)
    else:
        report = trio.run(
            _bounded, args.data_dir, args.actors, args.call, args.callers, args.idle_timeout, args.seconds
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
