"""Alarm lateness on the real clock: many actors' alarms due at once, then spread out.

10,000 actors each set an alarm due at the same second (5 s ahead); then 10,000 more set
alarms spread evenly over 5 seconds. Each handler records how late it ran (runtime clock minus due
time). Reports how many fired, lateness p50/p99/max per case, and the process's RSS growth
while the alarms were pending, which is what the scheduler and the instances cost.
"""

from __future__ import annotations

from pathlib import Path

import trio

import runtime
from runtime import Actor, AlarmInfo, open_runtime

from .figures import BenchmarkResult, Target
from .latency import summarize
from .memory import read_rss

BINDING = "ALARMS"
LEAD_SECONDS = 5.0
SPREAD_SECONDS = 5.0
P99_TARGET_MS = 50.0


class Alarmed(Actor):
    """Sets its alarm on request; when it fires, reports its lateness to the benchmark."""

    lateness: list[float] = []

    async def arm(self, when: float) -> None:
        await self.storage.put("due", when)
        await self.storage.set_alarm(when)

    async def alarm(self, info: AlarmInfo) -> None:
        due = await self.storage.get("due")
        type(self).lateness.append(runtime.now() - due)


async def alarm_lateness(data_dir: Path, *, actors: int = 10_000) -> BenchmarkResult:
    result = BenchmarkResult("alarms", "Alarm lateness (real clock)")
    async with open_runtime(data_dir=str(data_dir), actors={BINDING: Alarmed}) as rt:
        namespace = rt.namespace(BINDING)
        rss_before = read_rss()["VmRSS"]
        for case, spread in (("same-second", 0.0), ("spread", SPREAD_SECONDS)):
            Alarmed.lateness = []
            start = runtime.now() + LEAD_SECONDS
            base = f"{case}-"
            async with trio.open_nursery() as nursery:
                for i in range(actors):
                    due = start + spread * i / actors
                    nursery.start_soon(namespace.get_by_name(f"{base}{i}").arm, due)
            if case == "same-second":
                result.details["rss_growth_bytes_with_alarms_pending"] = read_rss()["VmRSS"] - rss_before
                result.details["alarms_pending"] = rt.statistics()["alarms_pending"]
            armed_late = runtime.now() - start
            result.check(armed_late < 0, f"{case}: arming {actors} alarms took past their due time")
            with trio.move_on_after(LEAD_SECONDS + spread + 30):
                while len(Alarmed.lateness) < actors:
                    await trio.sleep(0.05)
            fired = len(Alarmed.lateness)
            result.check(fired == actors, f"{case}: {fired} of {actors} alarms fired")
            result.check(all(late >= 0 for late in Alarmed.lateness), f"{case}: an alarm fired early")
            summary = summarize(Alarmed.lateness) if fired else None
            result.add(f"{case}.fired", f"{case}: alarms fired", fired, "alarms", Target(">=", actors))
            result.add(f"{case}.p50", f"{case}: lateness p50", summary and summary.p50_ms, "ms")
            target = Target("<=", P99_TARGET_MS) if case == "spread" else None
            result.add(f"{case}.p99", f"{case}: lateness p99", summary and summary.p99_ms, "ms", target)
            result.add(f"{case}.max", f"{case}: lateness max", summary and summary.max_ms, "ms")
        result.add(
            "rss_growth",
            f"RSS growth with {actors:,} alarms pending (incl. instances)",
            result.details["rss_growth_bytes_with_alarms_pending"] / 2**20,
            "MiB",
        )
    return result
