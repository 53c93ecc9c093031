"""``QueueOutcomes``: what becomes of messages whose delivery, pull lease or retention period ended:
acked ones go, retried ones wait (their explicit delay, or the consumer's backoff: ``redelivery``)
or die past ``max_retries``, ended leases make them visible, expired ones go (or to the
dead-letter queue); it keeps the counters. Must stay true: a message leaves storage only when
acked or expired, or once it is durable in the dead-letter queue. Starts no delivery: the
queue actor does, after an outcome.
"""

from __future__ import annotations

from typing import Any

from runtime import now

from .index import Entry
from .message import ACK
from .redelivery import redelivery_delay_seconds
from .store import QueueStore
from .telemetry import log_expired, log_settled

COUNTERS = ("acked", "retried", "dead_lettered", "expired")
EXPIRE_CHUNK = 100  # messages expired (and dead-lettered together) per step


class QueueOutcomes:
    """Applies outcomes to the messages of queue ``name``; ``counters`` are kept in its meta."""

    def __init__(self, store: QueueStore, registry: Any, name: str, counters: dict[str, int]) -> None:
        self._store = store
        self._registry = registry
        self._name = name
        self.counters = counters

    async def settle(
        self, entries: list[Entry], outcomes: list[tuple[str, float | None]], error: str | None
    ) -> None:
        """Apply outcomes: acked messages go; retried ones wait, or die past max_retries."""
        settings = self._registry.settings(self._name)
        index = self._store.index
        moment = now()
        acked, retried, dead = [], [], []
        for entry, (verdict, delay) in zip(entries, outcomes, strict=True):
            if index.get(entry.seq) is not entry:
                continue  # purged or redriven meanwhile
            if verdict == ACK:
                acked.append(entry)
            elif entry.attempts > settings.max_retries:
                dead.append(entry)
            else:
                if delay is None:
                    delay = redelivery_delay_seconds(settings, entry.attempts)
                index.release(entry, moment + delay, moment)
                retried.append(entry)
        if retried or dead:
            failed = list(
                zip(
                    await self._store.messages(retried + dead),
                    [e.attempts for e in retried + dead],
                    strict=True,
                )
            )
            if dead:
                await self._registry.dead_letter(
                    self._name, failed[len(retried) :], error, moment, reason="max_retries"
                )
            log_settled(
                self._name, failed[: len(retried)], failed[len(retried) :], error, settings.dead_letter_queue
            )
        await self._store.remove(acked + dead, also_changed=retried)
        self.counters["acked"] += len(acked)
        self.counters["retried"] += len(retried)
        self.counters["dead_lettered"] += len(dead)

    async def end_leases(self) -> None:
        """Pull leases past their visibility timeout: the messages are ready again."""
        moment = now()
        index = self._store.index
        ended = index.expired_leases(moment)
        for entry in ended:
            index.release(entry, moment, moment)
        await self._store.save_states(entry.segment for entry in ended)

    async def expire(self) -> int:
        """Expire every waiting message whose retention period has ended, as the queue's
        settings say (dropped, or moved to its dead-letter queue); returns how many.

        Messages being expired count as in flight, so no delivery, pull or redrive takes
        them while the dead-letter queue is written. If that fails, or the process dies
        meanwhile, they wait again and are expired again (the dead-letter queue may receive
        them twice)."""
        settings = self._registry.settings(self._name)
        target = settings.dead_letter_queue if settings.dead_letter_expired else None
        index = self._store.index
        count = 0
        while expired := index.take_expired(now(), EXPIRE_CHUNK):
            moment = now()
            index.push(expired)
            messages = await self._store.messages(expired)
            gone = list(zip(messages, [entry.attempts for entry in expired], strict=True))
            if target is not None:
                try:
                    await self._registry.dead_letter(self._name, gone, None, moment, reason="expired")
                except BaseException:
                    for entry in expired:
                        index.release(entry, entry.visible_at, moment)
                    raise
            log_expired(self._name, gone, settings.message_retention_period, target)
            await self._store.remove(expired)
            self.counters["expired"] += len(expired)
            count += len(expired)
            await self._store.load_more()
        return count
