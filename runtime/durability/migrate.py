"""Giving a data directory the environments of N workers, before any of them starts.

When N differs from the directory's layout (or the directory still has its one root
environment), every record is copied into a new generation directory, each into the
environment of the worker that owns its partition; the environments are synced, and only
then does ``layout.json`` point at the new generation, in one atomic rename. A crash before
that leaves the old layout as the data (the half-built generation is removed at the next
start); a crash after it leaves the new one (the old generation is removed at the next
start). The caller holds the data directory's lock throughout.
"""

from __future__ import annotations

import logging
import os
import shutil

from . import keys
from .env import Environment
from .partitions import (
    GENERATION_PREFIX,
    Layout,
    environment_path,
    owner_of,
    partition_of,
    read_layout,
    write_layout,
)

log = logging.getLogger("roost.durability")

ROOT_ENVIRONMENT_FILES = ("data.mdb", "lock.mdb")
ROWS_PER_TRANSACTION = 20_000


def ensure_layout(data_dir: str, workers: int, partitions: int, *, map_size_bytes: int) -> Layout:
    """The layout of ``data_dir`` for ``workers``, moving partitions into it if it had
    another; ``partitions`` counts only for a directory that has no layout yet."""
    current = read_layout(data_dir)
    if current is not None and current.workers == workers:
        _remove_leftovers(data_dir, current)
        return current
    count = partitions if current is None else current.partitions
    if workers > count:
        raise ValueError(f"{workers} workers are more than the {count} partitions of {data_dir!r}")
    target = Layout(count, workers, 0 if current is None else current.generation + 1)
    shutil.rmtree(os.path.join(data_dir, target.directory), ignore_errors=True)
    sources = _source_paths(data_dir, current)
    moved = _copy(sources, [environment_path(data_dir, target, w) for w in range(workers)], target, map_size_bytes)
    write_layout(data_dir, target)
    _remove_leftovers(data_dir, target)
    log.info(
        "data directory %s laid out for %d workers (%d partitions, %d records moved)",
        data_dir,
        workers,
        count,
        moved,
        extra={"event": "storage.laid_out", "workers": workers, "partitions": count, "records": moved},
    )
    return target


def _source_paths(data_dir: str, current: Layout | None) -> list[str]:
    if current is not None:
        return [environment_path(data_dir, current, w) for w in range(current.workers)]
    if os.path.exists(os.path.join(data_dir, ROOT_ENVIRONMENT_FILES[0])):
        return [data_dir]
    return []


def _copy(sources: list[str], targets: list[str], layout: Layout, map_size_bytes: int) -> int:
    sizes = {"map_size_bytes": map_size_bytes, "max_map_size_bytes": map_size_bytes}
    # The sources are the caller's to own (it holds the data directory's lock).
    opened_sources = [Environment(path, lock=False, **sizes) for path in sources]
    opened_targets = [Environment(path, **sizes) for path in targets]
    pending: list[list[tuple[bytes, bytes, bytes]]] = [[] for _ in targets]
    moved = 0
    try:
        for source in opened_sources:
            for row in source.dump():
                worker = owner_of(partition_of(keys.prefix_of_row(row[0], row[1]), layout.partitions), layout.workers)
                pending[worker].append(row)
                moved += 1
                if len(pending[worker]) >= ROWS_PER_TRANSACTION:
                    opened_targets[worker].load(pending[worker])
                    pending[worker] = []
        for target, rows in zip(opened_targets, pending, strict=True):
            target.load(rows)
    finally:
        for env in opened_sources + opened_targets:
            env.close()
    return moved


def _remove_leftovers(data_dir: str, layout: Layout) -> None:
    """Generations other than ``layout``'s (old ones, half-built ones) and a root environment."""
    for name in os.listdir(data_dir):
        if name.startswith(GENERATION_PREFIX) and name != layout.directory:
            shutil.rmtree(os.path.join(data_dir, name), ignore_errors=True)
    for name in ROOT_ENVIRONMENT_FILES:
        try:
            os.remove(os.path.join(data_dir, name))
        except FileNotFoundError:
            continue
