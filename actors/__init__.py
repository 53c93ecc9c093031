"""Built-in actors and helpers for reliable async processing, built on ``runtime``'s public API."""

from .backoff import PermanentError, is_permanent_failure, with_backoff
from .errors import QueueLimitError, QueueNotFoundError
from .idempotency import IdempotencyActor, IdempotencyKeyReuseError, IdempotentResult, execute_idempotent
from .job_status import JobStatusActor, get_job_status, update_job_status
from .message import Message, MessageBatch, PulledMessage
from .queue import Queue
from .queue_actor import QueueActor
from .webhooks import verify_stripe_signature

__all__ = [
    "IdempotencyActor",
    "IdempotencyKeyReuseError",
    "IdempotentResult",
    "JobStatusActor",
    "Message",
    "MessageBatch",
    "PermanentError",
    "PulledMessage",
    "Queue",
    "QueueActor",
    "QueueLimitError",
    "QueueNotFoundError",
    "execute_idempotent",
    "get_job_status",
    "is_permanent_failure",
    "update_job_status",
    "verify_stripe_signature",
    "with_backoff",
]
