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

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from runtime import Actor, ActorResetError, AlarmInfo, now

from .errors import QueueLimitError
from .message import ACK, RETRY, Message, MessageBatch
from .message_codec import decode_body
from .names import REGISTRY_BINDING

META_KEY = "meta"
RECORD_PREFIX = "msg:"
LOAD_CHUNK = 500
CHUNK = 128
MAX_VISIBILITY_TIMEOUT_SECONDS = 43_200


def record_key(seq: int) -> str:
    return f"{RECORD_PREFIX}{seq:016x}"


PUSH_LEASE = "push"


@dataclass(slots=True)
class _Entry:
    """What the index keeps of one stored message (its body stays in storage).

    ``lease`` is None while the message waits, ``PUSH_LEASE`` while a batch holding it is
    with the consumer, or the lease id a pull consumer got, valid until ``lease_until``."""

    seq: int
    visible_at: float
    timestamp: float
    size: int
    lease: str | None = None
    lease_until: float = float("inf")


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
        self.leases: dict[str, int] = {}
        self.free_slots = list(range(self.settings.max_concurrency))
        released = {}
        after = None
        while True:
            chunk = await self.storage.list(prefix=RECORD_PREFIX, start_after=after, limit=LOAD_CHUNK)
            for key, record in chunk.items():
                seq = int(key[len(RECORD_PREFIX) :], 16)
                entry = self.entries[seq] = _Entry(seq, record["vis"], record["ts"], len(record["body"]))
                lease = record["lease"]
                if lease is not None and lease.get("push"):
                    # The delivery that held this lease died with the process: deliver again.
                    record["lease"] = None
                    released[key] = record
                elif lease is not None:
                    entry.lease, entry.lease_until = lease["id"], lease["until"]
                    self.leases[lease["id"]] = seq
            if len(chunk) < LOAD_CHUNK:
                break
            after = key
        await self._put_records(released)
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
        await self._put_records(records)
        await self._save_meta()
        await self._pump()
        return [item["id"] for item in items]

    # -- operations ---------------------------------------------------------------------------

    async def metrics(self) -> dict[str, Any]:
        moment = now()
        leased = sum(1 for e in self.entries.values() if e.lease is not None)
        delayed = sum(1 for e in self.entries.values() if e.lease is None and e.visible_at > moment)
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
            raise QueueLimitError(f"peek limit must be an int in 1..1000, got {limit!r}")
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
        await self._delete_records(keys)
        self.entries.clear()
        self.leases.clear()
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

    # -- pull consumers ------------------------------------------------------------------------

    async def pull(self, batch_size: int = 5, visibility_timeout: float = 30.0) -> list[dict[str, Any]]:
        """Lease up to ``batch_size`` visible messages for ``visibility_timeout`` seconds."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= 100:
            raise QueueLimitError(f"batch_size must be an int in 1..100, got {batch_size!r}")
        if isinstance(visibility_timeout, bool) or not isinstance(visibility_timeout, (int, float)):
            raise QueueLimitError(
                f"visibility_timeout must be a number of seconds, got {visibility_timeout!r}"
            )
        if not 0 < visibility_timeout <= MAX_VISIBILITY_TIMEOUT_SECONDS:
            raise QueueLimitError(f"visibility_timeout must be within 0..{MAX_VISIBILITY_TIMEOUT_SECONDS} s")
        await self._expire_leases()
        chosen = [] if self.paused else self._visible(now())[:batch_size]
        if not chosen:
            return []
        records = await self._lease(chosen, until=now() + visibility_timeout)
        await self._schedule()
        return [
            {
                "id": r["id"],
                "body": r["body"],
                "content_type": r["ct"],
                "attempts": r["att"],
                "timestamp": r["ts"],
                "lease_id": r["lease"]["id"],
                "correlation_id": r["cid"],
            }
            for r in (records[record_key(e.seq)] for e in chosen)
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
            seq = self.leases.get(lease_id)
            if seq is not None and seq in self.entries:
                entries.append(self.entries[seq])
                outcomes.append(outcome)
                self.leases.pop(lease_id)
        applied = {
            "acked": sum(o[0] == ACK for o in outcomes),
            "retried": sum(o[0] == RETRY for o in outcomes),
        }
        await self._settle(entries, outcomes, "retried by a pull consumer", self.settings)
        return applied

    async def redrive(self, to: str | None = None, ids: list[str] | None = None) -> int:
        """Move messages (all, or those ``ids``) that are not leased to ``to``, or back to the
        queue each died in; returns how many moved. They keep their id and timestamp, and
        leave this queue only once they are durable in their new one."""
        wanted = None if ids is None else set(ids)
        waiting = [e for e in self.entries.values() if e.lease is None]
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
            await self.registry.actor(target).enqueue(
                [
                    {"id": r["id"], "body": r["body"], "ct": r["ct"], "ts": r["ts"], "cid": r["cid"]}
                    for _, r in items
                ]
            )
            keys = [key for key, _ in items]
            await self._delete_records(keys)
            for key in keys:
                self.entries.pop(int(key[len(RECORD_PREFIX) :], 16), None)
            moved += len(keys)
        await self._schedule()
        return moved

    # -- delivery -----------------------------------------------------------------------------

    async def alarm(self, info: AlarmInfo) -> None:
        await self._pump()

    async def _pump(self) -> None:
        """Start every delivery that is due now, then set the alarm for the next one."""
        settings = self.settings
        await self._expire_leases()
        while self.free_slots and not self.paused and settings.consumer is not None:
            moment = now()
            visible = self._visible(moment)
            if not visible:
                break
            oldest_wait = moment - min(e.visible_at for e in visible)
            if len(visible) < settings.max_batch_size and oldest_wait < settings.max_batch_timeout:
                break
            chosen = visible[: settings.max_batch_size]
            await self._lease(chosen)
            self.ctx.wait_until(self._deliver(chosen, self.free_slots.pop(0)))
        await self._schedule()

    def _visible(self, moment: float) -> list[_Entry]:
        return [e for e in self.entries.values() if e.lease is None and e.visible_at <= moment]

    async def _lease(self, entries: list[_Entry], until: float | None = None) -> dict[str, dict]:
        """Count a delivery attempt and lease the entries: to the pushing consumer, or (with
        ``until``) to a pull consumer under new lease ids. Returns the updated records."""
        keys = [record_key(e.seq) for e in entries]
        records = await self._get_records(keys)
        for entry, key in zip(entries, keys, strict=True):
            records[key]["att"] += 1
            if until is None:
                entry.lease = PUSH_LEASE
                records[key]["lease"] = {"push": True}
            else:
                entry.lease, entry.lease_until = uuid.uuid4().hex, until
                self.leases[entry.lease] = entry.seq
                records[key]["lease"] = {"id": entry.lease, "until": until}
        await self._put_records(records)
        return records

    async def _expire_leases(self) -> None:
        """Pull leases past their visibility timeout: the messages are visible again."""
        moment = now()
        expired = [
            e for e in self.entries.values() if e.lease not in (None, PUSH_LEASE) and e.lease_until <= moment
        ]
        if not expired:
            return
        records = await self._get_records([record_key(e.seq) for e in expired])
        for record in records.values():
            record["lease"] = None
            record["vis"] = moment
        await self._put_records(records)
        for entry in expired:
            self.leases.pop(entry.lease, None)  # type: ignore[arg-type]
            entry.lease, entry.lease_until, entry.visible_at = None, float("inf"), moment

    async def _schedule(self) -> None:
        """Set the alarm for the next moment a delivery could start (or clear it)."""
        settings = self.settings
        due: float | None = None
        if self.free_slots and not self.paused and settings.consumer is not None:
            waiting = [e.visible_at for e in self.entries.values() if e.lease is None]
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
        lease_ends = [e.lease_until for e in self.entries.values() if e.lease not in (None, PUSH_LEASE)]
        if lease_ends:
            due = min(lease_ends) if due is None else min(due, min(lease_ends))
        current = await self.storage.get_alarm()
        if due is None:
            if current is not None:
                await self.storage.delete_alarm()
        elif current != due:
            await self.storage.set_alarm(due)

    async def _deliver(self, entries: list[_Entry], slot: int) -> None:
        settings = self.settings
        keys = [record_key(e.seq) for e in entries]
        records = await self._get_records(keys)
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
        records = await self._get_records(keys)
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
                retried[key] = record
            if entry.lease not in (None, PUSH_LEASE):
                self.leases.pop(entry.lease, None)  # type: ignore[arg-type]
            entry.lease, entry.lease_until = None, float("inf")
        if dead:
            await self.registry.dead_letter(self.name, [r for _, r in dead], error, moment)
        await self._delete_records([*acked, *(k for k, _ in dead)])
        await self._put_records(retried)
        for key in [*acked, *(k for k, _ in dead)]:
            self.entries.pop(int(key[len(RECORD_PREFIX) :], 16), None)
        self.counters["acked"] += len(acked)
        self.counters["retried"] += len(retried)
        self.counters["dead_lettered"] += len(dead)
        await self._save_meta()
        await self._pump()

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
