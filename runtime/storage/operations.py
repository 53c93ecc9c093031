"""The key-value methods shared by ``Storage`` and its transactions.

Every method here is ``async`` for API compatibility but never yields to trio: it reads
buffered writes or LMDB's memory map and writes to an in-memory buffer. That is what makes
``n = await get(k); await put(k, n + 1)`` atomic with respect to other events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from math import isfinite
from typing import Any

from ..durability.env import Environment
from ..model import codec
from ..observability.correlation import current_correlation_id
from ..observability.tracing import active_traceparent
from . import limits
from .writeset import WriteSet, lookup, lookup_alarm, overlay


class KeyValueOperations:
    """Reads go through ``_layers()`` then LMDB; writes go to ``_write_target()``."""

    __slots__ = ()

    _env: Environment
    _prefix: bytes

    # -- supplied by subclasses ------------------------------------------------------------

    def _layers(self) -> tuple[WriteSet | None, ...]:
        raise NotImplementedError

    def _write_target(self) -> WriteSet:
        raise NotImplementedError

    def _durable_alarm(self) -> float | None:
        raise NotImplementedError

    def _note_alarm_write(self) -> None:
        """Told of every ``set_alarm``/``delete_alarm`` (the alarm scheduler needs to know)."""

    # -- reads -----------------------------------------------------------------------------

    def _read(self, key: bytes) -> bytes | None:
        found, value = lookup(self._layers(), key)
        if found:
            return value
        return self._env.get(self._prefix, key)

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key`` (a fresh copy), or ``default``."""
        raw = self._read(limits.key_bytes(key))
        return default if raw is None else codec.decode(raw)

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The keys that exist, with their values; at most 128 keys."""
        out = {}
        for key in limits.key_list(keys):
            raw = self._read(key)
            if raw is not None:
                out[key.decode()] = codec.decode(raw)
        return out

    async def list(
        self,
        *,
        prefix: str | None = None,
        start: str | None = None,
        start_after: str | None = None,
        end: str | None = None,
        reverse: bool = False,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Entries ordered by the keys' UTF-8 bytes; ``start`` inclusive, ``end`` exclusive."""
        low, high = _bounds(prefix, start, start_after, end)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"list limit must be a positive int, got {limit!r}")
        if low is not None and high is not None and low >= high:
            return {}
        buffered, hidden = overlay(self._layers(), low, high)
        stored: dict[bytes, bytes | None] = {}
        if not hidden:
            extra = None if limit is None else limit + len(buffered)
            stored = dict(self._env.scan(self._prefix, low, high, reverse=reverse, limit=extra))
        stored.update(buffered)
        keys = sorted((k for k, v in stored.items() if v is not None), reverse=reverse)
        if limit is not None:
            keys = keys[:limit]
        return {k.decode(): codec.decode(stored[k]) for k in keys}  # type: ignore[arg-type]

    async def get_alarm(self) -> float | None:
        """The alarm's time in epoch seconds, or None."""
        found, when = lookup_alarm(self._layers())
        return when if found else self._durable_alarm()

    # -- writes ----------------------------------------------------------------------------

    async def put(self, key: str, value: Any) -> None:
        """Store a copy of ``value`` under ``key``."""
        checked = limits.key_bytes(key)
        data = limits.value_bytes(key, value)
        self._write_target().values[checked] = data

    async def put_many(self, entries: Mapping[str, Any]) -> None:
        """Store every entry, all or none; at most 128."""
        checked = limits.entry_list(entries)
        self._write_target().values.update(checked)

    async def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed."""
        data = limits.key_bytes(key)
        existed = self._read(data) is not None
        self._write_target().values[data] = None
        return existed

    async def delete_many(self, keys: Iterable[str]) -> int:
        """Delete the keys; how many existed. At most 128."""
        checked = limits.key_list(keys)
        existed = sum(1 for k in set(checked) if self._read(k) is not None)
        target = self._write_target()
        for key in checked:
            target.values[key] = None
        return existed

    async def set_alarm(self, when: float | datetime) -> None:
        """Set the actor's one alarm (replacing any); a past time means now. The alarm keeps
        the correlation id of the event that set it, and its span when tracing is on."""
        target = self._write_target()
        target.alarm = _alarm_time(when)
        target.alarm_correlation_id = current_correlation_id.get()
        target.alarm_traceparent = active_traceparent()
        self._note_alarm_write()

    async def delete_alarm(self) -> None:
        """Remove the actor's alarm, if any."""
        target = self._write_target()
        target.alarm, target.alarm_correlation_id, target.alarm_traceparent = None, None, None
        self._note_alarm_write()


def _bounds(
    prefix: str | None, start: str | None, start_after: str | None, end: str | None
) -> tuple[bytes | None, bytes | None]:
    if start is not None and start_after is not None:
        raise ValueError("list takes start or start_after, not both")
    low = limits.key_bytes(start) if start is not None else None
    if start_after is not None:
        low = limits.key_bytes(start_after) + b"\x00"
    high = limits.key_bytes(end) if end is not None else None
    if prefix is not None:
        p = limits.key_bytes(prefix)
        if low is None or p > low:
            low = p
        after = _after_prefix(p)
        if after is not None and (high is None or after < high):
            high = after
    return low, high


def _after_prefix(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with ``prefix`` (None: there is none)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _alarm_time(when: float | datetime) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError("set_alarm needs a timezone-aware datetime")
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise TypeError(f"set_alarm takes epoch seconds or a datetime, not {type(when).__name__}")
    if not isfinite(when):
        raise ValueError(f"alarm time must be finite, got {when!r}")
    return float(when)
