"""The correlation id of the event the current task is handling, and where a request's comes from.

A context variable: set by the HTTP layer from ``x-request-id`` (or the trace id of a W3C
``traceparent``), inherited by every event the request causes (events run in the caller's
task), stored with queue messages and alarms, and set again when those are delivered.
"""

import uuid
from collections.abc import Mapping
from contextvars import ContextVar

current_correlation_id: ContextVar[str | None] = ContextVar("roost_correlation_id", default=None)

REQUEST_ID_HEADER = "x-request-id"
TRACEPARENT_HEADER = "traceparent"
MAX_REQUEST_ID_CHARS = 200
_HEX = frozenset("0123456789abcdef")


def correlation_id_from_headers(headers: Mapping[str, str]) -> str:
    """The request's ``x-request-id`` (1 to 200 characters), else the trace id of a valid
    ``traceparent``, else a new random id (32 hex characters, the shape of a trace id)."""
    given = headers.get(REQUEST_ID_HEADER, "")
    if 0 < len(given) <= MAX_REQUEST_ID_CHARS:
        return given
    trace_id = trace_id_of(headers.get(TRACEPARENT_HEADER, ""))
    return trace_id or uuid.uuid4().hex


def trace_id_of(traceparent: str) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``), or None if
    it is malformed or all zeros (which the specification declares invalid)."""
    parts = traceparent.strip().lower().split("-")
    if len(parts) < 4 or [len(p) for p in parts[:4]] != [2, 32, 16, 2] or parts[0] == "ff":
        return None
    if not all(set(p) <= _HEX for p in parts[:4]) or set(parts[1]) == {"0"} or set(parts[2]) == {"0"}:
        return None
    return parts[1]
