"""The errors of the built-in actors.

    QueueLimitError (ValueError)          a message, batch or delay over a queue limit
    QueueNotFoundError (KeyError)         no queue of that name in the configuration

Each names its HTTP status in ``http_status``, which the runtime's HTTP layer honours.
"""

from __future__ import annotations


class QueueLimitError(ValueError):
    """Over a limit of Cloudflare Queues: nothing was enqueued."""

    http_status = 400


class QueueNotFoundError(KeyError):
    """No queue of that name is configured."""

    http_status = 404

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "queue not found"
