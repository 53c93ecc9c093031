"""Scheduled jobs on the real clock: what pending jobs cost, and how late jobs due together run.

1. Pending: 100,000 jobs scheduled an hour ahead by 64 concurrent callers, in a fresh
   interpreter (``python -m benchmarks.scheduled_jobs pending ...``) so that earlier
   benchmarks' heap does not count: jobs scheduled/s, and the RSS they add (``RssAnon``, the
   heap, apart from ``RssFile``, mostly LMDB's memory map).
2. Due together: 10,000 jobs due at the same second, 5 s ahead, sent to a queue whose
   consumer (batches of 100) records how late each arrived: runtime clock minus due time.
"""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path
from typing import Any

import trio

import runtime
from actors import MessageBatch, list_jobs, schedule_job
from runtime import Actor, open_runtime

from .figures import BenchmarkResult
from .latency import summarize
from .memory import read_rss, run_child

QUEUE = "reminders"
PENDING_AHEAD_SECONDS = 3600.0
LEAD_SECONDS = 5.0
CALLERS = 64


class LatenessRecorder(Actor):
    """Acks every message, recording how late it arrived (its body carries its due time)."""

    lateness: list[float] = []

    async def queue(self, batch: MessageBatch) -> None:
        moment = runtime.now()
        type(self).lateness.extend(moment - message.body["due"] for message in batch.messages)


def _queues() -> list[dict[str, Any]]:
    return [{"queue": QUEUE, "consumer": LatenessRecorder, "max_batch_size": 100, "max_batch_timeout": 0.05}]


async def _schedule_all(env: Any, dues: list[float]) -> None:
    """Schedule a job per due time, ``CALLERS`` at a time."""
    remaining = iter(enumerate(dues))

    async def caller() -> None:
        for n, due in remaining:
            await schedule_job(env, {"n": n, "due": due}, due, queue=QUEUE)

    async with trio.open_nursery() as nursery:
        for _ in range(CALLERS):
            nursery.start_soon(caller)


def scheduled_jobs(directory: Path, *, pending: int, due_together: int) -> BenchmarkResult:
    result = BenchmarkResult("scheduled-jobs", "Scheduled jobs (real clock)")
    report = run_child(
        ["pending", str(directory / "pending"), "--jobs", str(pending)], 600.0, "benchmarks.scheduled_jobs"
    )
    result.check(report["listed"] == pending, f"{pending:,} jobs scheduled, {report['listed']:,} listed")
    grown = {name: (report["after"][name] - report["before"][name]) / pending for name in report["after"]}
    result.add(
        "schedule_rate", f"{pending:,} jobs scheduled an hour ahead", pending / report["seconds"], "jobs/s"
    )
    result.add("bytes_per_pending_job", "  VmRSS per pending job", grown["VmRSS"], "B")
    result.add("anon_bytes_per_pending_job", "    RssAnon (heap) per pending job", grown["RssAnon"], "B")
    result.add("file_bytes_per_pending_job", "    RssFile (LMDB map) per pending job", grown["RssFile"], "B")
    result.details["pending"] = report

    lateness = trio.run(_due_together, directory / "due", due_together)
    result.check(
        len(lateness) == due_together, f"{due_together:,} jobs due, {len(lateness):,} arrived within 60 s"
    )
    result.check(min(lateness, default=0) >= 0, "a job arrived before its due time")
    summary = summarize(lateness or [float("nan")])
    label = f"{due_together:,} jobs due at one second: lateness"
    result.add("due_together_p50", f"{label} p50", summary.p50_ms, "ms")
    result.add("due_together_p99", "  lateness p99", summary.p99_ms, "ms")
    result.add("due_together_max", "  lateness max", summary.max_ms, "ms")
    return result


async def _due_together(data_dir: Path, jobs: int) -> list[float]:
    LatenessRecorder.lateness = []
    async with open_runtime(data_dir=str(data_dir), queues=_queues()) as rt:
        due = runtime.now() + LEAD_SECONDS
        await _schedule_all(rt.env, [due] * jobs)
        if runtime.now() >= due:
            raise RuntimeError(f"scheduling {jobs:,} jobs took past their due time")
        with trio.move_on_after(LEAD_SECONDS + 60):
            while len(LatenessRecorder.lateness) < jobs:
                await trio.sleep(0.05)
    return LatenessRecorder.lateness


# -- child side ------------------------------------------------------------------------------


async def _pending(data_dir: str, jobs: int) -> dict[str, Any]:
    async with open_runtime(data_dir=data_dir, queues=_queues()) as rt:
        # Warm every code path (and start the scheduler's shards) before the baseline.
        await _schedule_all(rt.env, [runtime.now() + PENDING_AHEAD_SECONDS] * CALLERS)
        gc.collect()
        before = read_rss()
        started = trio.current_time()
        await _schedule_all(rt.env, [runtime.now() + PENDING_AHEAD_SECONDS] * jobs)
        seconds = trio.current_time() - started
        gc.collect()
        after = read_rss()
        listed = len(await list_jobs(rt.env)) - CALLERS
    return {"jobs": jobs, "seconds": seconds, "listed": listed, "before": before, "after": after}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scheduled_jobs", description=__doc__)
    parser.add_argument("mode", choices=["pending"])
    parser.add_argument("data_dir")
    parser.add_argument("--jobs", type=int, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(trio.run(_pending, args.data_dir, args.jobs)))


if __name__ == "__main__":
    main()
