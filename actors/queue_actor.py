"""``QueueActor``: one queue's messages, kept in the actor's storage, delivered in batches.

One instance per queue name. Every message is a storage record (body, attempts, when it is
visible, its lease while delivered); a ``QueueIndex`` over them is rebuilt in ``on_start``.
The actor's alarm is set for the next moment something is due (a batch filled or timed out,
a delayed message visible, a pull lease ending); deliveries run in the background
(``wait_until``) and their outcomes are written when the consumer returns. Must stay true:
a message leaves storage only when it was acked, or after it is durable in the dead-letter
queue; a delivery whose outcome is lost (crash, reset) is delivered again.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from runtime import Actor, ActorResetError, AlarmInfo, now

from .errors import QueueLimitError
from .message import ACK, RETRY, Message, MessageBatch
from .message_codec import decode_body
from .names import REGISTRY_BINDING
from .queue_index import DELAYED, PULLED, PUSHED, READY, Entry, QueueIndex
from .queue_telemetry import deliver_batch, log_settled

META_KEY = "meta"
RECORD_PREFIX = "msg:"
LOAD_CHUNK = 500
CHUNK = 128  # storage's limit of keys per call
MAX_VISIBILITY_TIMEOUT_SECONDS = 43_200
MAX_PEEK = 1000


def record_key(seq: int) -> str:
    return f"{RECORD_PREFIX}{seq:016x}"


def record_seq(key: str) -> int:
    return int(key[len(RECORD_PREFIX) :], 16)


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
        self.free_slots = list(range(self.settings.max_concurrency))
        moment = now()
        released = {}
        after = None
        while True:
            chunk = await self.storage.list(prefix=RECORD_PREFIX, start_after=after, limit=LOAD_CHUNK)
            for key, record in chunk.items():
                entry = Entry(record_seq(key), record["vis"], record["ts"], len(record["body"]))
                lease = record["lease"]
                if lease is not None and lease.get("push"):
                    # The delivery that held this lease died with the process: deliver again.
                    record["lease"] = None
                    released[key] = record
                elif lease is not None:
                    entry.state, entry.lease_id, entry.lease_until = PULLED, lease["id"], lease["until"]
                self.index.add(entry, moment)
                after = key
            if len(chunk) < LOAD_CHUNK:
                break
        await self._put_records(released)
        await self._pump()

    @property
    def settings(self) -> Any:
        return self.registry.settings(self.name)

    # -- producers ----------------------------------------------------------------------------

    async def enqueue(self, items: list[dict]) -> list[str]:
        """Store ``items`` (already checked and encoded by the producer) and return their ids.

        The caller's result is released only once they are durable (the output gate)."""
        moment = now()
        # This event runs in the sender's task, so its correlation id is the sender's.
        sender_correlation_id = self.ctx.correlation_id
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
                "cid": item.get("cid") or sender_correlation_id,
                "tp": item.get("tp"),
                "dlq": item.get("dlq"),
                "lease": None,
            }
            self.index.add(Entry(seq, visible_at, item["ts"], len(item["body"])), moment)
        await self._put_records(records)
        await self._save_meta()
        await self._pump()
        return [item["id"] for item in items]

    # -- operations ---------------------------------------------------------------------------

    async def metrics(self) -> dict[str, Any]:
        moment = now()
        self.index.promote(moment)
        oldest = self.index.oldest_timestamp()
        return {
            "queue": self.name,
            "backlog": len(self.index),
            "in_flight": self.index.count(PUSHED) + self.index.count(PULLED),
            "delayed": self.index.count(DELAYED),
            "oldest_age_seconds": 0.0 if oldest is None else max(0.0, moment - oldest),
            "bytes": self.index.bytes,
            "paused": self.paused,
            **self.counters,
        }

    async def peek(self, limit: int = 10) -> list[dict[str, Any]]:
        """The first ``limit`` stored messages, oldest first, unchanged."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PEEK:
            raise QueueLimitError(f"peek limit must be an int in 1..{MAX_PEEK}, got {limit!r}")
        records = await self.storage.list(prefix=RECORD_PREFIX, limit=limit)
        return [_view(r) for r in records.values()]

    async def purge(self) -> int:
        """Delete every stored message; how many there were."""
        keys = [record_key(entry.seq) for entry in self.index]
        await self._delete_records(keys)
        self.index.clear()
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

    async def redrive(self, to: str | None = None, ids: list[str] | None = None) -> int:
        """Move waiting messages (all, or those ``ids``) to ``to``, or back to the queue each
        died in; returns how many moved. They keep their id and timestamp, and leave this
        queue only once they are durable in their new one."""
        wanted = None if ids is None else set(ids)
        waiting = [e for e in self.index if e.state in (READY, DELAYED)]
        records = await self._get_records([record_key(e.seq) for e in waiting])
        by_target: dict[str, list[tuple[str, dict]]] = {}
        for key, record in records.items():
            if wanted is not None and record["id"] not in wanted:
                continue
            target = to or (record["dlq"] or {}).get("queue")
            if target is None:
                raise QueueLimitError(f"message {record['id']} did not die in another queue; give 'to'")
            self.registry.queue(target)  # QueueNotFoundError for an unknown name
            by_target.setdefault(target, []).append((key, record))
        moved = 0
        for target, items in by_target.items():
            fields = ("id", "body", "ct", "ts", "cid", "tp")
            await self.registry.actor(target).enqueue(
                [{field: record[field] for field in fields} for _, record in items]
            )
            keys = [key for key, _ in items]
            await self._delete_records(keys)
            for key in keys:
                self.index.remove(record_seq(key))
            moved += len(keys)
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
        await self._expire_leases()
        moment = now()
        self.index.promote(moment)
        chosen = [] if self.paused else self.index.take_ready(batch_size)
        if not chosen:
            return []
        self.index.pull(chosen, moment + visibility_timeout)
        records = await self._count_attempt(chosen)
        await self._schedule()
        return [{**_view(records[record_key(e.seq)]), "lease_id": e.lease_id} for e in chosen]

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
        if not expired:
            return
        records = await self._get_records([record_key(e.seq) for e in expired])
        for record in records.values():
            record["lease"] = None
            record["vis"] = moment
        await self._put_records(records)
        for entry in expired:
            self.index.release(entry, moment, moment)

    # -- push delivery ------------------------------------------------------------------------

    async def alarm(self, info: AlarmInfo) -> None:
        await self._pump()

    async def _pump(self) -> None:
        """Start every delivery that is due now, then set the alarm for the next one."""
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
            records = await self._count_attempt(chosen)
            self.ctx.wait_until(self._deliver(chosen, records, self.free_slots.pop(0)))
        await self._schedule()

    async def _count_attempt(self, entries: list[Entry]) -> dict[str, dict]:
        """Record a delivery attempt and the lease of each entry; returns their records."""
        records = await self._get_records([record_key(e.seq) for e in entries])
        for entry in entries:
            record = records[record_key(entry.seq)]
            record["att"] += 1
            record["lease"] = (
                {"push": True}
                if entry.state == PUSHED
                else {"id": entry.lease_id, "until": entry.lease_until}
            )
        await self._put_records(records)
        return records

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

    async def _deliver(self, entries: list[Entry], records: dict[str, dict], slot: int) -> None:
        messages = [
            Message(
                id=record["id"],
                timestamp=datetime.fromtimestamp(record["ts"], tz=timezone.utc),
                body=decode_body(record["body"], record["ct"]),
                attempts=record["att"],
                correlation_id=record["cid"],
            )
            for record in (records[record_key(e.seq)] for e in entries)
        ]
        batch = MessageBatch(self.name, messages)
        error = None
        try:
            await deliver_batch(self.registry, self.registry.consumer(self.name, slot), batch, records.values())
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
        present = [(e, o) for e, o in zip(entries, outcomes, strict=True) if self.index.get(e.seq) is e]
        # Acked messages are only deleted: read back just the records that stay or move on.
        records = await self._get_records(
            [record_key(e.seq) for e, (verdict, _) in present if verdict != ACK]
        )
        moment = now()
        gone, retried, dead = [], {}, []
        for entry, (verdict, delay) in present:
            key = record_key(entry.seq)
            if verdict == ACK:
                gone.append(key)
                continue
            record = records[key]
            record["lease"] = None
            if record["att"] > settings.max_retries:
                dead.append(record)
                gone.append(key)
            else:
                record["vis"] = moment + (settings.retry_delay if delay is None else delay)
                self.index.release(entry, record["vis"], moment)
                retried[key] = record
        if dead:
            await self.registry.dead_letter(self.name, dead, error, moment)
        await self._delete_records(gone)
        await self._put_records(retried)
        for key in gone:
            self.index.remove(record_seq(key))
        self.counters["acked"] += len(gone) - len(dead)
        self.counters["retried"] += len(retried)
        self.counters["dead_lettered"] += len(dead)
        log_settled(self.name, retried.values(), dead, error, settings.dead_letter_queue)
        await self._save_meta()
        await self._pump()

    # -- storage ------------------------------------------------------------------------------

    async def _get_records(self, keys: list[str]) -> dict[str, dict]:
        records: dict[str, dict] = {}
        for start in range(0, len(keys), CHUNK):
            records.update(await self.storage.get_many(keys[start : start + CHUNK]))
        return records

    async def _put_records(self, records: dict[str, dict]) -> None:
        keys = list(records)
        for start in range(0, len(keys), CHUNK):
            await self.storage.put_many({k: records[k] for k in keys[start : start + CHUNK]})

    async def _delete_records(self, keys: list[str]) -> None:
        for start in range(0, len(keys), CHUNK):
            await self.storage.delete_many(keys[start : start + CHUNK])

    async def _save_meta(self) -> None:
        await self.storage.put(META_KEY, {"next_seq": self.next_seq, "paused": self.paused, **self.counters})


def _view(record: dict[str, Any]) -> dict[str, Any]:
    """A stored message as peek and pull return it (the body still encoded)."""
    return {
        "id": record["id"],
        "body": record["body"],
        "content_type": record["ct"],
        "attempts": record["att"],
        "timestamp": record["ts"],
        "correlation_id": record["cid"],
        "dead_letter": record["dlq"],
    }
