"""``ClusterShards``: a node's one LMDB environment, answering for the partitions the node
serves now.

In a cluster the environment at the data directory's root holds every partition the node
owns or once owned; which of them it serves changes as leases move (``ownership``). An actor
of a partition it does not serve, or whose lease deadline passed (a node that was paused
wakes up here before it can renew), has no shard: its events are forwarded to the owner.
"""

from __future__ import annotations

import time

from ..durability.partitions import partition_of
from ..durability.shards import Shard, Shards

APPLIED_PREFIX = b"cluster/applied/"
NODE_KEY = b"cluster/node"
LOG_KEY = b"cluster/log"  # the incarnation of the stream this copy follows


def applied_key(partition: int) -> bytes:
    """The meta key holding the stream sequence of the partition's last applied record."""
    return APPLIED_PREFIX + b"%02d" % partition


class ClusterShards(Shards):
    def __init__(self, shard: Shard, partitions: int) -> None:
        super().__init__(None, [shard])
        self.shard = shard
        self.partitions = partitions
        # partition -> the time.monotonic() until which its lease is valid for this node
        self._served: dict[int, float] = {}

    def for_prefix(self, prefix: bytes) -> Shard | None:
        if self.serves(partition_of(prefix, self.partitions)):
            return self.shard
        return None

    def serves(self, partition: int) -> bool:
        deadline = self._served.get(partition)
        return deadline is not None and time.monotonic() < deadline

    def serve(self, partition: int, deadline: float) -> None:
        """Serve ``partition`` until ``deadline`` (a lease renewal moves it on)."""
        self._served[partition] = deadline

    def stop_serving(self, partition: int) -> None:
        self._served.pop(partition, None)

    @property
    def served(self) -> list[int]:
        now = time.monotonic()
        return sorted(p for p, deadline in self._served.items() if now < deadline)

    def applied(self, partition: int) -> int:
        found = self.shard.env.get_meta(applied_key(partition))
        return 0 if found is None else int(found)
