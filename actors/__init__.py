"""Built-in actors and helpers for reliable async processing, built on ``runtime``'s public API."""

from .backoff import PermanentError, is_permanent_failure, with_backoff
from .batches import BatchResult, enqueue_batch, process_batch
from .errors import QueueLimitError, QueueNotFoundError
from .idempotency import IdempotencyActor, IdempotencyKeyReuseError, IdempotentResult, execute_idempotent
from .job_status import JobStatusActor, get_job_status, update_job_status
from .queues.actor import QueueActor
from .queues.message import Message, MessageBatch, PulledMessage
from .queues.queue import Queue
from .scheduler import SchedulerActor, cancel_job, list_jobs, schedule_job
from .webhooks.signature import verify_stripe_signature

__all__ = [
    "BatchResult",
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
    "SchedulerActor",
    "cancel_job",
    "enqueue_batch",
    "execute_idempotent",
    "get_job_status",
    "is_permanent_failure",
    "list_jobs",
    "process_batch",
    "schedule_job",
    "update_job_status",
    "verify_stripe_signature",
    "with_backoff",
]
