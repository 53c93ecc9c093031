"""Latency summaries: percentiles of per-operation durations.

Durations are seconds from ``time.perf_counter``; summaries are in milliseconds, using the
nearest-rank percentile (an observed value, never an interpolation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


def summarize(durations: Sequence[float]) -> LatencySummary:
    """Percentiles of ``durations`` (seconds); ``ValueError`` if there are none."""
    if not durations:
        raise ValueError("no durations to summarize")
    ordered = sorted(durations)
    return LatencySummary(
        count=len(ordered),
        p50_ms=_nearest_rank(ordered, 50) * 1000,
        p99_ms=_nearest_rank(ordered, 99) * 1000,
        max_ms=ordered[-1] * 1000,
        mean_ms=sum(ordered) / len(ordered) * 1000,
    )


def _nearest_rank(ordered: Sequence[float], percent: float) -> float:
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]
