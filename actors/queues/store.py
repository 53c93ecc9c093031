"""``QueueStore``: one queue's messages in its actor's storage, and the ``QueueIndex`` over them.

Owns the segments and their state records (layout in ``segments``); the index covers the
oldest ``index_window`` messages, the rest wait on disk, counted, indexed in order as it drains.
Decides nothing about delivery or outcomes: what it writes is the index's truth.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from runtime import Storage, StorageLimitError, now

from .index import PULLED, PUSHED, Entry, QueueIndex
from .segments import (
    ARRIVED_AT,
    BODY,
    PUSH_LEASE,
    SEGMENT_PREFIX,
    STATE_PREFIX,
    TIMESTAMP,
    VISIBLE_AT,
    first_seq,
    initial_state,
    segment_key,
    state_key,
)

SEGMENT_LOAD_CHUNK = 16  # segments are up to 128 KiB each
STATE_LOAD_CHUNK = 128
CHUNK = 128  # storage's limit of keys per call


class QueueStore:
    """The stored messages of one queue; ``next_seq`` is the seq the next one gets, and
    each message expires ``retention_seconds`` after it arrived (``Entry.expires_at``)."""

    def __init__(
        self,
        storage: Storage,
        *,
        next_seq: int,
        index_window: int,
        retention_seconds: float,
        legacy_since: float | None,
    ) -> None:
        self._storage = storage
        self._index_window = index_window
        self._retention_seconds = retention_seconds
        # Where the retention of messages stored before it existed counts from (None: from
        # now, as none was met yet); once one is met, the queue actor's meta keeps the time.
        self.legacy_since = now() if legacy_since is None else legacy_since
        self.keeps_legacy = legacy_since is not None
        self.next_seq = next_seq
        self.index = QueueIndex()
        self._segments: dict[int, int] = {}  # first seq -> how many messages it was stored with
        self._live: dict[int, int] = {}  # first seq -> how many of those are still stored
        self._unloaded_from: int | None = None  # first seq of the segments left on disk only
        self._unloaded_count = 0  # messages in those segments, and their bytes
        self._unloaded_bytes = 0

    @property
    def backlog(self) -> int:
        """Messages stored, indexed or not."""
        return len(self.index) + self._unloaded_count

    @property
    def bytes(self) -> int:
        """Encoded bytes of the stored messages' bodies."""
        return self.index.bytes + self._unloaded_bytes

    async def load(self) -> None:
        """Index the stored messages (up to the window) and count the rest, as the actor starts."""
        states = {
            first_seq(key): state
            async for chunk in self._chunks(STATE_PREFIX, STATE_LOAD_CHUNK)
            for key, state in chunk.items()
        }
        released = []
        moment = now()
        async for chunk in self._chunks(SEGMENT_PREFIX, SEGMENT_LOAD_CHUNK):
            for key, messages in chunk.items():
                first = first_seq(key)
                state = states.get(first) or initial_state(messages)
                if self._unloaded_from is None and len(self.index) < self._index_window:
                    if self._index_segment(first, messages, state, moment):
                        released.append(first)
                else:
                    self._leave_on_disk(first, messages, state)
        await self.save_states(released)

    async def add(self, messages: list[list[Any]], moment: float) -> None:
        """Store ``messages`` as one segment, or as several if they are over the storage value
        limit (a refused put writes nothing, so halving keeps them in order)."""
        first = self.next_seq
        try:
            await self._storage.put(segment_key(first), messages)
        except StorageLimitError:
            if len(messages) == 1:
                raise
            half = len(messages) // 2
            await self.add(messages[:half], moment)
            await self.add(messages[half:], moment)
            return
        self.next_seq += len(messages)
        if self._unloaded_from is not None or len(self.index) + len(messages) > self._index_window:
            self._leave_on_disk(first, messages, None)
            return
        self._segments[first] = self._live[first] = len(messages)
        for seq, message in enumerate(messages, first):
            self.index.add(self._entry(seq, message, message[VISIBLE_AT], first), moment)

    async def messages(self, entries: list[Entry]) -> list[list[Any]]:
        """The stored messages of ``entries``, in their order."""
        firsts = list(dict.fromkeys(entry.segment for entry in entries))
        segments: dict[int, list[list[Any]]] = {}
        for start in range(0, len(firsts), CHUNK):
            keys = [segment_key(first) for first in firsts[start : start + CHUNK]]
            segments.update(
                (first_seq(key), value) for key, value in (await self._storage.get_many(keys)).items()
            )
        return [segments[entry.segment][entry.seq - entry.segment] for entry in entries]

    async def count_attempt(self, entries: list[Entry]) -> list[list[Any]]:
        """Count a delivery attempt of each (just leased) entry, in storage before the
        delivery starts; returns their stored messages."""
        for entry in entries:
            entry.attempts += 1
        await self.save_states(entry.segment for entry in entries)
        return await self.messages(entries)

    async def remove(self, entries: list[Entry], also_changed: Iterable[Entry] = ()) -> None:
        """Forget ``entries`` and write the state of their segments (and those of
        ``also_changed``)."""
        for entry in entries:
            # Skip what went meanwhile (a purge while the dead-letter queue or redrive
            # target was being written).
            if self.index.remove(entry.seq) is not None:
                self._live[entry.segment] -= 1
        await self.save_states(entry.segment for entry in [*entries, *also_changed])

    async def purge(self) -> int:
        """Delete every stored message; how many there were."""
        count = self.backlog
        keys = [key for first in self._segments for key in (segment_key(first), state_key(first))]
        if self._unloaded_from is not None:
            async for chunk in self._chunks(
                SEGMENT_PREFIX, SEGMENT_LOAD_CHUNK, start=segment_key(self._unloaded_from)
            ):
                keys += [key for segment in chunk for key in (segment, state_key(first_seq(segment)))]
        for start in range(0, len(keys), CHUNK):
            await self._storage.delete_many(keys[start : start + CHUNK])
        self.index.clear()
        self._segments.clear()
        self._live.clear()
        self._unloaded_from, self._unloaded_count, self._unloaded_bytes = None, 0, 0
        return count

    async def load_more(self, wanted: float | None = None) -> None:
        """Index segments left on disk, oldest first: until ``wanted`` messages are indexed,
        or by default, once the index is half empty, until the window is full."""
        if self._unloaded_from is None:
            return
        if wanted is None:
            if len(self.index) > self._index_window // 2:
                return
            wanted = self._index_window
        moment = now()
        released = []
        while self._unloaded_from is not None and len(self.index) < wanted:
            chunk = await self._storage.list(
                prefix=SEGMENT_PREFIX, start=segment_key(self._unloaded_from), limit=SEGMENT_LOAD_CHUNK
            )
            states = await self._storage.get_many([state_key(first_seq(key)) for key in chunk])
            for key, messages in chunk.items():
                first = first_seq(key)
                state = states.get(state_key(first)) or initial_state(messages)
                count, size = _live_totals(messages, state)
                self._unloaded_count -= count
                self._unloaded_bytes -= size
                if self._index_segment(first, messages, state, moment):
                    released.append(first)
                self._unloaded_from = first + len(messages)
            if len(chunk) < SEGMENT_LOAD_CHUNK:
                self._unloaded_from = None
        await self.save_states(released)

    async def save_states(self, firsts: Iterable[int]) -> None:
        """Write the state of these segments from the index; delete those with no message left."""
        puts: dict[str, list[Any]] = {}
        deletes: list[str] = []
        for first in dict.fromkeys(firsts):
            if first not in self._live:
                continue  # purged
            if self._live[first]:
                puts[state_key(first)] = [
                    self._message_state(seq) for seq in range(first, first + self._segments[first])
                ]
            else:
                deletes += [segment_key(first), state_key(first)]
                del self._segments[first], self._live[first]
        keys = list(puts)
        for start in range(0, len(keys), CHUNK):
            await self._storage.put_many({key: puts[key] for key in keys[start : start + CHUNK]})
        for start in range(0, len(deletes), CHUNK):
            await self._storage.delete_many(deletes[start : start + CHUNK])

    def _index_segment(self, first: int, messages: list[list[Any]], state: list[Any], moment: float) -> bool:
        """Index a stored segment's messages as ``state`` says; True if its state needs
        writing: a push lease held one (its delivery died with the process, so it waits
        again), or none is left (the records are deleted)."""
        self._segments[first] = len(messages)
        self._live[first] = 0
        released = False
        for offset, (message, message_state) in enumerate(zip(messages, state, strict=True)):
            if message_state is None:
                continue
            attempts, visible_at, lease = message_state
            entry = self._entry(first + offset, message, visible_at, first)
            entry.attempts = attempts
            if lease == PUSH_LEASE:
                released = True
            elif lease is not None:
                entry.state, entry.lease_id, entry.lease_until = PULLED, *lease
            self.index.add(entry, moment)
            self._live[first] += 1
        return released or not self._live[first]

    def _entry(self, seq: int, message: list[Any], visible_at: float, first: int) -> Entry:
        if len(message) > ARRIVED_AT:
            arrived = message[ARRIVED_AT]
        else:
            arrived = self.legacy_since
            self.keeps_legacy = True
        expires_at = arrived + self._retention_seconds
        return Entry(seq, visible_at, message[TIMESTAMP], len(message[BODY]), first, expires_at=expires_at)

    def _leave_on_disk(self, first: int, messages: list[list[Any]], state: list[Any] | None) -> None:
        """Count a segment past the index (``state`` None: every message in it waits)."""
        if self._unloaded_from is None:
            self._unloaded_from = first
        count, size = _live_totals(messages, state)
        self._unloaded_count += count
        self._unloaded_bytes += size

    def _message_state(self, seq: int) -> list[Any] | None:
        entry = self.index.get(seq)
        if entry is None:
            return None
        if entry.state == PUSHED:
            lease: Any = PUSH_LEASE
        elif entry.state == PULLED:
            lease = [entry.lease_id, entry.lease_until]
        else:
            lease = None
        return [entry.attempts, entry.visible_at, lease]

    async def _chunks(
        self, prefix: str, size: int, start: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record under ``prefix`` (from ``start`` on), in key order, ``size`` at a time."""
        after = None
        while True:
            if after is None:
                chunk = await self._storage.list(prefix=prefix, start=start, limit=size)
            else:
                chunk = await self._storage.list(prefix=prefix, start_after=after, limit=size)
            yield chunk
            if len(chunk) < size:
                return
            after = next(reversed(chunk))


def _live_totals(messages: list[list[Any]], state: list[Any] | None) -> tuple[int, int]:
    """How many of a segment's messages are still stored, and their bytes."""
    live = messages if state is None else [m for m, s in zip(messages, state, strict=True) if s is not None]
    return len(live), sum(len(message[BODY]) for message in live)
