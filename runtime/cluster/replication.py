"""The cluster's output gate: every group commit is appended to the logs of the partitions it
touches before any of it is applied to LMDB or acknowledged.

Each partition's records are appended expecting the last sequence this owner knows of the
partition's subject (the fence: a deposed owner's append is refused). All partitions of a
commit are appended at once, in one hop to the NATS thread. The writes of a partition whose
append was refused (fenced) or whose outcome is unknown (NATS did not answer in time) are
not applied and their actors are reset; the partition is given up, to be taken again and
caught up from the log, which settles what the log holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..durability.replicated import Replicated
from ..durability.env import ActorWrites
from ..durability.partitions import partition_of
from ..errors import StorageError
from . import records
from .jetstream import Fenced, JetStream
from .shards import ClusterShards, applied_key

log = logging.getLogger("roost.cluster")


@dataclass(slots=True)
class Owned:
    """A partition this node owns: its lease's epoch and revision, and the log position."""

    epoch: int
    revision: int
    expected: int  # the sequence of the subject's last record, ours (or our fence)
    deadline: float  # time.monotonic() until which the lease is valid for us
    commits: int = 0
    since_snapshot: int = 0  # records appended or replayed since the partition's last snapshot
    ready: bool = False  # caught up and serving (False again while it is handed off)


class AppendStatistics:
    """The log's share of commit latency: rounds of appends (one per commit, more for a
    commit cut into several records) and the time they took."""

    __slots__ = ("rounds", "appends", "seconds_total")

    def __init__(self) -> None:
        self.rounds = 0
        self.appends = 0
        self.seconds_total = 0.0

    def record(self, appends: int, seconds: float) -> None:
        self.rounds += 1
        self.appends += appends
        self.seconds_total += seconds


class Replicator:
    def __init__(
        self,
        jetstream: JetStream,
        node: str,
        shards: ClusterShards,
        owned: dict[int, Owned],
        give_up: Callable[..., None],
    ) -> None:
        self._jetstream = jetstream
        self._node = node
        self._shards = shards
        self._owned = owned
        self._give_up = give_up
        self.statistics = AppendStatistics()

    async def replicate(self, work: list[ActorWrites]) -> Replicated:
        result = Replicated()
        by_partition: dict[int, list[ActorWrites]] = {}
        for writes in work:
            by_partition.setdefault(partition_of(writes.prefix, self._shards.partitions), []).append(writes)
        # partition -> its records still to append, in order
        pending: dict[int, list[tuple[bytes, list[ActorWrites]]]] = {}
        for partition, part in by_partition.items():
            owned = self._owned.get(partition)
            # Not ``serves``: a partition being handed off commits its last events' writes.
            if owned is None or time.monotonic() >= owned.deadline:
                reason = StorageError(f"partition {partition} is no longer served here; the writes were not applied")
                result.refused.extend((writes, reason) for writes in part)
                continue
            pending[partition] = records.commits(partition, owned.epoch, self._node, part)
        # Held across the awaits: a partition given up meanwhile still records what landed.
        owners = {partition: self._owned[partition] for partition in pending}
        while pending:
            appends = []
            for partition, queue in pending.items():
                owned = owners[partition]
                owned.commits += 1
                message_id = f"{partition}:{owned.epoch}:{owned.commits}"
                appends.append((partition, queue[0][0], owned.expected, message_id))
            started = time.perf_counter()
            outcomes = await self._jetstream.append_all(appends)
            self.statistics.record(len(appends), time.perf_counter() - started)
            for (partition, *_), outcome in zip(appends, outcomes, strict=True):
                queue = pending[partition]
                if isinstance(outcome, int):
                    owners[partition].expected = outcome
                    owners[partition].since_snapshot += 1
                    result.meta[applied_key(partition)] = b"%d" % outcome
                    queue.pop(0)
                    if not queue:
                        del pending[partition]
                    continue
                del pending[partition]
                if isinstance(outcome, Fenced):
                    why = f"partition {partition} was taken over by another node; the writes were not acknowledged"
                else:
                    why = (
                        f"the log did not acknowledge partition {partition}'s commit ({outcome});"
                        " its outcome is unknown"
                    )
                reason = StorageError(why)
                for _, part in queue:
                    result.refused.extend((writes, reason) for writes in part)
                self._give_up(partition, why)
        return result

    def not_applied(self, work: list[ActorWrites]) -> None:
        partitions = {partition_of(writes.prefix, self._shards.partitions) for writes in work}
        for partition in sorted(partitions):
            log.error("partition %d: a replicated commit failed in LMDB; it catches up from the log", partition)
            self._give_up(partition, "its local copy lags the log")
