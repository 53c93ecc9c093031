"""``QueueActor``: one queue's messages, kept in the actor's storage, delivered in batches.

One instance per queue name. Every message is a storage record (body, attempts, when it is
visible, its lease while delivered); an in-memory index over them is rebuilt in
``on_start``. The actor's alarm is set for the next moment something is due (a batch
filled or timed out, a delayed message visible); deliveries run in the background
(``wait_until``) and their outcomes are written when the consumer returns. Must stay true:
a message leaves storage only when it was acked, or after it is durable in the dead-letter
queue; a delivery whose outcome is lost (crash, reset) is delivered again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from runtime import Actor, ActorResetError, AlarmInfo, now

from .message import ACK, Message, MessageBatch
from .message_codec import decode_body
from .names import REGISTRY_BINDING

META_KEY = "meta"
RECORD_PREFIX = "msg:"
LOAD_CHUNK = 500
DELETE_CHUNK = 128


def record_key(seq: int) -> str:
    return f"{RECORD_PREFIX}{seq:016x}"


@dataclass(slots=True)
class _Entry:
    """What the index keeps of one stored message (its body stays in storage)."""

    seq: int
    visible_at: float
    timestamp: float
    size: int
    leased: bool = False


class QueueActor(Actor):
    """The built-in actor behind one queue (its name is the queue's name)."""

    async def on_start(self) -> None:
        self.registry = self.env[REGISTRY_BINDING]
        self.name: str = self.id.name or ""
        meta = await self.storage.get(META_KEY, {})
        self.next_seq: int = meta.get("next_seq", 0)
        self.counters: dict[str, int] = {k: meta.get(k, 0) for k in ("acked", "retried", "dead_lettered")}
        self.paused: bool = meta.get("paused", False)
        self.entries: dict[int, _Entry] = {}
        self.free_slots = list(range(self.settings.max_concurrency))
        self.in_flight = 0
        released = {}
        after = None
        while True:
            chunk = await self.storage.list(prefix=RECORD_PREFIX, start_after=after, limit=LOAD_CHUNK)
            for key, record in chunk.items():
                if record["lease"] is not None:
                    # The delivery that held this lease died with the process: deliver again.
                    record["lease"] = None
                    released[key] = record
                seq = int(key[len(RECORD_PREFIX) :], 16)
                self.entries[seq] = _Entry(seq, record["vis"], record["ts"], len(record["body"]))
            if len(chunk) < LOAD_CHUNK:
                break
            after = key
        for start in range(0, len(released), DELETE_CHUNK):
            await self.storage.put_many(dict(list(released.items())[start : start + DELETE_CHUNK]))
        await self._schedule()

    @property
    def settings(self) -> Any:
        return self.registry.settings(self.name)

    # -- producers ----------------------------------------------------------------------------

    async def enqueue(self, items: list[dict]) -> list[str]:
        """Store ``items`` (already checked and encoded by the producer) and return their ids.

        The caller's result is released only once they are durable (the output gate)."""
        moment = now()
        records = {}
        for item in items:
            seq = self.next_seq
            self.next_seq += 1
            visible_at = moment + item.get("delay", 0.0)
            records[record_key(seq)] = {
                "id": item["id"],
                "body": item["body"],
                "ct": item["ct"],
                "ts": item["ts"],
                "att": 0,
                "vis": visible_at,
                "cid": item.get("cid"),
                "dlq": item.get("dlq"),
                "lease": None,
            }
            self.entries[seq] = _Entry(seq, visible_at, item["ts"], len(item["body"]))
        keys = list(records)
        for start in range(0, len(keys), DELETE_CHUNK):
            await self.storage.put_many({k: records[k] for k in keys[start : start + DELETE_CHUNK]})
        await self._save_meta()
        await self._pump()
        return [item["id"] for item in items]

    # -- operations ---------------------------------------------------------------------------

    async def metrics(self) -> dict[str, Any]:
        moment = now()
        leased = sum(1 for e in self.entries.values() if e.leased)
        delayed = sum(1 for e in self.entries.values() if not e.leased and e.visible_at > moment)
        oldest = min((e.timestamp for e in self.entries.values()), default=None)
        return {
            "queue": self.name,
            "backlog": len(self.entries),
            "in_flight": leased,
            "delayed": delayed,
            "oldest_age_seconds": 0.0 if oldest is None else max(0.0, moment - oldest),
            "bytes": sum(e.size for e in self.entries.values()),
            "paused": self.paused,
            **self.counters,
        }

    async def peek(self, limit: int = 10) -> list[dict[str, Any]]:
        """The first ``limit`` stored messages, oldest first, unchanged."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError(f"peek limit must be an int in 1..1000, got {limit!r}")
        records = await self.storage.list(prefix=RECORD_PREFIX, limit=limit)
        return [
            {
                "id": r["id"],
                "body": r["body"],
                "content_type": r["ct"],
                "attempts": r["att"],
                "timestamp": r["ts"],
                "correlation_id": r["cid"],
                "dead_letter": r["dlq"],
            }
            for r in records.values()
        ]

    async def purge(self) -> int:
        """Delete every stored message; how many there were."""
        keys = [record_key(seq) for seq in self.entries]
        for start in range(0, len(keys), DELETE_CHUNK):
            await self.storage.delete_many(keys[start : start + DELETE_CHUNK])
        self.entries.clear()
        await self._schedule()
        return len(keys)

    async def pause(self) -> None:
        self.paused = True
        await self._save_meta()
        await self._schedule()

    async def resume(self) -> None:
        self.paused = False
        await self._save_meta()
        await self._pump()

    # -- delivery -----------------------------------------------------------------------------

    async def alarm(self, info: AlarmInfo) -> None:
        await self._pump()

    async def _pump(self) -> None:
        """Start every delivery that is due now, then set the alarm for the next one."""
        settings = self.settings
        while self.free_slots and not self.paused and settings.consumer is not None:
            moment = now()
            visible = [e for e in self.entries.values() if not e.leased and e.visible_at <= moment]
            if not visible:
                break
            oldest_wait = moment - min(e.visible_at for e in visible)
            if len(visible) < settings.max_batch_size and oldest_wait < settings.max_batch_timeout:
                break
            chosen = visible[: settings.max_batch_size]
            await self._lease(chosen)
            self.ctx.wait_until(self._deliver(chosen, self.free_slots.pop(0)))
        await self._schedule()

    async def _lease(self, entries: list[_Entry]) -> None:
        keys = [record_key(e.seq) for e in entries]
        records = await self.storage.get_many(keys)
        for entry, key in zip(entries, keys, strict=True):
            entry.leased = True
            records[key]["att"] += 1
            records[key]["lease"] = {"push": True}
        await self.storage.put_many(records)

    async def _schedule(self) -> None:
        """Set the alarm for the next moment a delivery could start (or clear it)."""
        settings = self.settings
        due: float | None = None
        if self.free_slots and not self.paused and settings.consumer is not None:
            waiting = [e.visible_at for e in self.entries.values() if not e.leased]
            if waiting:
                moment = now()
                visible = sorted(v for v in waiting if v <= moment)
                if len(visible) >= settings.max_batch_size:
                    due = moment
                elif visible:
                    due = visible[0] + settings.max_batch_timeout
                later = [v for v in waiting if v > moment]
                if later:
                    due = min(later) if due is None else min(due, min(later))
        current = await self.storage.get_alarm()
        if due is None:
            if current is not None:
                await self.storage.delete_alarm()
        elif current != due:
            await self.storage.set_alarm(due)

    async def _deliver(self, entries: list[_Entry], slot: int) -> None:
        settings = self.settings
        keys = [record_key(e.seq) for e in entries]
        records = await self.storage.get_many(keys)
        messages = [
            Message(
                id=records[k]["id"],
                timestamp=datetime.fromtimestamp(records[k]["ts"], tz=timezone.utc),
                body=decode_body(records[k]["body"], records[k]["ct"]),
                attempts=records[k]["att"],
                correlation_id=records[k]["cid"],
            )
            for k in keys
        ]
        batch = MessageBatch(self.name, messages)
        error = None
        try:
            await self.registry.consumer(self.name, slot).queue(batch)
        except ActorResetError as exc:
            error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            error = f"{getattr(exc, 'remote_type', type(exc).__name__)}: {exc}"
        outcomes = batch.outcomes(handler_raised=error is not None)
        self.free_slots.append(slot)
        await self._settle(entries, outcomes, error, settings)

    async def _settle(
        self,
        entries: list[_Entry],
        outcomes: list[tuple[str, float | None]],
        error: str | None,
        settings: Any,
    ) -> None:
        """Apply a delivery's outcomes: acked messages go, retried ones wait or die."""
        present = [(e, o) for e, o in zip(entries, outcomes, strict=True) if self.entries.get(e.seq) is e]
        keys = [record_key(e.seq) for e, _ in present]
        records = await self.storage.get_many(keys)
        moment = now()
        acked, retried, dead = [], {}, []
        for (entry, (verdict, delay)), key in zip(present, keys, strict=True):
            record = records.get(key)
            if record is None:  # purged while it was being delivered
                continue
            record["lease"] = None
            if verdict == ACK:
                acked.append(key)
            elif record["att"] > settings.max_retries:
                dead.append((key, record))
            else:
                record["vis"] = entry.visible_at = moment + (settings.retry_delay if delay is None else delay)
                entry.leased = False
                retried[key] = record
        if dead:
            await self.registry.dead_letter(self.name, [r for _, r in dead], error, moment)
        for start in range(0, len(acked) + len(dead), DELETE_CHUNK):
            await self.storage.delete_many([*acked, *(k for k, _ in dead)][start : start + DELETE_CHUNK])
        if retried:
            await self.storage.put_many(retried)
        for key in [*acked, *(k for k, _ in dead)]:
            self.entries.pop(int(key[len(RECORD_PREFIX) :], 16), None)
        self.counters["acked"] += len(acked)
        self.counters["retried"] += len(retried)
        self.counters["dead_lettered"] += len(dead)
        await self._save_meta()
        await self._pump()

    async def _save_meta(self) -> None:
        await self.storage.put(META_KEY, {"next_seq": self.next_seq, "paused": self.paused, **self.counters})
