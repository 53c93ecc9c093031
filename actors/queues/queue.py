"""``Queue``: the handle producers and operators use (``env.MY_QUEUE``, ``rt.queue(name)``),
and the registry that ties queue names to their actors, settings and consumers.

Bodies are checked and encoded here, in the caller, so a message over a limit is refused
before anything is sent; the queue actor stores them, and ``send`` returns once they are
durable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from runtime import ActorStub, Namespace, now

from ..errors import QueueLimitError, QueueNotFoundError
from ..names import QUEUES_BINDING, consumer_binding
from .message import PulledMessage
from .message_codec import check_batch, check_delay, decode_body, encode_body
from .segments import (
    BODY,
    CONTENT_TYPE,
    CORRELATION_ID,
    ID,
    MAX_ERROR_CHARS,
    TIMESTAMP,
    TRACEPARENT,
    new_message,
)
from .telemetry import record_pull, send_span


class QueueRegistry:
    """The queues of one runtime: their settings, their actors, their consumers."""

    def __init__(self, rt: Any, settings: Mapping[str, Any]) -> None:
        self._settings = dict(settings)
        self.tracing = rt.tracing
        self._actors: Namespace = rt.namespace(QUEUES_BINDING)
        self._consumers = {
            name: rt.namespace(consumer_binding(name)) for name, s in self._settings.items() if s.consumer
        }
        self._consumer_stubs: dict[tuple[str, int], ActorStub] = {}
        self._handles = {name: Queue(self, name) for name in self._settings}

    def settings(self, name: str) -> Any:
        return self._settings[name]

    def queue(self, name: str) -> Queue:
        try:
            return self._handles[name]
        except KeyError:
            raise QueueNotFoundError(f"no queue named {name!r}; queues: {sorted(self._handles)}") from None

    @property
    def names(self) -> list[str]:
        return sorted(self._handles)

    def actor(self, name: str) -> ActorStub:
        return self._actors.get_by_name(name)

    def consumer(self, name: str, slot: int) -> ActorStub:
        """The consumer instance for one delivery slot: each slot is its own actor."""
        stub = self._consumer_stubs.get((name, slot))
        if stub is None:
            stub = self._consumer_stubs[name, slot] = self._consumers[name].get_by_name(f"{name}#{slot}")
        return stub

    async def dead_letter(
        self,
        source: str,
        failed: list[tuple[list[Any], int]],
        error: str | None,
        failed_at: float,
        *,
        reason: str,
    ) -> None:
        """Move stored messages that ran out of retries or expired (``reason``
        ``"max_retries"`` or ``"expired"``; each with its attempts) to the source's
        dead-letter queue, if it has one. Their retention there counts from ``failed_at``.

        Returns once they are durable there; without a dead-letter queue they are dropped."""
        target = self._settings[source].dead_letter_queue
        if target is None:
            return
        last_error = None if error is None else error[:MAX_ERROR_CHARS]
        await self.actor(target).enqueue(
            [
                new_message(
                    message[ID],
                    message[BODY],
                    message[CONTENT_TYPE],
                    message[TIMESTAMP],
                    failed_at,
                    message[CORRELATION_ID],
                    {
                        "queue": source,
                        "reason": reason,
                        "attempts": count,
                        "error": last_error,
                        "failed_at": failed_at,
                    },
                    message[TRACEPARENT],
                    arrived_at=failed_at,
                )
                for message, count in failed
            ]
        )


class Queue:
    """A queue's producer and operations. Get one from ``env`` or ``rt.queue(name)``."""

    def __init__(self, registry: QueueRegistry, name: str) -> None:
        self._registry = registry
        self.name = name

    def __repr__(self) -> str:
        return f"<Queue {self.name}>"

    async def send(self, body: Any, *, content_type: str = "json", delay_seconds: float = 0) -> str:
        """Enqueue one message; returns its id once it is durable. ``QueueLimitError`` if
        the body is over 128,000 bytes encoded, of the wrong type, or the delay over 12 hours
        (43,200 s)."""
        message_id = _new_ids(1)[0]
        await self._enqueue([_outgoing(message_id, body, content_type, delay_seconds, now())])
        return message_id

    async def send_batch(self, messages: list[Mapping[str, Any]], *, delay_seconds: float = 0) -> list[str]:
        """Enqueue up to 100 messages (256,000 bytes) together: all or none. Each message's
        ``delay_seconds`` (default: the batch's) is at most 43,200 s, and so is the batch's."""
        if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
            raise QueueLimitError(
                "send_batch takes a list of {'body', 'content_type'?, 'delay_seconds'?} dicts"
            )
        for message in messages:
            unknown = set(message) - {"body", "content_type", "delay_seconds"}
            if unknown or "body" not in message:
                raise QueueLimitError(f"a batch message needs 'body' and takes no {sorted(unknown)}")
        ids, outgoing = _outgoing_batch(messages, delay_seconds)
        if outgoing:
            await self._enqueue(outgoing)
        return ids

    async def send_scheduled(self, jobs: list[tuple[Any, str | None]]) -> None:
        """For the scheduler: ``(body, correlation_id)`` pairs sent together as json messages,
        all or none, each carrying the correlation id of the event that scheduled it (None:
        the sender's)."""
        _, outgoing = _outgoing_batch([{"body": body} for body, _ in jobs], 0)
        for message, (_, correlation_id) in zip(outgoing, jobs, strict=True):
            message[CORRELATION_ID] = correlation_id
        await self._enqueue(outgoing)

    async def _enqueue(self, messages: list[list[Any]]) -> None:
        with send_span(self._registry.tracing, self.name, messages):
            await self._registry.actor(self.name).enqueue(messages)

    async def metrics(self) -> dict[str, Any]:
        """backlog (stored, not acked: delayed and in-flight included), in_flight, delayed,
        oldest_age_seconds, bytes, paused, and the counters acked, retried, dead_lettered,
        expired."""
        return await self._registry.actor(self.name).metrics()

    async def peek(self, limit: int = 10) -> list[dict[str, Any]]:
        """The oldest ``limit`` messages, unchanged: id, body, content_type, attempts, timestamp,
        correlation_id, dead_letter, and next_attempt_at (epoch seconds: when a message waiting
        out a retry delay or a send delay is delivered again; None when ready or in flight)."""
        messages = await self._registry.actor(self.name).peek(limit)
        for message in messages:
            message["body"] = decode_body(message["body"], message["content_type"])
        return messages

    async def purge(self) -> int:
        """Delete every message of the queue; how many there were."""
        return await self._registry.actor(self.name).purge()

    async def pull(self, batch_size: int = 5, visibility_timeout: float = 30.0) -> list[PulledMessage]:
        """Lease up to ``batch_size`` (1..100) visible messages for ``visibility_timeout``
        seconds (at most 12 hours). Each delivery counts in ``attempts``; a lease that ends
        without ``ack``/``retry`` makes the message visible again."""
        leased = await self._registry.actor(self.name).pull(batch_size, visibility_timeout)
        record_pull(self._registry.tracing, self.name, leased)
        return [
            PulledMessage(
                id=m["id"],
                body=decode_body(m["body"], m["content_type"]),
                attempts=m["attempts"],
                timestamp=datetime.fromtimestamp(m["timestamp"], tz=timezone.utc),
                lease_id=m["lease_id"],
                content_type=m["content_type"],
                correlation_id=m["correlation_id"],
            )
            for m in leased
        ]

    async def ack(self, lease_ids: list[str]) -> int:
        """Acknowledge pulled messages by lease id; returns how many leases were still valid."""
        return (await self._registry.actor(self.name).settle_leases(_lease_list(lease_ids), []))["acked"]

    async def retry(self, lease_ids: list[str], delay_seconds: float | None = None) -> int:
        """Make pulled messages visible again, after ``delay_seconds`` (at most 43,200 s;
        default: the queue's retry_delay, growing per attempt with exponential retry_backoff);
        past max_retries they go to the dead-letter queue."""
        delay = None if delay_seconds is None else check_delay(delay_seconds)
        retries = [[lease, delay] for lease in _lease_list(lease_ids)]
        return (await self._registry.actor(self.name).settle_leases([], retries))["retried"]

    async def redrive(self, to: str | None = None, ids: list[str] | None = None) -> int:
        """Move messages of this queue (typically a dead-letter queue), all or those ``ids``,
        to ``to`` or back to the queue each died in. Returns how many moved."""
        if to is not None:
            self._registry.queue(to)
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
            raise QueueLimitError("ids must be a list of message ids")
        return await self._registry.actor(self.name).redrive(to, ids)

    async def pause(self) -> None:
        """Stop delivering (sends are still accepted and stored)."""
        await self._registry.actor(self.name).pause()

    async def resume(self) -> None:
        await self._registry.actor(self.name).resume()


