"""``QueueActor``: one queue's messages, kept in the actor's storage, delivered in batches.

One instance per queue name. Messages are stored in segments (see ``queue_segments``); a
``QueueIndex`` over the oldest of them, rebuilt in ``on_start``, holds each message's
attempts, visibility and lease, and is written back as its segments' state whenever those
change. The index covers about ``INDEX_WINDOW`` messages: the segments after it wait on disk,
counted but not held in memory, and are indexed in order as the index drains, so a backlog
costs disk, not memory. The actor's
alarm is set for the next moment something is due (a batch filled or timed out, a delayed
message visible, a pull lease ending); deliveries run in the background (``wait_until``) and
their outcomes are written when the consumer returns. Must stay true: a message leaves
storage only when it was acked, or after it is durable in the dead-letter queue; a delivery
is counted in storage before it starts, and one whose outcome is lost (crash, reset) is
delivered again.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timezone
from typing import Any

from runtime import Actor, ActorResetError, AlarmInfo, StorageLimitError, now

from .errors import QueueLimitError
from .message import ACK, RETRY, Message, MessageBatch
from .message_codec import decode_body
from .names import REGISTRY_BINDING
from .queue_index import DELAYED, PULLED, PUSHED, READY, Entry, QueueIndex
from .queue_segments import (
    BODY,
    CONTENT_TYPE,
    CORRELATION_ID,
    DEAD_LETTER,
    ID,
    PUSH_LEASE,
    SEGMENT_PREFIX,
    STATE_PREFIX,
    TIMESTAMP,
    TRACEPARENT,
    VISIBLE_AT,
    first_seq,
    initial_state,
    new_message,
    segment_key,
    state_key,
)
from .queue_telemetry import deliver_batch, log_settled

META_KEY = "meta"
INDEX_WINDOW = 10_000  # messages indexed in memory; the rest of a backlog waits on disk
SEGMENT_LOAD_CHUNK = 16  # segments are up to 128 KiB each
STATE_LOAD_CHUNK = 128
CHUNK = 128  # storage's limit of keys per call
MAX_VISIBILITY_TIMEOUT_SECONDS = 43_200
MAX_PEEK = 1000


class QueueActor(Actor):
    """The built-in actor behind one queue (its name is the queue's name)."""

    async def on_start(self) -> None:
        self.registry = self.env[REGISTRY_BINDING]
        self.name: str = self.id.name or ""
        meta = await self.storage.get(META_KEY, {})
        self.next_seq: int = meta.get("next_seq", 0)
        self.counters: dict[str, int] = {k: meta.get(k, 0) for k in ("acked", "retried", "dead_lettered")}
        self.paused: bool = meta.get("paused", False)
        self.index = QueueIndex()
        self.segments: dict[int, int] = {}  # first seq -> how many messages it was stored with
        self.live: dict[int, int] = {}  # first seq -> how many of those are still stored
        self.free_slots = list(range(self.settings.max_concurrency))
        self.unloaded_from: int | None = None  # first seq of the segments left on disk only
        self.unloaded_count = 0  # messages in those segments, and their bytes
        self.unloaded_bytes = 0
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
                if self.unloaded_from is None and len(self.index) < INDEX_WINDOW:
                    if self._index_segment(first, messages, state, moment):
                        released.append(first)
                else:
                    self._leave_on_disk(first, messages, state)
        await self._save_states(released)
        await self._pump()

    @property
    def settings(self) -> Any:
        return self.registry.settings(self.name)

    # -- producers ----------------------------------------------------------------------------

    async def enqueue(self, messages: list[list[Any]]) -> None:
        """Store ``messages`` (made by ``new_message``, bodies already checked and encoded by
        the producer); returns once they are durable (the output gate holds the result)."""
        moment = now()
        # This event runs in the sender's task, so its correlation id is the sender's.
        sender_correlation_id = self.ctx.correlation_id
        for message in messages:
            if message[CORRELATION_ID] is None:
                message[CORRELATION_ID] = sender_correlation_id
        await self._store(messages, moment)
        await self._save_meta()
        await self._pump()

    # -- operations ---------------------------------------------------------------------------

    async def metrics(self) -> dict[str, Any]:
        moment = now()
        self.index.promote(moment)
        oldest = self.index.oldest_timestamp()
        return {
            "queue": self.name,
            "backlog": len(self.index) + self.unloaded_count,
            "in_flight": self.index.count(PUSHED) + self.index.count(PULLED),
            "delayed": self.index.count(DELAYED),
            "oldest_age_seconds": 0.0 if oldest is None else max(0.0, moment - oldest),
            "bytes": self.index.bytes + self.unloaded_bytes,
            "paused": self.paused,
            **self.counters,
        }

    async def peek(self, limit: int = 10) -> list[dict[str, Any]]:
        """The first ``limit`` stored messages, oldest first, unchanged."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PEEK:
            raise QueueLimitError(f"peek limit must be an int in 1..{MAX_PEEK}, got {limit!r}")
        await self._load_more(limit)
        entries = []
        for entry in self.index:
            if len(entries) == limit:
                break
            entries.append(entry)
        messages = await self._messages(entries)
        return [_view(message, entry) for message, entry in zip(messages, entries, strict=True)]

    async def purge(self) -> int:
        """Delete every stored message; how many there were."""
        count = len(self.index) + self.unloaded_count
        keys = [key for first in self.segments for key in (segment_key(first), state_key(first))]
        if self.unloaded_from is not None:
            async for chunk in self._chunks(
                SEGMENT_PREFIX, SEGMENT_LOAD_CHUNK, start=segment_key(self.unloaded_from)
            ):
                keys += [key for segment in chunk for key in (segment, state_key(first_seq(segment)))]
        for start in range(0, len(keys), CHUNK):
            await self.storage.delete_many(keys[start : start + CHUNK])
        self.index.clear()
        self.segments.clear()
        self.live.clear()
        self.unloaded_from, self.unloaded_count, self.unloaded_bytes = None, 0, 0
        await self._schedule()
        return count

    async def pause(self) -> None:
        self.paused = True
        await self._save_meta()
        await self._schedule()

    async def resume(self) -> None:
        self.paused = False
        await self._save_meta()
        await self._pump()

    async def redrive(self, to: str | None = None, ids: list[str] | None = None) -> int:
        """Move waiting messages (all, or those ``ids``) to ``to``, or back to the queue each
        died in; returns how many moved. They keep their id and timestamp, and leave this
        queue only once they are durable in their new one."""
        wanted = None if ids is None else set(ids)
        await self._load_more(math.inf)  # a redrive reads the whole queue into memory
        waiting = [e for e in self.index if e.state in (READY, DELAYED)]
        by_target: dict[str, list[tuple[Entry, list[Any]]]] = {}
        for entry, message in zip(waiting, await self._messages(waiting), strict=True):
            if wanted is not None and message[ID] not in wanted:
                continue
            target = to or (message[DEAD_LETTER] or {}).get("queue")
            if target is None:
                raise QueueLimitError(f"message {message[ID]} did not die in another queue; give 'to'")
            self.registry.queue(target)  # QueueNotFoundError for an unknown name
            by_target.setdefault(target, []).append((entry, message))
        moved = 0
        for target, chosen in by_target.items():
            moment = now()
            await self.registry.actor(target).enqueue(
                [
                    new_message(
                        message[ID],
                        message[BODY],
                        message[CONTENT_TYPE],
                        message[TIMESTAMP],
                        moment,
                        message[CORRELATION_ID],
                        traceparent=message[TRACEPARENT],
                    )
                    for _, message in chosen
                ]
            )
            await self._remove([entry for entry, _ in chosen])
            moved += len(chosen)
        await self._schedule()
        return moved

    # -- pull consumers -----------------------------------------------------------------------

    async def pull(self, batch_size: int = 5, visibility_timeout: float = 30.0) -> list[dict[str, Any]]:
        """Lease up to ``batch_size`` ready messages for ``visibility_timeout`` seconds."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 100:
            raise QueueLimitError(f"batch_size must be an int in 1..100, got {batch_size!r}")
        if isinstance(visibility_timeout, bool) or not isinstance(visibility_timeout, (int, float)):
            raise QueueLimitError(
                f"visibility_timeout must be a number of seconds, got {visibility_timeout!r}"
            )
        if not 0 < visibility_timeout <= MAX_VISIBILITY_TIMEOUT_SECONDS:
            raise QueueLimitError(f"visibility_timeout must be within 0..{MAX_VISIBILITY_TIMEOUT_SECONDS} s")
        await self._load_more()
        await self._expire_leases()
        moment = now()
        self.index.promote(moment)
        chosen = [] if self.paused else self.index.take_ready(batch_size)
        if not chosen:
            return []
        self.index.pull(chosen, moment + visibility_timeout)
        messages = await self._count_attempt(chosen)
        await self._schedule()
        return [
            {**_view(message, entry), "lease_id": entry.lease_id, "traceparent": message[TRACEPARENT]}
            for message, entry in zip(messages, chosen, strict=True)
        ]

    async def settle_leases(self, acks: list[str], retries: list[list]) -> dict[str, int]:
        """Ack leases and retry others (``[lease_id, delay_seconds or None]``); leases that
        expired or are unknown are skipped. Returns how many of each were applied."""
        await self._expire_leases()
        entries, outcomes = [], []
        for lease_id, outcome in [
            *((a, (ACK, None)) for a in acks),
            *((r[0], (RETRY, r[1])) for r in retries),
        ]:
            entry = self.index.by_lease(lease_id)
            if entry is not None and entry not in entries:
                entries.append(entry)
                outcomes.append(outcome)
        await self._settle(entries, outcomes, "retried by a pull consumer")
        return {"acked": sum(o[0] == ACK for o in outcomes), "retried": sum(o[0] == RETRY for o in outcomes)}

    async def _expire_leases(self) -> None:
        """Pull leases past their visibility timeout: the messages are ready again."""
        moment = now()
        expired = self.index.expired_leases(moment)
        for entry in expired:
            self.index.release(entry, moment, moment)
        await self._save_states(entry.segment for entry in expired)

    # -- push delivery ------------------------------------------------------------------------

    async def alarm(self, info: AlarmInfo) -> None:
        await self._pump()

    async def _pump(self) -> None:
        """Start every delivery that is due now, then set the alarm for the next one."""
        await self._load_more()
        await self._expire_leases()
        settings = self.settings
        while self.free_slots and not self.paused and settings.consumer is not None:
            moment = now()
            self.index.promote(moment)
            ready = self.index.count(READY)
            if not ready:
                break
            waited = moment - (self.index.oldest_ready_since() or moment)
            if ready < settings.max_batch_size and waited < settings.max_batch_timeout:
                break
            chosen = self.index.take_ready(settings.max_batch_size)
            self.index.push(chosen)
            messages = await self._count_attempt(chosen)
            self.ctx.wait_until(self._deliver(chosen, messages, self.free_slots.pop(0)))
        await self._schedule()

    async def _count_attempt(self, entries: list[Entry]) -> list[list[Any]]:
        """Count a delivery attempt of each (just leased) entry, in storage before the
        delivery starts; returns their stored messages."""
        for entry in entries:
            entry.attempts += 1
        await self._save_states(entry.segment for entry in entries)
        return await self._messages(entries)

    async def _schedule(self) -> None:
        """Set the alarm for the next moment something is due (or clear it)."""
        settings = self.settings
        candidates = []
        if self.free_slots and not self.paused and settings.consumer is not None:
            moment = now()
            self.index.promote(moment)
            if self.index.count(READY) >= settings.max_batch_size:
                candidates.append(moment)
            elif self.index.count(READY):
                candidates.append((self.index.oldest_ready_since() or moment) + settings.max_batch_timeout)
            candidates.append(self.index.next_delayed())
        candidates.append(self.index.next_lease_end())
        due = min((c for c in candidates if c is not None), default=None)
        current = await self.storage.get_alarm()
        if due is None:
            if current is not None:
                await self.storage.delete_alarm()
        elif current != due:
            await self.storage.set_alarm(due)

    async def _deliver(self, entries: list[Entry], messages: list[list[Any]], slot: int) -> None:
        # Messages sent together share a timestamp: make each datetime once.
        stamps = {
            ts: datetime.fromtimestamp(ts, tz=timezone.utc)
            for ts in {message[TIMESTAMP] for message in messages}
        }
        batch = MessageBatch(
            self.name,
            [
                Message(
                    id=message[ID],
                    timestamp=stamps[message[TIMESTAMP]],
                    body=decode_body(message[BODY], message[CONTENT_TYPE]),
                    attempts=entry.attempts,
                    correlation_id=message[CORRELATION_ID],
                )
                for message, entry in zip(messages, entries, strict=True)
            ],
        )
        error = None
        try:
            await deliver_batch(
                self.registry,
                self.registry.consumer(self.name, slot),
                batch,
                [message[TRACEPARENT] for message in messages],
            )
        except ActorResetError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            error = f"{getattr(exc, 'remote_type', type(exc).__name__)}: {exc}"
        self.free_slots.append(slot)
        outcomes = batch.outcomes(handler_raised=error is not None)
        await self._settle(entries, outcomes, error or "retried by the consumer")

    async def _settle(
        self, entries: list[Entry], outcomes: list[tuple[str, float | None]], error: str | None
    ) -> None:
        """Apply outcomes: acked messages go; retried ones wait, or die past max_retries."""
        settings = self.settings
        moment = now()
        acked, retried, dead = [], [], []
        for entry, (verdict, delay) in zip(entries, outcomes, strict=True):
            if self.index.get(entry.seq) is not entry:
                continue  # purged or redriven meanwhile
            if verdict == ACK:
                acked.append(entry)
            elif entry.attempts > settings.max_retries:
                dead.append(entry)
            else:
                self.index.release(entry, moment + (settings.retry_delay if delay is None else delay), moment)
                retried.append(entry)
        if retried or dead:
            failed = list(
                zip(await self._messages(retried + dead), [e.attempts for e in retried + dead], strict=True)
            )
            if dead:
                await self.registry.dead_letter(self.name, failed[len(retried) :], error, moment)
            log_settled(
                self.name, failed[: len(retried)], failed[len(retried) :], error, settings.dead_letter_queue
            )
        await self._remove(acked + dead, also_changed=retried)
        self.counters["acked"] += len(acked)
        self.counters["retried"] += len(retried)
        self.counters["dead_lettered"] += len(dead)
        await self._save_meta()
        await self._pump()

    # -- storage ------------------------------------------------------------------------------

    async def _messages(self, entries: list[Entry]) -> list[list[Any]]:
        """The stored messages of ``entries``, in their order."""
        firsts = list(dict.fromkeys(entry.segment for entry in entries))
        segments: dict[int, list[list[Any]]] = {}
        for start in range(0, len(firsts), CHUNK):
            keys = [segment_key(first) for first in firsts[start : start + CHUNK]]
            segments.update(
                (first_seq(key), value) for key, value in (await self.storage.get_many(keys)).items()
            )
        return [segments[entry.segment][entry.seq - entry.segment] for entry in entries]

    async def _store(self, messages: list[list[Any]], moment: float) -> None:
        """Store ``messages`` as one segment, or as several if they are over the storage value
        limit (a refused put writes nothing, so halving keeps them in order)."""
        first = self.next_seq
        try:
            await self.storage.put(segment_key(first), messages)
        except StorageLimitError:
            if len(messages) == 1:
                raise
            half = len(messages) // 2
            await self._store(messages[:half], moment)
            await self._store(messages[half:], moment)
            return
        self.next_seq += len(messages)
        if self.unloaded_from is not None or len(self.index) + len(messages) > INDEX_WINDOW:
            self._leave_on_disk(first, messages, None)
            return
        self.segments[first] = self.live[first] = len(messages)
        for seq, message in enumerate(messages, first):
            self.index.add(
                Entry(seq, message[VISIBLE_AT], message[TIMESTAMP], len(message[BODY]), first), moment
            )

    def _index_segment(self, first: int, messages: list[list[Any]], state: list[Any], moment: float) -> bool:
        """Index a stored segment's messages as ``state`` says; True if its state needs
        writing: a push lease held one (its delivery died with the process, so it waits
        again), or none is left (the records are deleted)."""
        self.segments[first] = len(messages)
        self.live[first] = 0
        released = False
        for offset, (message, message_state) in enumerate(zip(messages, state, strict=True)):
            if message_state is None:
                continue
            attempts, visible_at, lease = message_state
            entry = Entry(first + offset, visible_at, message[TIMESTAMP], len(message[BODY]), first, attempts)
            if lease == PUSH_LEASE:
                released = True
            elif lease is not None:
                entry.state, entry.lease_id, entry.lease_until = PULLED, *lease
            self.index.add(entry, moment)
            self.live[first] += 1
        return released or not self.live[first]

    def _leave_on_disk(self, first: int, messages: list[list[Any]], state: list[Any] | None) -> None:
        """Count a segment past the index (``state`` None: every message in it waits)."""
        if self.unloaded_from is None:
            self.unloaded_from = first
        count, size = _live_totals(messages, state)
        self.unloaded_count += count
        self.unloaded_bytes += size

    async def _load_more(self, wanted: float | None = None) -> None:
        """Index segments left on disk, oldest first: until ``wanted`` messages are indexed,
        or by default, once the index is half empty, until ``INDEX_WINDOW`` are."""
        if self.unloaded_from is None:
            return
        if wanted is None:
            if len(self.index) > INDEX_WINDOW // 2:
                return
            wanted = INDEX_WINDOW
        moment = now()
        released = []
        while self.unloaded_from is not None and len(self.index) < wanted:
            chunk = await self.storage.list(
                prefix=SEGMENT_PREFIX, start=segment_key(self.unloaded_from), limit=SEGMENT_LOAD_CHUNK
            )
            states = await self.storage.get_many([state_key(first_seq(key)) for key in chunk])
            for key, messages in chunk.items():
                first = first_seq(key)
                state = states.get(state_key(first)) or initial_state(messages)
                count, size = _live_totals(messages, state)
                self.unloaded_count -= count
                self.unloaded_bytes -= size
                if self._index_segment(first, messages, state, moment):
                    released.append(first)
                self.unloaded_from = first + len(messages)
            if len(chunk) < SEGMENT_LOAD_CHUNK:
                self.unloaded_from = None
        await self._save_states(released)

    async def _remove(self, entries: list[Entry], also_changed: Iterable[Entry] = ()) -> None:
        """Forget ``entries`` and write the state of their segments (and those of
        ``also_changed``)."""
        for entry in entries:
            # Skip what went meanwhile (a purge while the dead-letter queue or redrive
            # target was being written).
            if self.index.remove(entry.seq) is not None:
                self.live[entry.segment] -= 1
        await self._save_states(entry.segment for entry in [*entries, *also_changed])

    async def _save_states(self, firsts: Iterable[int]) -> None:
        """Write the state of these segments from the index; delete those with no message left."""
        puts: dict[str, list[Any]] = {}
        deletes: list[str] = []
        for first in dict.fromkeys(firsts):
            if first not in self.live:
                continue  # purged
            if self.live[first]:
                puts[state_key(first)] = [
                    self._message_state(seq) for seq in range(first, first + self.segments[first])
                ]
            else:
                deletes += [segment_key(first), state_key(first)]
                del self.segments[first], self.live[first]
        keys = list(puts)
        for start in range(0, len(keys), CHUNK):
            await self.storage.put_many({key: puts[key] for key in keys[start : start + CHUNK]})
        for start in range(0, len(deletes), CHUNK):
            await self.storage.delete_many(deletes[start : start + CHUNK])

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
                chunk = await self.storage.list(prefix=prefix, start=start, limit=size)
            else:
                chunk = await self.storage.list(prefix=prefix, start_after=after, limit=size)
            yield chunk
            if len(chunk) < size:
                return
            after = next(reversed(chunk))

    async def _save_meta(self) -> None:
        await self.storage.put(META_KEY, {"next_seq": self.next_seq, "paused": self.paused, **self.counters})


def _live_totals(messages: list[list[Any]], state: list[Any] | None) -> tuple[int, int]:
    """How many of a segment's messages are still stored, and their bytes."""
    live = messages if state is None else [m for m, s in zip(messages, state, strict=True) if s is not None]
    return len(live), sum(len(message[BODY]) for message in live)


def _view(message: list[Any], entry: Entry) -> dict[str, Any]:
    """A stored message as peek and pull return it (the body still encoded)."""
    return {
        "id": message[ID],
        "body": message[BODY],
        "content_type": message[CONTENT_TYPE],
        "attempts": entry.attempts,
        "timestamp": message[TIMESTAMP],
        "correlation_id": message[CORRELATION_ID],
        "dead_letter": message[DEAD_LETTER],
    }
