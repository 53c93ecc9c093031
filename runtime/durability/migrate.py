"""Splitting a one-environment data directory into partitions, once, before serving.

The partitions are built beside the old environment in ``partitions.new``, synced, and then
renamed into place in one step, with their layout file inside: a crash before the rename
leaves the old environment as the data (the half-built copy is thrown away at the next
start), a crash after it leaves the partitions as the data (the old environment's files are
removed at the next start). The caller holds the data directory's lock throughout.
"""

from __future__ import annotations

import logging
import os
import shutil

from . import keys
from .env import Environment
from .partitions import (
    PARTITIONS_DIR,
    fsync_directory,
    partition_count,
    partition_of,
    write_layout,
)

log = logging.getLogger("roost.durability")

LMDB_FILES = ("data.mdb", "lock.mdb")
ROWS_PER_TRANSACTION = 20_000


def ensure_partitioned(data_dir: str, count: int, *, map_size_bytes: int) -> int:
    """Give ``data_dir`` the partitioned layout (``count`` partitions) unless it has one
    already; returns its partition count, which never changes once set."""
    found = partition_count(data_dir)
    if found is not None:
        _remove_old_environment(data_dir)
        return found
    staging = os.path.join(data_dir, PARTITIONS_DIR + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    moved = 0
    if os.path.exists(os.path.join(data_dir, LMDB_FILES[0])):
        moved = _split(data_dir, staging, count, map_size_bytes)
    write_layout(staging, count)
    os.rename(staging, os.path.join(data_dir, PARTITIONS_DIR))
    fsync_directory(data_dir)
    _remove_old_environment(data_dir)
    if moved:
        log.info(
            "data directory %s split into %d partitions (%d records moved)",
            data_dir,
            count,
            moved,
            extra={"event": "storage.partitioned", "partitions": count, "records": moved},
        )
    return count


def _split(data_dir: str, staging: str, count: int, map_size_bytes: int) -> int:
    source = Environment(data_dir, map_size_bytes=map_size_bytes, max_map_size_bytes=map_size_bytes, lock=False)
    targets = [
        Environment(
            os.path.join(staging, f"{partition:03d}"),
            map_size_bytes=map_size_bytes,
            max_map_size_bytes=map_size_bytes,
        )
        for partition in range(count)
    ]
    pending: list[list[tuple[bytes, bytes, bytes]]] = [[] for _ in targets]
    moved = 0
    try:
        for row in source.dump():
            partition = partition_of(keys.prefix_of_row(row[0], row[1]), count)
            pending[partition].append(row)
            moved += 1
            if len(pending[partition]) >= ROWS_PER_TRANSACTION:
                targets[partition].load(pending[partition])
                pending[partition] = []
        for target, rows in zip(targets, pending, strict=True):
            target.load(rows)
    finally:
        source.close()
        for target in targets:
            target.close()
    return moved


def _remove_old_environment(data_dir: str) -> None:
    for name in LMDB_FILES:
        try:
            os.remove(os.path.join(data_dir, name))
        except FileNotFoundError:
            continue
