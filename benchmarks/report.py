"""Presenting a run: the text table with targets, and the JSON document.

The table lists every figure under its benchmark's title with its target and pass/fail;
notes (what was not measured), problems (runtime misbehaviour) and crashes follow it. The
JSON holds the same figures with units, plus machine facts, settings and each benchmark's
raw details.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .figures import BenchmarkResult
from .suite import Settings

SCHEMA_VERSION = 1
_COLUMNS = ("figure", "value", "unit", "target", "result")


def render_table(results: list[BenchmarkResult]) -> str:
    """The figures as an aligned text table, then any problems and errors."""
    rows: list[tuple[str, ...]] = []
    for result in results:
        rows.append((result.title, "", "", "", "CRASHED" if result.error else ""))
        for figure in result.figures:
            verdict = {None: "", True: "pass", False: "FAIL"}[figure.passed]
            target = "" if figure.target is None else str(figure.target)
            rows.append(("  " + figure.label, format_value(figure.value), figure.unit, target, verdict))
    widths = [max(len(row[i]) for row in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    lines = [_format_row(_COLUMNS, widths), rule]
    lines += [_format_row(row, widths) for row in rows]
    lines.append(rule)
    for result in results:
        lines += [f"NOTE in {result.name}: {note}" for note in result.notes]
        lines += [f"PROBLEM in {result.name}: {problem}" for problem in result.problems]
        if result.error:
            last = result.error.strip().splitlines()[-1]
            lines.append(f"ERROR in {result.name}: {last} (traceback above)")
    lines.append(_summary_line(summary(results)))
    return "\n".join(lines)


def summary(results: list[BenchmarkResult]) -> dict[str, int]:
    verdicts = [f.passed for r in results for f in r.figures if f.passed is not None]
    return {
        "targets_met": sum(verdicts),
        "targets_missed": len(verdicts) - sum(verdicts),
        "problems": sum(len(r.problems) for r in results),
        "errors": sum(r.error is not None for r in results),
    }


def build_document(
    results: list[BenchmarkResult],
    *,
    settings: Settings,
    machine: dict[str, Any],
    date: str,
    command: list[str],
) -> dict[str, Any]:
    return {
        "schema": SCHEMA_VERSION,
        "date": date,
        "command": command,
        "machine": machine,
        "settings": asdict(settings),
        "summary": summary(results),
        "benchmarks": {
            r.name: {
                "title": r.title,
                "seconds": round(r.seconds, 3),
                "figures": {f.key: f.as_json() for f in r.figures},
                "problems": r.problems,
                "notes": r.notes,
                "error": r.error,
                "details": r.details,
            }
            for r in results
        },
    }


def write_document(document: dict[str, Any], path: Path) -> str:
    """Write ``document`` as indented JSON to ``path`` (parents created); return the text."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")
    return text


def _format_row(cells: tuple[str, ...], widths: list[int]) -> str:
    label, value, unit, target, verdict = cells
    return "  ".join(
        [
            label.ljust(widths[0]),
            value.rjust(widths[1]),
            unit.ljust(widths[2]),
            target.ljust(widths[3]),
            verdict,
        ]
    ).rstrip()


def format_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _summary_line(counts: dict[str, int]) -> str:
    return (
        f"targets met: {counts['targets_met']}, missed: {counts['targets_missed']}; "
        f"problems: {counts['problems']}; crashed benchmarks: {counts['errors']}"
    )
