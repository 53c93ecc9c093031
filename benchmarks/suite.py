"""The benchmarks by name, their settings, and running one with a scratch dir and a watchdog.

A benchmark that raises is reported as an error and the others still run. One that hangs
trips ``faulthandler``'s watchdog, which prints every thread's stack and ends the process,
so a hang in the runtime shows where it is instead of stalling ``make bench`` forever.
"""

from __future__ import annotations

import faulthandler
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import trio

from . import alarms, disk, http_server, http_wrk, memory, queues, rpc, scheduled_jobs
from .figures import BenchmarkResult
from .scratch import scratch_dir


@dataclass(frozen=True, slots=True)
class Settings:
    """Sizes and durations of one run; ``quick()`` is for smoke tests."""

    seconds: float = 5.0
    disk_seconds: float = 1.5
    callers: int = 64
    actors: int = 1000
    max_calls: int = 10_000_000
    resident_actors: int = 100_000
    resident_call: str = "increment"
    bounded_actors: int = 1_000_000
    bounded_call: str = "ping"
    bounded_idle_timeout: float = 0.5
    bounded_seconds: float = 120.0
    memory_callers: int = 64
    http_seconds: float = 10.0
    http_connections: int = 64
    alarm_actors: int = 10_000
    queue_messages: int = 100_000
    queue_failing: int = 10_000
    pending_jobs: int = 100_000
    jobs_due_together: int = 10_000

    @classmethod
    def quick(cls) -> Settings:
        return cls(
            seconds=1.0,
            disk_seconds=1.0,
            resident_actors=10_000,
            bounded_actors=100_000,
            bounded_seconds=30.0,
            http_seconds=2.0,
            alarm_actors=2_000,
            queue_messages=10_000,
            queue_failing=2_000,
            pending_jobs=10_000,
            jobs_due_together=2_000,
        )

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied (None values ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Benchmark:
    name: str
    title: str
    run: Callable[[Settings, Path], BenchmarkResult]
    watchdog_seconds: Callable[[Settings], float]


def _disk(settings: Settings, directory: Path) -> BenchmarkResult:
    return disk.measure_disk(directory, seconds=settings.disk_seconds, max_ops=settings.max_calls)


def _sequential(settings: Settings, directory: Path) -> BenchmarkResult:
    return trio.run(
        partial(
            rpc.sequential_increments,
            directory / "data",
            seconds=settings.seconds,
            max_calls=settings.max_calls,
        )
    )


def _concurrent(settings: Settings, directory: Path) -> BenchmarkResult:
    return trio.run(
        partial(
            rpc.concurrent_increments,
            directory / "data",
            callers=settings.callers,
            actors=settings.actors,
            seconds=settings.seconds,
            max_calls=settings.max_calls,
        )
    )


def _ping(settings: Settings, directory: Path) -> BenchmarkResult:
    return trio.run(
        partial(
            rpc.sequential_pings, directory / "data", seconds=settings.seconds, max_calls=settings.max_calls
        )
    )


def _resident(settings: Settings, directory: Path) -> BenchmarkResult:
    return memory.resident_memory(
        directory / "data",
        actors=settings.resident_actors,
        call=settings.resident_call,
        callers=settings.memory_callers,
        timeout=600.0,
    )


def _bounded(settings: Settings, directory: Path) -> BenchmarkResult:
    return memory.bounded_memory(
        directory / "data",
        actors=settings.bounded_actors,
        call=settings.bounded_call,
        callers=settings.memory_callers,
        idle_timeout=settings.bounded_idle_timeout,
        seconds=settings.bounded_seconds,
    )


def _http(actors: int) -> Callable[[Settings, Path], BenchmarkResult]:
    def run(settings: Settings, directory: Path) -> BenchmarkResult:
        return http_wrk.http_scaling(
            directory, actors=actors, connections=settings.http_connections, seconds=settings.http_seconds
        )

    return run


def _http_server(settings: Settings, directory: Path) -> BenchmarkResult:
    return http_server.noop_servers(
        directory, connections=settings.http_connections, seconds=settings.http_seconds
    )


def _queues(settings: Settings, directory: Path) -> BenchmarkResult:
    return trio.run(
        partial(
            queues.queue_throughput,
            directory,
            messages=settings.queue_messages,
            failing=settings.queue_failing,
        )
    )


def _scheduled_jobs(settings: Settings, directory: Path) -> BenchmarkResult:
    return scheduled_jobs.scheduled_jobs(
        directory, pending=settings.pending_jobs, due_together=settings.jobs_due_together
    )


def _alarms(settings: Settings, directory: Path) -> BenchmarkResult:
    return trio.run(partial(alarms.alarm_lateness, directory / "data", actors=settings.alarm_actors))


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("disk", "Disk limits", _disk, lambda s: 60 + 4 * s.disk_seconds),
        Benchmark(
            "increment-sequential",
            "Durable increment, sequential",
            _sequential,
            lambda s: 120 + 2 * s.seconds,
        ),
        Benchmark(
            "increment-concurrent",
            "Durable increment, concurrent",
            _concurrent,
            lambda s: 120 + 2 * s.seconds,
        ),
        Benchmark("ping", "RPC without writes", _ping, lambda s: 120 + 2 * s.seconds),
        Benchmark("memory-resident", "Memory per resident actor", _resident, lambda s: 660.0),
        Benchmark("memory-bounded", "Memory under eviction", _bounded, lambda s: s.bounded_seconds + 180),
        # Each runs roost serve --workers 1 and then --workers 2, each for http_seconds.
        Benchmark("http-1", "HTTP increments, one actor", _http(1), lambda s: 240 + 2 * s.http_seconds),
        Benchmark(
            "http-1000", "HTTP increments, 1,000 actors", _http(1000), lambda s: 240 + 2 * s.http_seconds
        ),
        Benchmark("http-server", "HTTP server alone, no-op app", _http_server, lambda s: 120 + 2 * s.http_seconds),
        Benchmark("alarms", "Alarm lateness", _alarms, lambda s: 300.0),
        Benchmark("queues", "Durable queues", _queues, lambda s: 900.0),
        Benchmark("scheduled-jobs", "Scheduled jobs", _scheduled_jobs, lambda s: 900.0),
    )
}

