"""Built-in actors and helpers for reliable async processing, built on ``runtime``'s public API."""

from .errors import QueueLimitError, QueueNotFoundError
from .message import Message, MessageBatch
from .queue import Queue
from .queue_actor import QueueActor

__all__ = ["Message", "MessageBatch", "Queue", "QueueActor", "QueueLimitError", "QueueNotFoundError"]
