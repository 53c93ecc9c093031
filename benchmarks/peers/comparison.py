"""The side-by-side table: each figure's median per system and the ratio Roost/peer.

A row is one figure of one workload for one peer; Roost's median is over its own runs of
that workload. Over HTTP, Roost runs with 1 and with 2 workers, so each peer's figure appears
in two rows, beside each of Roost's. The ratio is Roost's median divided by the peer's; whether that is good
depends on the figure, so each row also says who is ahead and by what factor. A value
marked * comes from runs that reported problems (listed under the table): a run stopped at
its time limit, say, so that the value is a bound rather than a measurement.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from ..figures import BenchmarkResult
from ..http_wrk import WORKERS
from ..report import format_value

ROOST = "Roost"
MAX_FAILURE_CHARS = 60  # of a crash's last line in the table; the notes under it have all of it


@dataclass(frozen=True, slots=True)
class Row:
    workload: str
    key: str
    label: str
    unit: str
    higher_is_better: bool
    roost_key: str | None = None  # Roost's figure, where it is not ``key`` (one of several setups)

    @property
    def roost(self) -> str:
        return self.roost_key or self.key


def http_rows(actors: int, connections: int, seconds: float) -> list[Row]:
    """Roost with 1 and with 2 workers (``roost serve --workers N``), each beside every peer."""
    workload = f"http-{actors}"
    spread = "1 actor" if actors == 1 else f"{actors:,} actors"
    http = f"HTTP durable increments (wrk), {connections} connections, {seconds:g} s"
    found = []
    for workers in WORKERS:
        roost = f"{workload}.workers-{workers}"
        setup = f"Roost {workers} worker{'s' if workers > 1 else ''}"
        label = f"{http}, {spread}, {setup}"
        found += [
            Row(workload, f"{workload}.{key}", what, unit, higher, f"{roost}.{key}")
            for key, what, unit, higher in (
                ("requests_per_second", label, "req/s", True),
                ("p99", "  same, latency p99", "ms", False),
                ("non_2xx", "  same, non-2xx answers", "answers", False),
                ("socket_errors", "  same, socket errors", "errors", False),
            )
        ]
    return found


def rows(messages: int, failing: int, alarms: int, connections: int, seconds: float) -> list[Row]:
    return [
        *http_rows(1, connections, seconds),
        *http_rows(1000, connections, seconds),
        Row(
            "queues",
            "queues.end_to_end",
            f"queue end to end, {messages:,} messages, batch 100",
            "msg/s",
            True,
        ),
        Row("queues", "queues.fail_once", f"queue, {failing:,} messages each failing once", "msg/s", True),
        Row(
            "alarms",
            "alarms.same-second.p50",
            f"{alarms:,} alarms due at one second 5 s ahead: lateness p50",
            "ms",
            False,
        ),
        Row("alarms", "alarms.same-second.p99", "  same, lateness p99", "ms", False),
        Row("alarms", "alarms.spread.p50", f"{alarms:,} alarms spread over 5 s: lateness p50", "ms", False),
        Row("alarms", "alarms.spread.p99", "  same, lateness p99", "ms", False),
    ]


@dataclass(slots=True)
class Runs:
    """Every run's result, by (workload, system), in the order they ran."""

    results: dict[tuple[str, str], list[BenchmarkResult]] = field(default_factory=dict)

    def add(self, workload: str, system: str, result: BenchmarkResult) -> None:
        self.results.setdefault((workload, system), []).append(result)

    def values(self, workload: str, system: str, key: str) -> list[float]:
        found = []
        for result in self.results.get((workload, system), []):
            for figure in result.figures:
                if figure.key == key and figure.value is not None:
                    found.append(figure.value)  # a count stays an int, shown without decimals
        return found

    def notes(self, workload: str, system: str) -> list[str]:
        """What the runs did not measure, and why (not problems: their values are n/a)."""
        results = self.results.get((workload, system), [])
        return [f"run {run}: {note}" for run, result in enumerate(results, 1) for note in result.notes]

    def problems(self, workload: str, system: str) -> list[str]:
        notes = []
        for run, result in enumerate(self.results.get((workload, system), []), 1):
            notes += [f"run {run}: {problem}" for problem in result.problems]
            if result.error:
                notes.append(f"run {run}: crashed: {result.error.strip().splitlines()[-1]}")
        return notes


    def failure(self, workload: str, system: str) -> str | None:
        """Why every run of ``system`` crashed (the first one's last line), if every one did."""
        results = self.results.get((workload, system), [])
        if not results or not all(result.error for result in results):
            return None
        return exception_line(results[0].error)


