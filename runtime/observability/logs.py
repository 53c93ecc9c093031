"""Roost's log lines: the JSON-lines and text formatters of ``roost serve``, and redaction.

Roost logs through stdlib ``logging`` under ``roost.*`` loggers. A line about an event passes
its fields as ``extra`` (``event``, ``queue``, ``message_id``, ``attempts``, ``error``, ...);
both formatters write them out, and add the correlation id of the event being handled when
the line has none of its own. Every string written is redacted first: a secret given to the
formatter never appears in a line, whatever message or exception carried it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from functools import partial
from typing import Any

from .correlation import current_correlation_id

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
REDACTED = "[redacted]"
# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class _Redacting(logging.Formatter):
    def __init__(self, fmt: str | None = None, *, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        self._secrets: list[str] = []
        self.redact(secrets)

    def redact(self, secrets: Iterable[str]) -> None:
        """Hide these values (empty ones are ignored) in every line from now on."""
        self._secrets = sorted({*self._secrets, *(s for s in secrets if s)}, key=len, reverse=True)

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                value = value.replace(secret, REDACTED)
        return value

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The record's own fields (its ``extra``), plus the current correlation id."""
        out = {k: self._clean(v) for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}
        if out.get("correlation_id") is None:
            out.pop("correlation_id", None)
            correlation_id = current_correlation_id.get()
            if correlation_id is not None:
                out["correlation_id"] = self._clean(correlation_id)
        return out


class JsonFormatter(_Redacting):
    """One JSON object per line: ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    the record's fields, and ``exception`` (the traceback as text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._clean(record.getMessage()),
            **self.fields(record),
        }
        if record.exc_info:
            line["exception"] = self._clean(self.formatException(record.exc_info))
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(_Redacting):
    """``time LEVEL logger: message key=value ...``, for people reading a terminal."""

    def __init__(self, *, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets=secrets)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in self.fields(record).items() if k != "event")
        return self._clean(f"{text} {extras}" if extras else text)


def configure_logging(
    log_format: str = "text",
    level: str = "info",
    *,
    secrets: Iterable[str] = (),
    fields: Mapping[str, Any] | None = None,
) -> logging.Handler:
    """Send every log line to stderr in ``log_format`` ("text" or "json") from ``level`` up,
    with ``secrets`` redacted and ``fields`` (a worker's number) added to every line;
    replaces the root logger's handlers. Returns the handler."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    if level not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(secrets=secrets) if log_format == "json" else TextFormatter(secrets=secrets)
    )
    if fields:
        handler.addFilter(partial(_add_fields, dict(fields)))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler


def _add_fields(fields: dict[str, Any], record: logging.LogRecord) -> bool:
    for name, value in fields.items():
        setattr(record, name, value)
    return True