GROUPS: dict[str, tuple[str, ...]] = {
    "rpc": ("increment-sequential", "increment-concurrent", "ping"),
    "memory": ("memory-resident", "memory-bounded"),
    "http": ("http-server", "http-1", "http-1000"),
}


def select(spec: str | None) -> list[Benchmark]:
    """Benchmarks named in a comma-separated ``spec`` of names and groups (all if None).

    Raises ``ValueError`` naming an unknown entry and the known ones.
    """
    if spec is None:
        return list(BENCHMARKS.values())
    wanted: set[str] = set()
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        if entry in GROUPS:
            wanted.update(GROUPS[entry])
        elif entry in BENCHMARKS:
            wanted.add(entry)
        else:
            raise ValueError(f"unknown benchmark {entry!r}; known: {', '.join([*BENCHMARKS, *GROUPS])}")
    return [b for name, b in BENCHMARKS.items() if name in wanted]


def run_one(benchmark: Benchmark, settings: Settings) -> BenchmarkResult:
    """Run ``benchmark`` in its own scratch dir; a crash becomes the result's ``error``."""
    started = time.perf_counter()
    faulthandler.dump_traceback_later(benchmark.watchdog_seconds(settings), exit=True)
    try:
        with scratch_dir(benchmark.name) as directory:
            result = benchmark.run(settings, directory)
    except Exception:
        result = BenchmarkResult(benchmark.name, benchmark.title, error=traceback.format_exc())
        print(f"benchmark {benchmark.name} crashed:\n{result.error}", file=sys.stderr)
    finally:
        faulthandler.cancel_dump_traceback_later()
    result.seconds = time.perf_counter() - started
    return result
