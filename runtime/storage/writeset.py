"""Buffered writes not yet durable, layered over LMDB for reads.

A storage reads through layers, newest first: an open transaction's writes, the writes not
yet handed to the committer, the writes of the commit in flight, then LMDB. A layer that was
``cleared`` (``delete_all``) hides everything below it.
"""

from __future__ import annotations

from collections.abc import Sequence

# The alarm slot of a WriteSet that did not touch the alarm.
UNCHANGED = object()


class WriteSet:
    """Keys (UTF-8 bytes) to encoded values or None (deleted), a clear flag, an alarm change."""

    __slots__ = ("values", "cleared", "alarm", "alarm_correlation_id", "alarm_traceparent")

    def __init__(self, *, cleared: bool = False) -> None:
        self.values: dict[bytes, bytes | None] = {}
        self.cleared = cleared
        self.alarm: object = None if cleared else UNCHANGED
        # The correlation id and the span (W3C traceparent) of the event that set the alarm
        # (meaningful with ``alarm``).
        self.alarm_correlation_id: str | None = None
        self.alarm_traceparent: str | None = None

    def clear(self) -> None:
        self.values.clear()
        self.cleared = True
        self.alarm = None
        self.alarm_correlation_id = None
        self.alarm_traceparent = None

    def merge_into(self, below: WriteSet) -> None:
        """Apply this set's writes on top of ``below`` (used when a transaction commits)."""
        if self.cleared:
            below.clear()
        below.values.update(self.values)
        if self.alarm is not UNCHANGED:
            below.alarm = self.alarm
            below.alarm_correlation_id = self.alarm_correlation_id
            below.alarm_traceparent = self.alarm_traceparent


def lookup(layers: Sequence[WriteSet | None], key: bytes) -> tuple[bool, bytes | None]:
    """(found, value) from the newest layer that decides ``key``; not found means ask LMDB."""
    for layer in layers:
        if layer is None:
            continue
        values = layer.values
        if key in values:
            return True, values[key]
        if layer.cleared:
            return True, None
    return False, None


def lookup_alarm(layers: Sequence[WriteSet | None]) -> tuple[bool, float | None]:
    for layer in layers:
        if layer is not None and layer.alarm is not UNCHANGED:
            return True, layer.alarm  # type: ignore[return-value]
    return False, None


def overlay(
    layers: Sequence[WriteSet | None], low: bytes | None, high: bytes | None
) -> tuple[dict[bytes, bytes | None], bool]:
    """The buffered writes with ``low <= key < high``, newest winning, and whether LMDB is hidden."""
    merged: dict[bytes, bytes | None] = {}
    hidden = False
    for layer in layers:
        if layer is None:
            continue
        for key, value in layer.values.items():
            if key not in merged and (low is None or key >= low) and (high is None or key < high):
                merged[key] = value
        if layer.cleared:
            hidden = True
            break
    return merged, hidden
