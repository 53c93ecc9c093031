"""Snapshots and trimming the log, against a real 3-node nats-server cluster: a partition's
rows and position stored in ``roost_snapshots``, its log trimmed below them (its last record
kept), a fresh copy restored from the latest snapshot, stale and foreign snapshots ignored."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
import trio

from runtime.cluster.jetstream import ClusterError, NatsUnavailable, open_jetstream
from runtime.cluster.replication import Owned
from runtime.cluster.shards import ClusterShards, applied_key
from runtime.cluster.snapshot_store import Snapshot, SnapshotStore, decode, encode
from runtime.cluster.snapshots import Snapshots
from runtime.durability.committer import Committer
from runtime.durability.env import ActorWrites, Environment
from runtime.durability.partitions import DEFAULT_PARTITIONS, partition_of
from runtime.durability.shards import Shard
from runtime.model import codec
from runtime.model.ids import IdScheme, namespace_key

TIMEOUT = 2.0
SIZE = 1 << 20


def prefixes_in(partition: int, count: int) -> list[bytes]:
    """``count`` actor prefixes of the COUNTERS binding that fall in ``partition``."""
    found = []
    for n in range(100_000):
        prefix = namespace_key("COUNTERS") + IdScheme("COUNTERS").from_name(f"n{n}").raw
        if partition_of(prefix, DEFAULT_PARTITIONS) == partition:
            found.append(prefix)
            if len(found) == count:
                return found
    raise AssertionError("not enough names")


def open_copy(path: Path) -> ClusterShards:
    env = Environment(str(path), map_size_bytes=SIZE * 16, max_map_size_bytes=SIZE * 64)
    return ClusterShards(Shard(0, env, Committer(env)), DEFAULT_PARTITIONS)


def write(shards: ClusterShards, partition: int, values: dict[bytes, int], position: int | None) -> None:
    """Each prefix's key ``n`` set to its value, with the partition's applied position."""
    writes = [
        ActorWrites(prefix, values={b"n": codec.encode(v)}, record={"name": None}, write_record=True)
        for prefix, v in values.items()
    ]
    meta = {} if position is None else {applied_key(partition): b"%d" % position}
    assert shards.shard.env.apply_batch(writes, meta=meta) == []


def read(shards: ClusterShards, prefixes: list[bytes]) -> dict[bytes, int | None]:
    env = shards.shard.env
    return {p: None if (v := env.get(p, b"n")) is None else codec.decode(v) for p in prefixes}


async def append_records(js, partition: int, count: int) -> list[int]:
    sequences, expected = [], 0
    for i in range(count):
        expected = await js.append(partition, b"r%d" % i, expected=expected, msg_id=f"{partition}:1:{i}")
        sequences.append(expected)
    return sequences


@pytest.fixture
def copies(tmp_path: Path):
    opened = []

    def make(name: str) -> ClusterShards:
        shards = open_copy(tmp_path / name)
        opened.append(shards)
        return shards

    yield make
    for shards in opened:
        shards.shard.env.close()


async def _delete_stream(urls: list[str], name: str) -> None:
    nc = await nats.connect(servers=urls)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


def test_a_snapshot_round_trips_and_garbage_is_refused():
    snapshot = Snapshot(5, 42, [(b"kv", b"key", b"value"), (b"actors", b"p", b"")])
    assert decode(encode(snapshot)) == snapshot
    for bad in (b"", b"\xc1", encode(snapshot)[:-3], b"\x81\xa6format\x02"):
        with pytest.raises(ClusterError, match="cannot be read"):
            decode(bad)


async def test_a_snapshot_is_stored_and_the_log_trimmed_below_it_keeping_its_last_record(jetstream_servers, copies):
    mine, other = prefixes_in(5, 3), prefixes_in(6, 1)
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        store = SnapshotStore(js, TIMEOUT)
        owner = copies("owner")
        sequences = await append_records(js, 5, 4)
        write(owner, 5, {p: i + 1 for i, p in enumerate(mine)}, sequences[2])
        write(owner, 6, {other[0]: 99}, None)
        snapshots = Snapshots(store, js, owner, every_records=10)
        assert await snapshots.take(5) == sequences[2]
        assert await store.latest(5) == sequences[2]
        assert await js.first_sequence(5) == sequences[2]  # the snapshot's own record is kept
        assert [s for s, _ in await js.read(5, 0)] == sequences[2:]
        stored = await store.load(5, sequences[2])
        assert stored is not None and {row[1][: len(mine[0])] for row in stored.rows} == set(mine)
        # Nothing applied since: no newer snapshot to take.
        assert await snapshots.take(5) is None
        assert snapshots.statistics["snapshots_taken"] == 1


async def test_a_fresh_copy_is_restored_from_the_latest_snapshot_and_keeps_other_partitions(jetstream_servers, copies):
    mine, other = prefixes_in(5, 3), prefixes_in(6, 1)
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        store = SnapshotStore(js, TIMEOUT)
        owner, fresh = copies("owner"), copies("fresh")
        sequences = await append_records(js, 5, 3)
        write(owner, 5, {p: 7 for p in mine}, sequences[-1])
        await Snapshots(store, js, owner, every_records=10).take(5)
        write(fresh, 5, {mine[0]: 1000}, None)  # a stale row of the partition: replaced
        write(fresh, 6, {other[0]: 5}, None)
        restoring = Snapshots(store, js, fresh, every_records=10)
        assert not await restoring.intact_after(5, 0)
        assert await restoring.restore(5, 0) == sequences[-1]
        assert fresh.applied(5) == sequences[-1]
        assert read(fresh, mine) == dict.fromkeys(mine, 7)
        assert read(fresh, other) == {other[0]: 5}
        assert await restoring.intact_after(5, sequences[-1])


async def test_intact_after_tells_a_trimmed_log_from_a_whole_one(jetstream_servers, copies):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        store = SnapshotStore(js, TIMEOUT)
        owner = copies("owner")
        snapshots = Snapshots(store, js, owner, every_records=10)
        sequences = await append_records(js, 9, 5)
        assert await snapshots.intact_after(9, 0)  # never trimmed: replay from the start
        assert await snapshots.intact_after(9, sequences[1])
        write(owner, 9, {}, sequences[3])
        await snapshots.take(9)
        assert not await snapshots.intact_after(9, 0)
        assert not await snapshots.intact_after(9, sequences[1])  # records after it are gone
        assert await snapshots.intact_after(9, sequences[3])
        assert await snapshots.intact_after(9, sequences[4])
        with pytest.raises(ClusterError, match="trimmed past"):
            await snapshots.restore(9, sequences[4])  # nothing newer than the copy to load


async def test_older_snapshots_are_deleted_and_a_late_older_one_does_not_hide_the_latest(jetstream_servers):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        store = SnapshotStore(js, TIMEOUT)
        await store.save(Snapshot(3, 10, [(b"kv", b"a", b"1")]))
        await store.save(Snapshot(3, 20, [(b"kv", b"a", b"2")]))
        await store.save(Snapshot(4, 5, []))
        assert await store.sequences(3) == [20]
        # A deposed owner finishing its snapshot late: it lands beside the newer one.
        await store.save(Snapshot(3, 15, [(b"kv", b"a", b"old")]))
        assert await store.sequences(3) == [15, 20]
        assert await store.latest(3) == 20
        latest = await store.load(3, 20)
        assert latest is not None and latest.rows == [(b"kv", b"a", b"2")]
        assert await store.load(3, 10) is None
        assert await store.latest(4) == 5 and await store.latest(7) == 0


async def test_the_snapshots_of_an_earlier_stream_of_the_name_are_not_this_ones(jetstream_servers):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        await SnapshotStore(js, TIMEOUT).save(Snapshot(2, 30, []))
    await trio.to_thread.run_sync(asyncio.run, _delete_stream(jetstream_servers, "ROOST"))
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        assert await SnapshotStore(js, TIMEOUT).latest(2) == 0


class _Unreachable:
    """A snapshot store whose NATS does not answer."""

    def __init__(self) -> None:
        self.calls = 0

    async def latest(self, partition: int) -> int:
        self.calls += 1
        raise NatsUnavailable("NATS did not answer within 2 s")


async def test_a_failed_snapshot_waits_before_its_next_try_and_reads_no_rows(copies):
    owner = copies("owner")
    store = _Unreachable()
    snapshots = Snapshots(store, None, owner, every_records=10)
    due = {5: Owned(epoch=1, revision=1, expected=0, deadline=0.0, since_snapshot=50, ready=True)}
    async with trio.open_nursery() as nursery:
        snapshots.start_due(due, nursery)
    assert store.calls == 1 and due[5].since_snapshot == 50  # still due
    async with trio.open_nursery() as nursery:
        snapshots.start_due(due, nursery)  # within RETRY_PAUSE_SECONDS of the failure
    assert store.calls == 1
