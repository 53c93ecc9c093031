"""How the operator's commands show the server's JSON to a person: aligned columns, key and
value lines, times in UTC. ``--json`` output never goes through here."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

MAX_CELL_CHARS = 60  # a message body or a job, as shown in a column


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """``rows`` under ``headers``, each column as wide as its widest cell."""
    cells = [[str(h) for h in headers], *[[_cell(value) for value in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def fields(pairs: Sequence[tuple[str, Any]]) -> str:
    """One ``name: value`` line per pair, the values aligned."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name + ':':<{width + 1}} {_cell(value, limit=None)}" for name, value in pairs)


def shown(value: Any, *, limit: int | None = MAX_CELL_CHARS) -> str:
    """``value`` on one line: a str as it is, anything else as compact JSON; cut at ``limit``."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def when(epoch_seconds: float | None, *, now: float | None = None) -> str:
    """An instant in UTC to the second; with ``now``, how far from it too (``in 5m``, ``2h ago``)."""
    if epoch_seconds is None:
        return "-"
    moment = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    if now is None:
        return moment
    delta = epoch_seconds - now
    return f"{moment} (in {duration(delta)})" if delta >= 0 else f"{moment} ({duration(-delta)} ago)"


def duration(seconds: float) -> str:
    """``seconds`` in its two largest units: ``42s``, ``5m 3s``, ``2h 4m``, ``3d 2h``."""
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    for unit, size, smaller, smaller_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            rest = (whole % size) // smaller_size
            return f"{whole // size}{unit}" + (f" {rest}{smaller}" if rest else "")
    return f"{whole}s"


def _cell(value: Any, *, limit: int | None = MAX_CELL_CHARS) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}" if not value.is_integer() else str(int(value))
    return shown(value, limit=limit)
