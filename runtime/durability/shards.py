"""The environments one process writes: a ``Shard`` (LMDB environment and its group
committer) for the one-environment layout, or one for each partition the process owns.

Each shard commits on its own: separate environments sync in parallel, where writers of one
environment queue behind its single write transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .committer import Committer
from .env import Environment
from .lock import DirectoryLock
from .partitions import partition_count, partition_of, partition_path


@dataclass(eq=False, slots=True)
class Shard:
    partition: int
    env: Environment
    committer: Committer


class Shards:
    """The shards of this process by partition; ``count`` partitions exist in all."""

    def __init__(self, count: int, shards: list[Shard], root_lock: DirectoryLock | None = None) -> None:
        self.count = count
        self._by_partition = {shard.partition: shard for shard in shards}
        self._only = shards[0] if count == 1 and shards else None
        self._root_lock = root_lock

    def for_prefix(self, prefix: bytes) -> Shard | None:
        """The shard of the actor with ``prefix``, or None if another process owns it."""
        if self._only is not None:
            return self._only
        return self._by_partition.get(partition_of(prefix, self.count))

    def __iter__(self) -> Iterator[Shard]:
        return iter(self._by_partition.values())

    def __len__(self) -> int:
        return len(self._by_partition)

    def close(self) -> None:
        for shard in self:
            shard.env.close()
        if self._root_lock is not None:
            self._root_lock.release()


def open_shards(
    data_dir: str,
    *,
    map_size_bytes: int,
    max_map_size_bytes: int,
    partitions: list[int] | None = None,
) -> Shards:
    """Open the environments of ``data_dir``: its one environment, or the ``partitions``
    given (a worker's), or all of them holding the directory's lock (one process owning all).
    """
    count = partition_count(data_dir)
    sizes = {"map_size_bytes": map_size_bytes, "max_map_size_bytes": max_map_size_bytes}
    if count is None:
        env = Environment(data_dir, **sizes)
        return Shards(1, [Shard(0, env, Committer(env))])
    root_lock = DirectoryLock(data_dir) if partitions is None else None
    opened: list[Shard] = []
    try:
        for partition in range(count) if partitions is None else partitions:
            env = Environment(partition_path(data_dir, partition), **sizes)
            opened.append(Shard(partition, env, Committer(env)))
    except BaseException:
        for shard in opened:
            shard.env.close()
        if root_lock is not None:
            root_lock.release()
        raise
    return Shards(count, opened, root_lock)