def exception_line(traceback: str) -> str:
    """The line naming the exception in a formatted traceback (its message may go on for lines,
    such as a server's log)."""
    lines = traceback.strip().splitlines()
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    after = lines[frames[-1] + 1 :] if frames else lines
    return next((line for line in after if line and not line[0].isspace()), lines[-1])


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def compare(
    rows_: list[Row], runs: Runs, peers: dict[str, list[str]], missing: dict[str, str]
) -> list[dict[str, Any]]:
    """One entry per (row, peer taking part in the row's workload); ``missing`` names the peers
    not installed, with why."""
    table = []
    for row in rows_:
        roost_values = runs.values(row.workload, ROOST, row.roost)
        for peer in peers.get(row.workload, []):
            peer_values = runs.values(row.workload, peer, row.key)
            roost, other = median(roost_values), median(peer_values)
            ratio = roost / other if roost is not None and other else None
            table.append(
                {
                    "workload": row.workload,
                    "key": row.key,
                    "label": row.label,
                    "unit": row.unit,
                    "peer": peer,
                    "roost_median": roost,
                    "peer_median": other,
                    "roost_runs": roost_values,
                    "peer_runs": peer_values,
                    "ratio_roost_over_peer": ratio,
                    "ahead": _ahead(ratio, row.higher_is_better, peer),
                    "roost_problems": bool(runs.problems(row.workload, ROOST)),
                    "peer_problems": bool(runs.problems(row.workload, peer)),
                    "peer_absent": _absent(peer, missing, runs.failure(row.workload, peer)),
                }
            )
    return table


def _absent(peer: str, missing: dict[str, str], failure: str | None) -> str | None:
    """What the table shows instead of a peer's value when it has none to show."""
    if peer in missing:
        return "not installed"
    if failure is not None:
        return f"failed: {failure[:MAX_FAILURE_CHARS]}"
    return None


def _ahead(ratio: float | None, higher_is_better: bool, peer: str) -> str:
    if ratio is None:
        return ""
    if not ratio and not higher_is_better:
        return ROOST  # none against some: no factor to give
    factor = ratio if higher_is_better else 1 / ratio
    if 0.95 <= factor <= 1.05:
        return "even"
    return f"{ROOST} {factor:.1f}x" if factor > 1 else f"{peer} {1 / factor:.1f}x"


def _cells(entry: dict[str, Any]) -> tuple[str, ...]:
    ratio = entry["ratio_roost_over_peer"]
    return (
        entry["label"],
        entry["unit"],
        entry["peer"],
        format_value(entry["roost_median"]) + (" *" if entry["roost_problems"] else ""),
        entry["peer_absent"] or format_value(entry["peer_median"]) + (" *" if entry["peer_problems"] else ""),
        "n/a" if ratio is None else f"{ratio:.2f}",
        entry["ahead"],
    )


HEADER = ("workload", "unit", "peer", "Roost", "peer value", "Roost/peer", "ahead")


def render_text(table: list[dict[str, Any]]) -> str:
    lines = [HEADER, *(_cells(entry) for entry in table)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    right = {3, 4, 5}
    out = []
    for line in lines:
        out.append(
            "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(line, widths, strict=True))
            )
        )
    out.insert(1, "-" * len(out[0]))
    return "\n".join(row.rstrip() for row in out)


def render_markdown(table: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for entry in table:
        cells = list(_cells(entry))
        cells[0] = cells[0].strip()
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