def _new_ids(count: int) -> list[str]:
    """Message ids of 128 random bits each, as a uuid4 carries, made in one call."""
    hexes = os.urandom(16 * count).hex()
    return [hexes[i : i + 32] for i in range(0, 32 * count, 32)]


def _outgoing_batch(
    messages: list[Mapping[str, Any]], delay_seconds: float
) -> tuple[list[str], list[list[Any]]]:
    """Ids and messages for the queue actor, checked against the batch limits. The
    batch-wide delay is checked even when every message has its own."""
    check_delay(delay_seconds)
    moment = now()
    ids = _new_ids(len(messages))
    outgoing = [
        _outgoing(
            message_id,
            m["body"],
            m.get("content_type", "json"),
            m.get("delay_seconds", delay_seconds),
            moment,
        )
        for message_id, m in zip(ids, messages, strict=True)
    ]
    check_batch([len(message[BODY]) for message in outgoing])
    return ids, outgoing


def _outgoing(message_id: str, body: Any, content_type: str, delay_seconds: Any, moment: float) -> list[Any]:
    """A message for the queue actor: its body checked and encoded, its delay checked."""
    return new_message(
        message_id, encode_body(body, content_type), content_type, moment, moment + check_delay(delay_seconds)
    )


def _lease_list(lease_ids: list[str]) -> list[str]:
    if not isinstance(lease_ids, list) or not all(isinstance(lease, str) for lease in lease_ids):
        raise QueueLimitError("lease_ids must be a list of lease id strings")
    return lease_ids
