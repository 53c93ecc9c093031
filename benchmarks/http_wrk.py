"""HTTP durable increments on ``roost serve --workers 1`` and ``--workers 2``, side by side.

Each server is a real process with a fresh data directory (benchmarks/roost_server.py), driven
by wrk (benchmarks/wrk.py) with 64 keep-alive connections for a fixed time, every request to
one actor or spread over 1,000; then its counters are read back and checked. The scaling
figure is the rate with 2 workers over the rate with 1. One actor has one owner, so its
increments cannot spread over workers: that figure shows what forwarding costs, not scaling.
"""

from __future__ import annotations

from pathlib import Path

from . import wrk
from .figures import BenchmarkResult, Target
from .roost_server import RoostServer, unsupported

WORKERS = (1, 2)
# The targets of 2 workers over 1,000 actors.
REQUESTS_PER_SECOND_TARGET = 3500.0
P99_TARGET_MS = 50.0
SCALING_TARGET = 1.6


def add_run_figures(
    result: BenchmarkResult,
    prefix: str,
    label: str,
    run: wrk.WrkRun | None,
    *,
    rate_target: Target | None = None,
    p99_target: Target | None = None,
    counted: bool = True,
) -> None:
    """One wrk run's figures, keyed under ``prefix`` (``""``: none), each label starting with
    ``label``, with the increments' counts unless not ``counted``; without a run (not
    measured), every value is n/a."""
    rows: list[tuple[str, str, float | None, str, Target | None]] = [
        ("requests_per_second", "requests/s", run and run.requests_per_second, "req/s", rate_target),
        ("p50", "latency p50", run and run.latency_ms["p50"], "ms", None),
        ("p99", "latency p99", run and run.latency_ms["p99"], "ms", p99_target),
        ("non_2xx", "non-2xx answers", run and run.non_2xx, "responses", Target("<=", 0)),
        ("socket_errors", "socket errors", run and run.socket_errors, "errors", Target("<=", 0)),
        ("acknowledged", "increments answered 2xx", run and run.acknowledged, "increments", None),
        ("counted", "counted after the run", run and run.counted, "increments", None),
        ("in_doubt", "in doubt (counted may exceed by)", run and run.in_doubt, "requests", None),
    ]
    if not counted:
        rows = rows[:5]
    for key, what, value, unit, target in rows:
        result.add(f"{prefix}.{key}" if prefix else key, label + what, value, unit, target)
    if run is not None:
        result.details[prefix or "run"] = run.as_json()
        for problem in run.problems:
            result.check(False, f"{label}{problem}")


def http_scaling(directory: Path, *, actors: int, connections: int, seconds: float) -> BenchmarkResult:
    spread = "1 actor" if actors == 1 else f"{actors:,} actors"
    result = BenchmarkResult(
        f"http-{actors}", f"HTTP durable increment (wrk), {connections} connections, {spread}"
    )
    rates: dict[int, float] = {}
    for workers in WORKERS:
        label = f"{workers} worker{'s' if workers > 1 else ''}: "
        targeted = actors > 1 and workers == 2
        run = None
        if (reason := unsupported(workers)) is not None:
            result.notes.append(f"{label}not run: {reason}")
        else:
            server = RoostServer(directory / f"workers-{workers}", workers)
            try:
                run = wrk.run_increments(
                    server.counters, actors=actors, connections=connections, seconds=seconds
                )
            finally:
                exit_code = server.stop()
            result.check(exit_code == 0, f"roost serve --workers {workers} exited {exit_code} after SIGTERM")
            rates[workers] = run.requests_per_second
        add_run_figures(
            result,
            f"workers-{workers}",
            label,
            run,
            rate_target=Target(">=", REQUESTS_PER_SECOND_TARGET) if targeted else None,
            p99_target=Target("<=", P99_TARGET_MS) if targeted else None,
        )
    scaling = rates[2] / rates[1] if len(rates) == 2 and rates[1] else None
    result.add(
        "scaling",
        "2 workers / 1 worker, requests/s",
        scaling,
        "x",
        Target(">=", SCALING_TARGET) if actors > 1 else None,
    )
    return result
