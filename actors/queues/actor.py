"""``QueueActor``: a queue's RPC surface, its meta (next seq, paused, counters) and its alarm,
set for the next moment something is due: a batch full or timed out, a delay, a pull lease or a
retention period ending. A ``QueueStore`` keeps the messages, ``QueueOutcomes`` applies outcomes,
``delivery`` delivers batches. Must stay true: a delivery is counted in storage before it
starts, and one whose outcome is lost (crash, reset) is delivered again.
"""

from __future__ import annotations

from typing import Any

from runtime import Actor, AlarmInfo, now

from ..names import REGISTRY_BINDING
from . import operations as queue_operations
from .delivery import deliver, next_batch_due
from .index import DELAYED, PULLED, PUSHED, Entry
from .message import ACK, RETRY
from .outcomes import COUNTERS, QueueOutcomes
from .segments import CORRELATION_ID, TRACEPARENT
from .store import QueueStore

META_KEY = "meta"
# In the meta record: when the queue first ran with retention, holding messages stored before.
LEGACY_SINCE_KEY = "legacy_retention_since"
INDEX_WINDOW = 10_000  # messages indexed in memory; the rest of a backlog waits on disk


class QueueActor(Actor):
    """The built-in actor behind one queue (its name is the queue's name)."""

    async def on_start(self) -> None:
        self.registry = self.env[REGISTRY_BINDING]
        self.name: str = self.id.name or ""
        meta = await self.storage.get(META_KEY, {})
        self.paused: bool = meta.get("paused", False)
        self.free_slots = list(range(self.settings.max_concurrency))
        self.store = QueueStore(
            self.storage,
            next_seq=meta.get("next_seq", 0),
            index_window=INDEX_WINDOW,
            retention_seconds=self.settings.message_retention_period,
            legacy_since=meta.get(LEGACY_SINCE_KEY),
        )
        self.outcomes = QueueOutcomes(
            self.store, self.registry, self.name, {key: meta.get(key, 0) for key in COUNTERS}
        )
        await self.store.load()
        if self.store.keeps_legacy and LEGACY_SINCE_KEY not in meta:
            await self._save_meta()
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
        await self.store.add(messages, moment)
        await self._save_meta()
        await self._pump()

    # -- operations ---------------------------------------------------------------------------

    async def metrics(self) -> dict[str, Any]:
        moment = now()
        index = self.store.index
        index.promote(moment)
        oldest = index.oldest_timestamp()
        return {
            "queue": self.name,
            "backlog": self.store.backlog,
            "in_flight": index.count(PUSHED) + index.count(PULLED),
            "delayed": index.count(DELAYED),
            "oldest_age_seconds": 0.0 if oldest is None else max(0.0, moment - oldest),
            "bytes": self.store.bytes,
            "paused": self.paused,
            **self.outcomes.counters,
        }

    async def peek(self, limit: int = 10) -> list[dict[str, Any]]:
        """The first ``limit`` stored messages, oldest first, unchanged."""
        return await queue_operations.peek(self.store, limit)

    async def purge(self) -> int:
        """Delete every stored message; how many there were."""
        count = await self.store.purge()
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
        died in; returns how many moved."""
        moved = await queue_operations.redrive(self.store, self.registry, to, ids)
        await self._schedule()
        return moved

    # -- pull consumers -----------------------------------------------------------------------

    async def pull(self, batch_size: int = 5, visibility_timeout: float = 30.0) -> list[dict[str, Any]]:
        """Lease up to ``batch_size`` ready messages for ``visibility_timeout`` seconds."""
        queue_operations.check_pull(batch_size, visibility_timeout)
        await self._catch_up()
        moment = now()
        index = self.store.index
        index.promote(moment)
        chosen = [] if self.paused else index.take_ready(batch_size, moment)
        if not chosen:
            return []
        index.pull(chosen, moment + visibility_timeout)
        messages = await self.store.count_attempt(chosen)
        await self._schedule()
        return [
            {
                **queue_operations.view(message, entry),
                "lease_id": entry.lease_id,
                "traceparent": message[TRACEPARENT],
            }
            for message, entry in zip(messages, chosen, strict=True)
        ]

    async def settle_leases(self, acks: list[str], retries: list[list]) -> dict[str, int]:
        """Ack leases and retry others (``[lease_id, delay_seconds or None]``); leases that
        expired or are unknown are skipped. Returns how many of each were applied."""
        await self.outcomes.end_leases()
        entries: list[Entry] = []
        outcomes: list[tuple[str, float | None]] = []
        for lease_id, outcome in [
            *((a, (ACK, None)) for a in acks),
            *((r[0], (RETRY, r[1])) for r in retries),
        ]:
            entry = self.store.index.by_lease(lease_id)
            if entry is not None and entry not in entries:
                entries.append(entry)
                outcomes.append(outcome)
        await self._settle(entries, outcomes, "retried by a pull consumer")
        return {"acked": sum(o[0] == ACK for o in outcomes), "retried": sum(o[0] == RETRY for o in outcomes)}

    # -- push delivery ------------------------------------------------------------------------

    async def alarm(self, info: AlarmInfo) -> None:
        # Expiry runs here only, before anything sets the alarm again: if writing to the
        # dead-letter queue fails, the alarm is retried with backoff (an alarm set by the
        # failed handler would replace the retry, and fire at once).
        await self._catch_up()
        if await self.outcomes.expire():
            await self._save_meta()
        await self._pump()

    async def _catch_up(self) -> None:
        """Index what waits on disk (as the index drains) and end the pull leases that are due."""
        await self.store.load_more()
        await self.outcomes.end_leases()

    async def _pump(self) -> None:
        """Start every delivery that is due now, then set the alarm for the next one."""
        await self._catch_up()
        settings = self.settings
        index = self.store.index
        while self.free_slots and not self.paused and settings.consumer is not None:
            moment = now()
            index.promote(moment)
            due = next_batch_due(index, settings, moment)
            if due is None or due > moment:
                break
            chosen = index.take_ready(settings.max_batch_size, moment)
            if not chosen:
                break  # the ready ones wait to be expired
            index.push(chosen)
            messages = await self.store.count_attempt(chosen)
            self.ctx.wait_until(self._deliver(chosen, messages, self.free_slots.pop(0)))
        await self._schedule()

    async def _schedule(self) -> None:
        """Set the alarm for the next moment something is due (or clear it)."""
        settings = self.settings
        index = self.store.index
        candidates = [index.next_lease_end(), index.next_expiry()]
        if self.free_slots and not self.paused and settings.consumer is not None:
            moment = now()
            index.promote(moment)
            candidates.append(next_batch_due(index, settings, moment))
        due = min((c for c in candidates if c is not None), default=None)
        current = await self.storage.get_alarm()
        if due is None:
            if current is not None:
                await self.storage.delete_alarm()
        elif current != due:
            await self.storage.set_alarm(due)

    async def _deliver(self, entries: list[Entry], messages: list[list[Any]], slot: int) -> None:
        outcomes, error = await deliver(self.registry, self.name, slot, entries, messages)
        self.free_slots.append(slot)
        await self._settle(entries, outcomes, error or "retried by the consumer")

    async def _settle(
        self, entries: list[Entry], outcomes: list[tuple[str, float | None]], error: str | None
    ) -> None:
        await self.outcomes.settle(entries, outcomes, error)
        await self._save_meta()
        await self._pump()

    async def _save_meta(self) -> None:
        meta = {"next_seq": self.store.next_seq, "paused": self.paused, **self.outcomes.counters}
        if self.store.keeps_legacy:
            meta[LEGACY_SINCE_KEY] = self.store.legacy_since
        await self.storage.put(META_KEY, meta)
