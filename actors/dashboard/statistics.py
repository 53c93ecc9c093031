"""What the overview shows of the runtime's statistics: live actors (per binding, and per
worker), pending alarms per worker, commit latency from the commit histogram, and throughput measured between two
renderings of the page (the statistics hold totals only, so a rate needs two samples).

With ``roost serve --workers N`` each worker counts its own partitions: the figures are
summed over the workers that answered, and a worker that did not is shown as down.
"""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any

from runtime import now

# Throughput is measured against the oldest sample in this window that is at least
# MIN_RATE_SPAN_SECONDS old, so two tabs refreshing at once still give a steady figure.
RATE_WINDOW_SECONDS = 60.0
MIN_RATE_SPAN_SECONDS = 1.0
MAX_SAMPLES = 128
QUANTILES = (0.5, 0.99)


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    worker: str  # "" in a single-process server
    up: bool
    live_actors: int = 0
    alarms_pending: int = 0
    commits: int = 0


@dataclass(frozen=True, slots=True)
class RuntimeFigures:
    workers: list[WorkerFigures]
    live_actors: int
    live_actors_by_binding: dict[str, int]
    alarms_pending: int
    commits: int
    committed_writes: int
    failed_commits: int
    http_requests: int
    mean_commit_ms: float | None
    # Upper bounds of the histogram buckets holding the 50th and 99th percentile commit.
    commit_ms_quantiles: dict[str, float | None]
    commits_per_second: float | None
    writes_per_second: float | None
    rate_span_seconds: float | None


class _Meter:
    """The totals seen at each rendering, for one runtime."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int, int]] = deque(maxlen=MAX_SAMPLES)

    def rates(self, commits: int, writes: int) -> tuple[float | None, float | None, float | None]:
        moment = now()
        base = next(
            (
                sample
                for sample in self.samples
                if moment - RATE_WINDOW_SECONDS <= sample[0] <= moment - MIN_RATE_SPAN_SECONDS
            ),
            None,
        )
        while self.samples and self.samples[0][0] < moment - RATE_WINDOW_SECONDS:
            self.samples.popleft()
        self.samples.append((moment, commits, writes))
        # Totals restart with the process: a rate across a restart would be negative.
        if base is None or commits < base[1]:
            return None, None, None
        span = moment - base[0]
        return (commits - base[1]) / span, (writes - base[2]) / span, span


_meters: weakref.WeakKeyDictionary[Any, _Meter] = weakref.WeakKeyDictionary()


async def runtime_figures(rt: Any) -> RuntimeFigures:
    """The figures of ``rt`` (summed over every worker that answered) and their rates since
    an earlier call."""
    own = rt.statistics()
    if rt.placement is None:
        found: dict[str, dict[str, Any] | None] = {"": own}
    else:
        found = {str(worker): stats for worker, stats in (await rt.placement.statistics(own)).items()}
    answered = [stats for stats in found.values() if stats is not None]
    commits = sum(s["commits"] for s in answered)
    writes = sum(s["committed_writes"] for s in answered)
    seconds = sum(s["commit_seconds_total"] for s in answered)
    buckets: dict[float, int] = {}
    for stats in answered:
        for bound, count in stats["commit_latency_buckets"].items():
            buckets[float(bound)] = buckets.get(float(bound), 0) + count
    commits_rate, writes_rate, span = _meters.setdefault(rt, _Meter()).rates(commits, writes)
    return RuntimeFigures(
        workers=[
            WorkerFigures(worker, False)
            if stats is None
            else WorkerFigures(worker, True, stats["live_actors"], stats["alarms_pending"], stats["commits"])
            for worker, stats in found.items()
        ],
        live_actors=sum(s["live_actors"] for s in answered),
        live_actors_by_binding=_summed([s.get("live_actors_by_binding", {}) for s in answered]),
        alarms_pending=sum(s["alarms_pending"] for s in answered),
        commits=commits,
        committed_writes=writes,
        failed_commits=sum(s["failed_commits"] for s in answered),
        http_requests=sum(s["http_requests"] for s in answered),
        mean_commit_ms=1000 * seconds / commits if commits else None,
        commit_ms_quantiles={f"p{round(q * 100)}": _quantile_ms(buckets, q) for q in QUANTILES},
        commits_per_second=commits_rate,
        writes_per_second=writes_rate,
        rate_span_seconds=span,
    )


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for each in counts:
        for key, count in each.items():
            total[key] = total.get(key, 0) + count
    return dict(sorted(total.items()))


def _quantile_ms(buckets: dict[float, int], quantile: float) -> float | None:
    """The upper bound (ms) of the bucket holding ``quantile`` of the commits; None before
    the first commit; ``inf`` past the last finite bound."""
    total = sum(buckets.values())
    if not total:
        return None
    seen = 0
    for bound in sorted(buckets):
        seen += buckets[bound]
        if seen >= quantile * total:
            return bound * 1000
    return float("inf")
