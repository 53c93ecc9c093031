"""Which partition an actor lives in, which worker owns a partition, and the layout of a
data directory's environments.

An actor's partition is a hash of its prefix (namespace key and id) out of a partition count
that never changes for a data directory, so an actor never changes partition; worker ``i``
of N owns the partitions ``p`` with ``p % N == i``. A data directory holds either one LMDB
environment at its root (the layout ``open_runtime`` and ``roost serve --workers 1``
create), or one environment per worker, ``GENERATION/worker-I``, holding the partitions that
worker owns, as ``layout.json`` records: the partition count, the worker count, and the
generation directory in use. Changing the worker count moves whole partitions into a new
generation (``migrate``); ``layout.json`` then points at it, in one atomic rename.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass

from ..errors import StorageError

DEFAULT_PARTITIONS = 64
LAYOUT_FILE = "layout.json"
GENERATION_PREFIX = "generation-"


@dataclass(frozen=True, slots=True)
class Layout:
    partitions: int
    workers: int
    generation: int

    @property
    def directory(self) -> str:
        return f"{GENERATION_PREFIX}{self.generation}"


def partition_of(prefix: bytes, count: int) -> int:
    """The partition of the actor with ``prefix``, out of ``count``."""
    return zlib.crc32(prefix) % count


def owner_of(partition: int, workers: int) -> int:
    """The worker (0 .. workers - 1) that owns ``partition``."""
    return partition % workers


def environment_path(data_dir: str, layout: Layout, worker: int) -> str:
    return os.path.join(data_dir, layout.directory, f"worker-{worker}")


def read_layout(data_dir: str) -> Layout | None:
    """The layout of ``data_dir``, or None while it has one environment at its root."""
    path = os.path.join(data_dir, LAYOUT_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            layout = Layout(**json.load(file))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise StorageError(f"unreadable layout {path!r}: {exc}") from exc
    values = (layout.partitions, layout.workers, layout.generation)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values) or not (
        1 <= layout.workers <= layout.partitions
    ):
        raise StorageError(f"unreadable layout {path!r}: {asdict(layout)}")
    return layout


def write_layout(data_dir: str, layout: Layout) -> None:
    """Make ``layout`` the data directory's, atomically and durably."""
    path = os.path.join(data_dir, LAYOUT_FILE)
    staging = path + ".new"
    with open(staging, "w", encoding="utf-8") as file:
        json.dump(asdict(layout), file)
        file.flush()
        os.fsync(file.fileno())
    os.rename(staging, path)
    fsync_directory(data_dir)


def fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
