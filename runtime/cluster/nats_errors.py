"""The errors of the NATS layer (``jetstream``, ``kv``), and the JetStream error codes that
decide between them.

Errors::

    ClusterError
    ├── NatsUnavailable     no answer within the call's limit (an append's outcome is unknown)
    ├── Fenced              the subject's last record is another writer's (.last)
    ├── Conflict            a KV compare-and-set was refused
    └── ClusterSetupError   the existing stream or a bucket does not match the configuration
"""

from __future__ import annotations

WRONG_LAST_SEQUENCE = 10071  # "wrong last sequence: N"
# "wrong last sequence" without N: the leader refuses while another write to the subject is
# still being proposed, before it knows whether that one lands
WRONG_LAST_SEQUENCE_IN_PROCESS = 10164
REFUSALS = (WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_IN_PROCESS)
NO_MESSAGE_FOUND = 10037
STREAM_NAME_IN_USE = 10058
DUPLICATE_IN_PROCESS = 10158
NO_SUITABLE_PEERS = 10005


class ClusterError(Exception):
    """Base of the errors of the NATS layer."""


class NatsUnavailable(ClusterError, TimeoutError):
    """NATS did not answer within the call's time limit, or is unreachable. For an append or
    a KV write the outcome is unknown: it may have landed."""


class Fenced(ClusterError):
    """An append was refused: the subject's last record, at ``last``, is not the expected one
    and not ours. Another writer appended since."""

    def __init__(self, subject: str, expected: int, last: int) -> None:
        super().__init__(f"{subject}: expected last sequence {expected}, the log's is {last} (another writer's)")
        self.last = last


class Conflict(ClusterError):
    """A KV compare-and-set was refused: the key's revision is not the one given (after
    resolving spurious refusals)."""


class ClusterSetupError(ClusterError):
    """The existing stream or bucket does not match what Roost is configured for."""
