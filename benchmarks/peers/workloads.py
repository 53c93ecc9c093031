"""The workloads of ``benchmarks.suite`` driven against a peer, with the same sizes and figures.

Roost's side runs the suite's own benchmarks unchanged; these functions give a peer the
same work and report figures under the same keys (``http-1.requests_per_second``,
``queues.end_to_end``, ``alarms.spread.p99``, ...), so both land in one table:

- HTTP: wrk with benchmarks/wrk.py's script and count check (the same connections and
  duration) against the peer's counters.
- Queues: ``queue_messages`` sent in batches of 100 by 4 producers while one consumer acks
  them, first send to last ack; then ``queue_failing`` messages that each fail once.
- Alarms: ``alarm_actors`` alarms (or delayed jobs) due 5 s ahead at the same second, then
  as many spread over 5 s; lateness is the handler's clock minus the due time.

Every loop is bounded in count and time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .. import wrk
from ..alarms import LEAD_SECONDS, SPREAD_SECONDS
from ..figures import BenchmarkResult, Target
from ..http_wrk import add_run_figures
from ..latency import summarize
from ..queues import BATCH
from ..suite import Settings
from ..wrk import Counters

PRODUCERS = 4
POLL_SECONDS = 0.01
ALARM_POLL_SECONDS = 0.1
ARMING_LIMIT_SECONDS = 10.0  # past it, the rest of a case's alarms are not set
FIRING_LIMIT_SECONDS = 10.0  # waited for past the last due time


class QueueSystem(Protocol):
    def send_all(self, count: int, deadline: float) -> None:
        """Send messages 0..count-1 in batches of ``BATCH``, stopping at ``deadline`` (monotonic)."""

    def progress(self) -> tuple[int, int]:
        """(distinct messages acked, first attempts failed) so far."""

    def problems(self) -> list[str]:
        """Misbehaviour seen so far (duplicates, refused sends), if the system can tell."""


class AlarmSystem(Protocol):
    def arm(self, group: str, items: list[tuple[str, float]], deadline: float) -> int:
        """Set one alarm or delayed job per (name, due time in epoch seconds), as fast as it can,
        stopping at ``deadline`` (monotonic); how many were set."""

    def fired(self, group: str) -> int:
        """How many of ``group`` have fired."""

    def lateness(self, group: str) -> list[float]:
        """Seconds each fired one of ``group`` ran after its due time."""


@dataclass(frozen=True, slots=True)
class Peer:
    """A system compared with Roost, and how to start it for each workload it takes part in."""

    name: str
    setup: str
    unavailable: Callable[[], str | None]
    http: Callable[[Path], AbstractContextManager[Counters]] | None = None
    queue: Callable[[Path, bool], AbstractContextManager[QueueSystem]] | None = None
    alarms: Callable[[Path], AbstractContextManager[AlarmSystem]] | None = None


def http_increments(
    start: Callable[[Path], AbstractContextManager[Counters]],
    settings: Settings,
    directory: Path,
    *,
    actors: int,
) -> BenchmarkResult:
    """benchmarks/wrk.py's load and count check against the counters ``start`` yields."""
    result = BenchmarkResult(f"http-{actors}", f"HTTP durable increment (wrk), {actors} actor(s)")
    with start(directory) as counters:
        run = wrk.run_increments(
            counters, actors=actors, connections=settings.http_connections, seconds=settings.http_seconds
        )
    add_run_figures(result, "", "", run)
    return result


