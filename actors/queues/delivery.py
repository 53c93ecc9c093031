"""Push delivery: when a queue's next batch is due (``max_batch_size`` ready, or the oldest ready
one waited ``max_batch_timeout``), and delivering one batch to its consumer, which returns each
message's outcome. Writes nothing (the queue actor applies the outcomes) and never raises for
the consumer's failure.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from runtime import ActorResetError

from .index import READY, Entry, QueueIndex
from .message import Message, MessageBatch
from .message_codec import decode_body
from .segments import BODY, CONTENT_TYPE, CORRELATION_ID, ID, TIMESTAMP, TRACEPARENT
from .telemetry import deliver_batch


def next_batch_due(index: QueueIndex, settings: Any, moment: float) -> float | None:
    """When the next batch is due (``moment`` or earlier: now), or None with nothing waiting.
    Call ``index.promote(moment)`` first."""
    candidates = [index.next_delayed()]
    ready = index.count(READY)
    if ready >= settings.max_batch_size:
        candidates.append(moment)
    elif ready:
        candidates.append((index.oldest_ready_since() or moment) + settings.max_batch_timeout)
    return min((c for c in candidates if c is not None), default=None)


async def deliver(
    registry: Any, queue: str, slot: int, entries: list[Entry], messages: list[list[Any]]
) -> tuple[list[tuple[str, float | None]], str | None]:
    """Deliver one batch to the consumer of delivery slot ``slot``; returns each message's
    outcome and the error, if the handler raised (or ran out of time, or was reset)."""
    # Messages sent together share a timestamp: make each datetime once.
    stamps = {
        ts: datetime.fromtimestamp(ts, tz=timezone.utc) for ts in {message[TIMESTAMP] for message in messages}
    }
    batch = MessageBatch(
        queue,
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
            registry, registry.consumer(queue, slot), batch, [message[TRACEPARENT] for message in messages]
        )
    except ActorResetError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        error = f"{getattr(exc, 'remote_type', type(exc).__name__)}: {exc}"
    return batch.outcomes(handler_raised=error is not None), error
