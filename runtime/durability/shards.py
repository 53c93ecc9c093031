"""The environments one process writes: a ``Shard`` (LMDB environment and its group
committer) for the root environment, for one worker's environment, or for each worker's
when one process opens them all.

Each shard commits on its own; the writes of every actor of a shard share its commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .committer import Committer
from .env import Environment
from .lock import DirectoryLock
from .partitions import Layout, environment_path, owner_of, partition_of, read_layout


@dataclass(eq=False, slots=True)
class Shard:
    index: int  # the worker whose partitions it holds (0 for the root environment)
    env: Environment
    committer: Committer


class Shards:
    """The shards of this process, by worker index, laid out as ``layout`` says (None: one
    root environment holding everything)."""

    def __init__(self, layout: Layout | None, shards: list[Shard], root_lock: DirectoryLock | None = None) -> None:
        self.layout = layout
        self._by_index = {shard.index: shard for shard in shards}
        self._only = shards[0] if layout is None or layout.workers == 1 else None
        self._root_lock = root_lock

    def for_prefix(self, prefix: bytes) -> Shard | None:
        """The shard of the actor with ``prefix``, or None if another process owns it."""
        if self._only is not None:
            return self._only
        layout = self.layout
        assert layout is not None
        return self._by_index.get(owner_of(partition_of(prefix, layout.partitions), layout.workers))

    def __iter__(self) -> Iterator[Shard]:
        return iter(self._by_index.values())

    def close(self) -> None:
        for shard in self:
            shard.env.close()
        if self._root_lock is not None:
            self._root_lock.release()


def open_shards(
    data_dir: str, *, map_size_bytes: int, max_map_size_bytes: int, worker: int | None = None
) -> Shards:
    """Open the environments of ``data_dir``: its root one, or worker ``worker``'s, or every
    worker's holding the directory's lock (one process owning them all)."""
    layout = read_layout(data_dir)
    sizes = {"map_size_bytes": map_size_bytes, "max_map_size_bytes": max_map_size_bytes}
    if layout is None:
        env = Environment(data_dir, **sizes)
        return Shards(None, [Shard(0, env, Committer(env))])
    if worker is not None and not 0 <= worker < layout.workers:
        raise ValueError(f"worker {worker} of a data directory laid out for {layout.workers}")
    root_lock = DirectoryLock(data_dir) if worker is None else None
    opened: list[Shard] = []
    try:
        for index in range(layout.workers) if worker is None else [worker]:
            env = Environment(environment_path(data_dir, layout, index), **sizes)
            opened.append(Shard(index, env, Committer(env)))
    except BaseException:
        for shard in opened:
            shard.env.close()
        if root_lock is not None:
            root_lock.release()
        raise
    return Shards(layout, opened, root_lock)
