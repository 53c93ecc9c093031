"""Snapshots of the partitions a node owns, so that their logs can be trimmed, and the start
of a catch-up from one.

An owner snapshots a partition once ``every_records`` records were appended or replayed
since its last one: its rows and its applied position, read in one LMDB transaction, are
stored (``snapshot_store``), and only then is the log trimmed below that position (its last
record is always kept: the fence needs it). A catch-up starts from the local copy's
position if the log still holds every record after it, and otherwise from the latest
snapshot, which replaces the local copy of the partition. The log holds every record after a
position P exactly when its first stored record is at or below P (a trim removes a prefix),
or, for P = 0, when no snapshot exists (nothing is trimmed before one is stored).
"""

from __future__ import annotations

import logging
import time
from functools import partial

import trio

from ..durability.partitions import partition_of
from ..errors import StorageError
from .jetstream import ClusterError, JetStream
from .replication import Owned
from .shards import ClusterShards, applied_key
from .snapshot_store import Snapshot, SnapshotStore

log = logging.getLogger("roost.cluster")

# After a snapshot fails (NATS unreachable, say), its partition waits this long for the next
# try: each try reads the whole local copy.
RETRY_PAUSE_SECONDS = 30.0


def _in_partition(partition: int, count: int, prefix: bytes) -> bool:
    return partition_of(prefix, count) == partition


class Snapshots:
    def __init__(self, store: SnapshotStore, jetstream: JetStream, shards: ClusterShards, every_records: int) -> None:
        self._store = store
        self._jetstream = jetstream
        self._shards = shards
        self.every_records = every_records
        self._taking: set[int] = set()
        self._failed_at: dict[int, float] = {}  # partition -> time.monotonic() of its last failure
        self.statistics = {"snapshots_taken": 0, "snapshots_loaded": 0, "snapshot_bytes": 0}

    # -- taking them --------------------------------------------------------------------------

    def start_due(self, owned: dict[int, Owned], nursery: trio.Nursery) -> None:
        """Start a snapshot of each ready partition that has gathered enough records (and
        whose last try did not fail within ``RETRY_PAUSE_SECONDS``)."""
        now = time.monotonic()
        for partition, mine in owned.items():
            if not mine.ready or mine.since_snapshot < self.every_records or partition in self._taking:
                continue
            if now - self._failed_at.get(partition, now - RETRY_PAUSE_SECONDS) < RETRY_PAUSE_SECONDS:
                continue
            self._taking.add(partition)
            nursery.start_soon(self._snapshot, partition, mine)

    async def _snapshot(self, partition: int, mine: Owned) -> None:
        counted = mine.since_snapshot
        try:
            sequence = await self.take(partition)
        except (ClusterError, StorageError) as exc:
            self._failed_at[partition] = time.monotonic()
            log.warning("partition %d: no snapshot (next try in %g s): %s", partition, RETRY_PAUSE_SECONDS, exc)
            return
        finally:
            self._taking.discard(partition)
        self._failed_at.pop(partition, None)
        mine.since_snapshot -= counted
        if sequence is not None:
            log.info(
                "partition %d: snapshot at sequence %d; its log trimmed below it",
                partition,
                sequence,
                extra={"event": "cluster.snapshot_taken", "partition": partition, "sequence": sequence},
            )

    async def take(self, partition: int) -> int | None:
        """Snapshot the local copy of ``partition`` as applied now and trim its log below it;
        the snapshot's sequence, None if the latest stored one is as recent."""
        latest = await self._store.latest(partition)  # first: it fails fast when NATS does
        if self._shards.applied(partition) <= latest:
            return None
        env = self._shards.shard.env
        belongs = partial(_in_partition, partition, self._shards.partitions)
        applied, rows = await trio.to_thread.run_sync(env.dump_where, belongs, applied_key(partition))
        sequence = 0 if applied is None else int(applied)
        if sequence <= latest:
            return None
        size = await self._store.save(Snapshot(partition, sequence, rows))
        await self._jetstream.purge_up_to(partition, sequence)
        self.statistics["snapshots_taken"] += 1
        self.statistics["snapshot_bytes"] += size
        return sequence

    # -- catching up from them ----------------------------------------------------------------

    async def intact_after(self, partition: int, position: int) -> bool:
        """Whether the log still holds every record of ``partition`` after ``position``."""
        if position == 0:
            return await self._store.latest(partition) == 0
        first = await self._jetstream.first_sequence(partition)
        return 0 < first <= position

    async def restore(self, partition: int, position: int) -> int:
        """Load the latest snapshot into the local copy, replacing the partition's rows there;
        its sequence. Raises ``ClusterError`` if none covers what the log no longer holds."""
        sequence = await self._store.latest(partition)
        snapshot = None if sequence <= position else await self._store.load(partition, sequence)
        if snapshot is None:
            raise ClusterError(
                f"partition {partition}: its log was trimmed past this node's copy (at {position})"
                f" and no newer snapshot could be read (latest {sequence})"
            )
        env = self._shards.shard.env
        belongs = partial(_in_partition, partition, self._shards.partitions)
        meta = {applied_key(partition): b"%d" % sequence}
        await trio.to_thread.run_sync(lambda: env.load(snapshot.rows, replacing=belongs, meta=meta))
        self.statistics["snapshots_loaded"] += 1
        log.info(
            "partition %d: snapshot at sequence %d loaded (%d rows)",
            partition,
            sequence,
            len(snapshot.rows),
            extra={"event": "cluster.snapshot_loaded", "partition": partition, "sequence": sequence},
        )
        return sequence
