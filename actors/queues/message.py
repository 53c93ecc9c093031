"""What a queue consumer receives: ``MessageBatch`` of ``Message``, with acks and retries.

As on Cloudflare: the first call on a message wins, and a call on a message beats a later
``ack_all()``/``retry_all()``; the queue applies the outcome when the handler returns (every
message not explicitly retried is acked) or raises (every message not explicitly acked is
retried, unless ``ack_all()`` came first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .message_codec import check_delay

ACK = "ack"
RETRY = "retry"


@dataclass(eq=False, slots=True)
class Message:
    id: str
    timestamp: datetime
    body: Any
    attempts: int
    correlation_id: str | None = None
    # (ACK or RETRY, delay_seconds) once decided by the consumer
    outcome: tuple[str, float | None] | None = field(default=None, repr=False)

    def ack(self) -> None:
        """Acknowledge this message: it will not be delivered again."""
        if self.outcome is None:
            self.outcome = (ACK, None)

    def retry(self, delay_seconds: float | None = None) -> None:
        """Deliver this message again, after ``delay_seconds`` (default: the queue's retry_delay,
        doubled per attempt up to max_retry_delay with ``retry_backoff = "exponential"``).

        A delay that is not a number within 0..43,200 s raises ``QueueLimitError`` here, in
        the handler (even when the message's outcome was decided already), and decides
        nothing: uncaught, it fails the batch like any raise."""
        delay = None if delay_seconds is None else check_delay(delay_seconds)
        if self.outcome is None:
            self.outcome = (RETRY, delay)


@dataclass(frozen=True, slots=True)
class PulledMessage:
    """A message leased by ``Queue.pull``: ack or retry it by ``lease_id`` before the lease
    (the visibility timeout) ends, or it becomes visible again."""

    id: str
    body: Any
    attempts: int
    timestamp: datetime
    lease_id: str
    content_type: str = "json"
    correlation_id: str | None = None


@dataclass(eq=False, slots=True)
class MessageBatch:
    queue: str
    messages: list[Message]

    def ack_all(self) -> None:
        """Acknowledge every message that has no outcome yet."""
        for message in self.messages:
            message.ack()

    def retry_all(self, delay_seconds: float | None = None) -> None:
        """Retry every message that has no outcome yet (a bad delay raises as ``retry``'s)."""
        delay = None if delay_seconds is None else check_delay(delay_seconds)
        for message in self.messages:
            if message.outcome is None:
                message.outcome = (RETRY, delay)

    def outcomes(self, *, handler_raised: bool) -> list[tuple[str, float | None]]:
        """Each message's outcome, once the handler returned or raised."""
        implicit = (RETRY, None) if handler_raised else (ACK, None)
        return [message.outcome or implicit for message in self.messages]

    # -- to a consumer in another worker process (runtime.extensions.Transferable) -----------

    def transfer_state(self) -> tuple[str, Any]:
        messages = [
            [m.id, m.timestamp.timestamp(), m.body, m.attempts, m.correlation_id] for m in self.messages
        ]
        return "actors.queues.message:MessageBatch.from_transfer", [self.queue, messages]

    @classmethod
    def from_transfer(cls, state: list[Any]) -> MessageBatch:
        queue, messages = state
        return cls(
            queue,
            [
                Message(id, datetime.fromtimestamp(stamp, tz=timezone.utc), body, attempts, correlation_id)
                for id, stamp, body, attempts, correlation_id in messages
            ],
        )

    def transfer_outcome(self) -> list[list[Any] | None]:
        return [None if m.outcome is None else list(m.outcome) for m in self.messages]

    def apply_transfer_outcome(self, outcome: list[list[Any] | None]) -> None:
        for message, decided in zip(self.messages, outcome, strict=True):
            if decided is not None and message.outcome is None:
                message.outcome = (decided[0], decided[1])
