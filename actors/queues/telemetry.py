"""What the queues report about their messages: a log line per failed delivery, per
dead-lettered and per expired message, the spans of sends, batch deliveries and pulls, and
each queue's metrics for ``/metrics``.

A message's send span is stored with it as a W3C traceparent, so the span of each
batch delivery, and of each pull, links to the sends of the messages it carries, across
retries, restarts and redrives. Tracing comes from the runtime (``rt.tracing``); with it
off, these functions only log. Must not decide anything about the messages: the queue
actor does, then reports here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from runtime import ActorStub

from .message import MessageBatch
from .segments import CORRELATION_ID, ID, TRACEPARENT

log = logging.getLogger("roost.queues")

# ``Queue.metrics()`` key -> (metric name, type, help)
_METRICS = {
    "backlog": ("roost_queue_backlog", "gauge", "Messages stored and not acked (delayed and in flight too)."),
    "in_flight": ("roost_queue_in_flight", "gauge", "Messages in a delivery or leased to a pull consumer."),
    "delayed": ("roost_queue_delayed", "gauge", "Messages waiting for their delay or retry delay."),
    "oldest_age_seconds": ("roost_queue_oldest_age_seconds", "gauge", "Age of the oldest stored message."),
    "bytes": ("roost_queue_bytes", "gauge", "Encoded bytes of the stored messages' bodies."),
    "paused": ("roost_queue_paused", "gauge", "1 while deliveries are paused."),
    "acked": ("roost_queue_acked_total", "counter", "Messages acked."),
    "retried": ("roost_queue_retried_total", "counter", "Deliveries of a message retried."),
    "dead_lettered": ("roost_queue_dead_lettered_total", "counter", "Messages that ran out of retries."),
    "expired": ("roost_queue_expired_total", "counter", "Messages unacked past the retention period."),
}


@contextmanager
def send_span(tracing: Any, queue: str, messages: list[list[Any]]) -> Iterator[None]:
    """The span of one send (or send_batch) to ``queue``; its traceparent goes with ``messages``."""
    if not tracing.enabled:
        yield
        return
    with tracing.span(
        f"queue send {queue}",
        kind="producer",
        attributes={"messaging.destination.name": queue, "messaging.batch.message_count": len(messages)},
    ):
        traceparent = tracing.current_traceparent()
        for message in messages:
            message[TRACEPARENT] = traceparent
        yield


def record_pull(tracing: Any, queue: str, leased: list[dict[str, Any]]) -> None:
    """A span for messages a pull consumer leased, linked to their sends. It is made once
    the messages are known (links are given when a span starts), so it is short; the call
    itself is the pull's RPC span. Takes each message's ``traceparent`` out of ``leased``."""
    traceparents = [message.pop("traceparent", None) for message in leased]
    if not tracing.enabled or not leased:
        return
    with tracing.span(
        f"queue receive {queue}",
        kind="consumer",
        attributes={"messaging.destination.name": queue, "messaging.batch.message_count": len(leased)},
        links=traceparents,
    ):
        pass


async def deliver_batch(
    registry: Any, consumer: ActorStub, batch: MessageBatch, traceparents: list[str | None]
) -> None:
    """Hand ``batch`` to ``consumer.queue``, in a span linked to the sends of its messages,
    within the queue's ``max_wall_time``: past it the handler is cancelled and
    ``TimeoutError`` (naming the queue and the limit) raised, so the batch counts as failed."""
    settings = registry.settings(batch.queue)
    with registry.tracing.span(
        f"queue deliver {batch.queue}",
        kind="consumer",
        attributes={
            "messaging.destination.name": batch.queue,
            "messaging.batch.message_count": len(batch.messages),
        },
        links=traceparents,
    ):
        try:
            await consumer.with_options(timeout=settings.max_wall_time).queue(batch)
        except TimeoutError as exc:
            if getattr(exc, "remote", False):  # the handler's own TimeoutError, not the limit
                raise
            limit = settings.max_wall_time
            raise TimeoutError(
                f"the consumer of queue {batch.queue} ran past max_wall_time ({limit} s)"
            ) from None


def log_settled(
    queue: str,
    retried: list[tuple[list[Any], int]],
    dead: list[tuple[list[Any], int]],
    error: str | None,
    dead_letter_queue: str | None,
) -> None:
    """One line per message (with its attempts) that failed its delivery and waits for a
    retry, and one per message that ran out of retries (dead-lettered, or dropped without a
    dead-letter queue)."""
    for message, attempts in retried:
        log.warning(
            "message %s on queue %s failed attempt %d: %s",
            message[ID],
            queue,
            attempts,
            error,
            extra=_fields("queue.delivery_failed", queue, message, attempts, error),
        )
    for message, attempts in dead:
        where = (
            f"dead-lettered to {dead_letter_queue}" if dead_letter_queue else "dropped (no dead-letter queue)"
        )
        log.error(
            "message %s on queue %s %s after %d attempts: %s",
            message[ID],
            queue,
            where,
            attempts,
            error,
            extra={
                **_fields("queue.dead_lettered", queue, message, attempts, error),
                "dead_letter_queue": dead_letter_queue,
            },
        )


def log_expired(
    queue: str, expired: list[tuple[list[Any], int]], retention_seconds: float, dead_letter_queue: str | None
) -> None:
    """One line per message (with its attempts) that stayed unacked past the queue's
    retention period, dead-lettered to ``dead_letter_queue`` or else dropped."""
    where = f"dead-lettered to {dead_letter_queue}" if dead_letter_queue else "dropped"
    for message, attempts in expired:
        log.warning(
            "message %s on queue %s expired unacked after %s s (message_retention_period): %s",
            message[ID],
            queue,
            retention_seconds,
            where,
            extra={
                **_fields("queue.expired", queue, message, attempts, None),
                "message_retention_period": retention_seconds,
                "dead_letter_queue": dead_letter_queue,
            },
        )


def _fields(event: str, queue: str, message: list[Any], attempts: int, error: str | None) -> dict[str, Any]:
    return {
        "event": event,
        "queue": queue,
        "message_id": message[ID],
        "attempts": attempts,
        "correlation_id": message[CORRELATION_ID],
        "error": error,
    }


async def metric_families(registry: Any) -> list[tuple[str, str, str, list[tuple[dict[str, str], float]]]]:
    """Every queue's metrics as Prometheus families, a sample per queue. A queue that cannot
    answer (overloaded, reset) is left out of this scrape, with a warning."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {key: [] for key in _METRICS}
    for name in registry.names:
        try:
            metrics = await registry.queue(name).metrics()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "queue %r left out of /metrics: %s",
                name,
                error,
                extra={"event": "queue.metrics_skipped", "queue": name, "error": error},
            )
            continue
        for key in _METRICS:
            value = metrics[key]
            samples[key].append(({"queue": name}, int(value) if isinstance(value, bool) else value))
    return [(*_METRICS[key], samples[key]) for key in _METRICS]
