"""The correlation id of the event the current task is handling.

A context variable: set by the HTTP layer from ``x-request-id``, inherited by every event
the request causes (events run in the caller's task), stored with queue messages and
alarms, and set again when those are delivered.
"""

from contextvars import ContextVar

current_correlation_id: ContextVar[str | None] = ContextVar("roost_correlation_id", default=None)
