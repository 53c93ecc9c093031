"""What the group committer asks of a replicator: a cluster's node appends every batch to its
partitions' replicated logs before the committer applies it (``runtime.cluster.replication``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .env import ActorWrites


@dataclass(slots=True)
class Replicated:
    """What a replicator did with a batch: the actors' writes it refused (with why), and
    the meta records to write in the same LMDB transaction as the rest."""

    refused: list[tuple[ActorWrites, Exception]] = field(default_factory=list)
    meta: dict[bytes, bytes] = field(default_factory=dict)


class Replicator(Protocol):
    """Makes a batch durable elsewhere before it is applied (``runtime.cluster``)."""

    async def replicate(self, work: list[ActorWrites]) -> Replicated: ...

    def not_applied(self, work: list[ActorWrites]) -> None:
        """Replicated writes that LMDB then failed to apply: the local copy lags the log."""
