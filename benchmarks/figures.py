"""The values a benchmark produces: figures with units, optional targets, problems and notes.

A figure is one measured number; a target says what it should reach. Problems are
misbehaviour seen while measuring (wrong counts, resets, a crash), reported apart from
targets so a slow figure and a broken runtime are never confused. Notes say what was not
measured and why (a figure then has no value), and are neither.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True, slots=True)
class Target:
    """``value <op> threshold``; ``op`` is ``">="`` or ``"<="``."""

    op: str
    threshold: float

    def __post_init__(self) -> None:
        if self.op not in _COMPARISONS:
            raise ValueError(f"target op must be one of {sorted(_COMPARISONS)}, got {self.op!r}")

    def met_by(self, value: float) -> bool:
        return _COMPARISONS[self.op](value, self.threshold)

    def __str__(self) -> str:
        threshold = self.threshold
        shown = f"{int(threshold):,}" if float(threshold).is_integer() else f"{threshold:,}"
        return f"{self.op} {shown}"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number. ``passed`` is None when there is no target or no value."""

    key: str
    label: str
    value: float | None
    unit: str
    target: Target | None = None

    @property
    def passed(self) -> bool | None:
        if self.target is None or self.value is None:
            return None
        return self.target.met_by(self.value)

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": _rounded(self.value),
            "unit": self.unit,
            "target": None if self.target is None else str(self.target),
            "pass": self.passed,
        }


@dataclass(slots=True)
class BenchmarkResult:
    """What one benchmark reports: figures, details for the JSON, problems, or a crash."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not measured, and why
    error: str | None = None
    seconds: float = 0.0

    def add(self, key: str, label: str, value: float | None, unit: str, target: Target | None = None) -> None:
        self.figures.append(Figure(f"{self.name}.{key}", label, value, unit, target))

    def check(self, ok: bool, problem: str) -> None:
        """Record ``problem`` unless ``ok``: the runtime misbehaved while being measured."""
        if not ok:
            self.problems.append(problem)


def _rounded(value: float | None) -> float | None:
    if value is None or isinstance(value, int):
        return value
    return round(value, 6 if abs(value) < 1 else 3)


def add_event_loop_figures(
    result: BenchmarkResult, cpu: float, elapsed: float, count: int, what: str
) -> None:
    """The event loop thread's CPU time over a run: per ``what`` and as a share of the wall time.

    Near 100 % busy, a run is bound by the runtime's Python work rather than by the disk; the
    figure per unit of work moves less with the disk's speed than the rate does."""
    result.add(
        f"cpu_us_per_{what}", f"  event loop CPU per {what}", cpu * 1e6 / count if count else None, "µs"
    )
    result.add(f"event_loop_busy_{what}", "  event loop busy", cpu / elapsed * 100 if elapsed else None, "%")
