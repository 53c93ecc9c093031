"""The partitions' snapshots, kept in JetStream's object store ``roost_snapshots``.

A snapshot of partition P at sequence S holds P's rows in a node's LMDB once P's records up
to stream sequence S were applied, and nothing else: the state the log gives up to S. Its
object is named ``INCARNATION.p.PP.SSSSSSSSSSSSSSSSSSSS``. The sequence is in the name so that two
writers (a deposed owner still finishing one, and the new owner) never overwrite each
other's: the latest snapshot is the one with the highest sequence, whoever wrote it, and any
snapshot is a true state of the log at its sequence. An object appears in the listing only
once its every chunk is stored (nats-py writes its description last). Names begin with the
log's incarnation: the snapshots of a stream deleted and created again are not its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import nats.js.errors

from ..durability.env import Row
from .jetstream import SNAPSHOTS, ClusterError, JetStream

FORMAT = 1
# A snapshot's transfer may take this many calls' limits, plus one more per MiB.
TRANSFER_LIMIT_CALLS = 2


@dataclass(frozen=True, slots=True)
class Snapshot:
    partition: int
    sequence: int
    rows: list[Row]


def object_name(incarnation: str, partition: int, sequence: int) -> str:
    return f"{incarnation}.p.{partition:02d}.{sequence:020d}"


def _parse_name(incarnation: str, name: str) -> tuple[int, int] | None:
    """(partition, sequence) of a snapshot of this log's incarnation, else None."""
    parts = name.split(".")
    if len(parts) != 4 or parts[0] != incarnation or parts[1] != "p" or not (parts[2] + parts[3]).isdigit():
        return None
    return int(parts[2]), int(parts[3])


def encode(snapshot: Snapshot) -> bytes:
    return msgpack.packb(
        {"format": FORMAT, "partition": snapshot.partition, "sequence": snapshot.sequence, "rows": snapshot.rows},
        use_bin_type=True,
    )


def decode(data: bytes) -> Snapshot:
    try:
        found = msgpack.unpackb(data, raw=False, use_list=True)
        if found.get("format") != FORMAT:
            raise ValueError(f"format {found.get('format')!r}, this Roost reads {FORMAT}")
        rows = [(bytes(name), bytes(key), bytes(value)) for name, key, value in found["rows"]]
        return Snapshot(int(found["partition"]), int(found["sequence"]), rows)
    except (ValueError, TypeError, KeyError, AttributeError, msgpack.UnpackException) as exc:
        raise ClusterError(f"a snapshot in {SNAPSHOTS} cannot be read: {exc}") from exc


class SnapshotStore:
    def __init__(self, jetstream: JetStream, timeout_seconds: float) -> None:
        self._jetstream = jetstream
        self._timeout = timeout_seconds

    async def sequences(self, partition: int) -> list[int]:
        """The sequences of the partition's stored snapshots, lowest first."""
        names = await self._jetstream.run(_names)
        found = (_parse_name(self._jetstream.log_incarnation, name) for name in names)
        return sorted(parsed[1] for parsed in found if parsed is not None and parsed[0] == partition)

    async def latest(self, partition: int) -> int:
        """The sequence of the partition's latest snapshot; 0 if it has none."""
        sequences = await self.sequences(partition)
        return sequences[-1] if sequences else 0

    async def load(self, partition: int, sequence: int) -> Snapshot | None:
        """The snapshot, or None if it is gone (a newer one replaced it meanwhile)."""
        name = self._name(partition, sequence)
        size = await self._jetstream.run(_size, name)
        data = None if size is None else await self._jetstream.run(_get, name, limit=self._limit(size))
        if data is None:
            return None
        snapshot = decode(data)
        if (snapshot.partition, snapshot.sequence) != (partition, sequence):
            raise ClusterError(f"{name} holds partition {snapshot.partition} at {snapshot.sequence}")
        return snapshot

    async def save(self, snapshot: Snapshot) -> int:
        """Store ``snapshot``, then delete the partition's older ones; its size in bytes."""
        data = encode(snapshot)
        name = self._name(snapshot.partition, snapshot.sequence)
        await self._jetstream.run(_put, name, data, limit=self._limit(len(data)))
        for older in await self.sequences(snapshot.partition):
            if older < snapshot.sequence:
                await self._jetstream.run(_delete, self._name(snapshot.partition, older))
        return len(data)

    def _name(self, partition: int, sequence: int) -> str:
        return object_name(self._jetstream.log_incarnation, partition, sequence)

    def _limit(self, size: int) -> float:
        return self._timeout * (TRANSFER_LIMIT_CALLS + size // (1 << 20))


# --- on the NATS thread ---------------------------------------------------------------------


async def _names(context: Any) -> list[str]:
    store = await context.object_store(SNAPSHOTS)
    try:
        found = await store.list(ignore_deletes=True)
    except nats.js.errors.NotFoundError:  # nats-py's answer for an empty store
        return []
    return [info.name for info in found if not info.deleted]


async def _size(context: Any, name: str) -> int | None:
    store = await context.object_store(SNAPSHOTS)
    try:
        return (await store.get_info(name)).size
    except nats.js.errors.ObjectNotFoundError:
        return None


async def _get(context: Any, name: str) -> bytes | None:
    store = await context.object_store(SNAPSHOTS)
    try:
        return (await store.get(name)).data
    except nats.js.errors.ObjectNotFoundError:
        return None


async def _put(context: Any, name: str, data: bytes) -> None:
    store = await context.object_store(SNAPSHOTS)
    await store.put(name, data)


async def _delete(context: Any, name: str) -> None:
    store = await context.object_store(SNAPSHOTS)
    try:
        await store.delete(name)
    except nats.js.errors.ObjectNotFoundError:
        pass  # another node deleted it first
