"""How a data directory is cut into partitions, and which partition an actor lives in.

A data directory holds either one LMDB environment (the layout ``open_runtime`` and
``roost serve --workers 1`` create) or a fixed number of partitions, each its own LMDB
environment in ``partitions/NNN``, with the count recorded in ``partitions/layout.json``.
An actor's partition is a hash of its prefix (namespace key and id), so the count must never
change for a directory: changing the number of worker processes moves whole partitions
between workers, never a key between partitions.
"""

from __future__ import annotations

import json
import os
import zlib

from ..errors import StorageError

DEFAULT_PARTITIONS = 16
PARTITIONS_DIR = "partitions"
LAYOUT_FILE = "layout.json"


def partition_of(prefix: bytes, count: int) -> int:
    """The partition of the actor with ``prefix``, out of ``count``."""
    return zlib.crc32(prefix) % count


def owner_of(partition: int, workers: int) -> int:
    """The worker (0 .. workers - 1) that owns ``partition``."""
    return partition % workers


def owned_by(worker: int, workers: int, count: int) -> list[int]:
    return [partition for partition in range(count) if owner_of(partition, workers) == worker]


def partition_path(data_dir: str, partition: int) -> str:
    return os.path.join(data_dir, PARTITIONS_DIR, f"{partition:03d}")


def partition_count(data_dir: str) -> int | None:
    """The partition count of ``data_dir``, or None while it has the one-environment layout."""
    path = os.path.join(data_dir, PARTITIONS_DIR, LAYOUT_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            count = json.load(file)["partitions"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageError(f"unreadable partition layout {path!r}: {exc}") from exc
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise StorageError(f"unreadable partition layout {path!r}: partitions is {count!r}")
    return count


def write_layout(directory: str, count: int) -> None:
    """Record ``count`` in ``directory``/layout.json, durably."""
    path = os.path.join(directory, LAYOUT_FILE)
    with open(path, "w", encoding="utf-8") as file:
        json.dump({"partitions": count}, file)
        file.flush()
        os.fsync(file.fileno())
    fsync_directory(directory)


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