def queue_throughput(
    start: Callable[[Path, bool], AbstractContextManager[QueueSystem]],
    settings: Settings,
    directory: Path,
    *,
    timeout: float,
) -> BenchmarkResult:
    """End to end, then every message failing once; each case stops at ``timeout`` seconds."""
    result = BenchmarkResult("queues", "Queues, batches of 100")
    cases = (("end_to_end", settings.queue_messages, False), ("fail_once", settings.queue_failing, True))
    for name, count, fail in cases:
        with start(directory / name, fail) as system:
            started = time.monotonic()
            deadline = started + timeout
            system.send_all(count, deadline)
            acked, retried = system.progress()
            while acked < count and time.monotonic() < deadline:
                time.sleep(POLL_SECONDS)
                acked, retried = system.progress()
            elapsed = time.monotonic() - started
            time.sleep(0.2)  # a duplicate delivery would show up here
            acked, retried = system.progress()
            for problem in system.problems():
                result.check(False, f"{name}: {problem}")
        result.check(acked == count, f"{name}: {acked} of {count} acked within {timeout:.0f} s")
        if fail:
            result.check(retried == count, f"{name}: {retried} first attempts failed, expected {count}")
        label = f"{count:,} messages" + (", each failing once" if fail else " end to end")
        result.add(name, f"{label}: first send to last ack", min(acked, count) / elapsed, "msg/s")
        result.details[name] = {"seconds": elapsed, "acked": acked, "retried": retried}
    return result


def send_batches(count: int, deadline: float, send: Callable[[int], None]) -> None:
    """Call ``send(first)`` for each batch of ``BATCH`` messages, in order, until ``deadline``."""
    for first in range(0, count, BATCH):
        if time.monotonic() >= deadline:
            return
        send(first)


def alarm_lateness(
    start: Callable[[Path], AbstractContextManager[AlarmSystem]], settings: Settings, directory: Path
) -> BenchmarkResult:
    """benchmarks/alarms.py's two cases: all due at the same second, then spread over 5 s.

    Setting the alarms stops after ``ARMING_LIMIT_SECONDS`` and waiting for them
    ``FIRING_LIMIT_SECONDS`` after the last is due; any not set or not fired then is a problem,
    and those not fired count in the percentiles with the time waited (a lower bound).
    """
    result = BenchmarkResult("alarms", "Alarm lateness (real clock)")
    actors = settings.alarm_actors
    with start(directory) as system:
        for case, spread in (("same-second", 0.0), ("spread", SPREAD_SECONDS)):
            first_due = time.time() + LEAD_SECONDS
            items = [(f"{case}-{i}", first_due + spread * i / actors) for i in range(actors)]
            arming_started = time.monotonic()
            armed = system.arm(case, items, arming_started + ARMING_LIMIT_SECONDS)
            arming_seconds = time.monotonic() - arming_started
            result.check(
                armed == actors, f"{case}: {armed} of {actors} alarms set in {ARMING_LIMIT_SECONDS:.0f} s"
            )
            result.check(
                time.time() < first_due, f"{case}: arming took {arming_seconds:.1f} s, past the due time"
            )
            items = items[:armed]
            limit = time.monotonic() + max(0.0, items[-1][1] - time.time()) + FIRING_LIMIT_SECONDS
            while system.fired(case) < armed and time.monotonic() < limit:
                time.sleep(ALARM_POLL_SECONDS)
            lateness = system.lateness(case)
            fired = len(lateness)
            result.check(
                fired == armed, f"{case}: {fired} of {armed} alarms fired (the rest count as lower bounds)"
            )
            result.check(all(late >= 0 for late in lateness), f"{case}: an alarm fired early")
            if fired < armed:  # those not fired yet are at least this late
                unfired_due = sorted(due for _, due in items)[fired:]
                lateness += [time.time() - due for due in unfired_due]
            summary = summarize(lateness)
            result.add(
                f"{case}.armed_per_second",
                f"{case}: alarms set per second",
                armed / arming_seconds,
                "alarms/s",
            )
            result.add(f"{case}.fired", f"{case}: alarms fired", fired, "alarms", Target(">=", actors))
            result.add(f"{case}.p50", f"{case}: lateness p50", summary and summary.p50_ms, "ms")
            result.add(f"{case}.p99", f"{case}: lateness p99", summary and summary.p99_ms, "ms")
            result.add(f"{case}.max", f"{case}: lateness max", summary and summary.max_ms, "ms")
    return result


def chunks(items: list, size: int = BATCH) -> Iterator[list]:
    for first in range(0, len(items), size):
        yield items[first : first + size]
