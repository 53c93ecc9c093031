"""A cluster's log rebuilds what its owner applied: the records a group commit appends
(``runtime.cluster.records``), replayed into an empty environment, give the same LMDB
contents as the commits themselves (values, deletes, clears, actor records, alarms), and a
partition's applied position lands in the same transaction as its writes. No NATS here: a
replicator that keeps the records stands in for the stream (tests/cluster uses the real one).
"""

from __future__ import annotations

from runtime import Actor, open_runtime
from runtime.cluster import records
from runtime.cluster.shards import applied_key
from runtime.durability.replicated import Replicated
from runtime.durability.env import ActorWrites, Environment
from runtime.durability.partitions import DEFAULT_PARTITIONS, partition_of
from runtime.durability.shards import Shards


class Notes(Actor):
    async def write(self, key: str, value: object) -> None:
        await self.storage.put(key, value)

    async def remove(self, key: str) -> None:
        await self.storage.delete(key)

    async def wipe(self) -> None:
        await self.storage.delete_all()

    async def remind(self, at: float) -> None:
        await self.storage.set_alarm(at)

    async def alarm(self, info: object) -> None:
        pass


class KeepingReplicator:
    """Accepts every commit, keeping each partition's records as the log would."""

    def __init__(self) -> None:
        self.log: list[bytes] = []

    async def replicate(self, work: list[ActorWrites]) -> Replicated:
        by_partition: dict[int, list[ActorWrites]] = {}
        for writes in work:
            by_partition.setdefault(partition_of(writes.prefix, DEFAULT_PARTITIONS), []).append(writes)
        meta = {}
        for partition, part in by_partition.items():
            for payload, _ in records.commits(partition, 1, "n1", part):
                self.log.append(payload)
                meta[applied_key(partition)] = b"%d" % len(self.log)
        return Replicated(meta=meta)

    def not_applied(self, work: list[ActorWrites]) -> None:
        raise AssertionError(f"{len(work)} replicated writes were not applied")


async def test_a_replayed_log_rebuilds_the_same_storage(tmp_path):
    replicator = KeepingReplicator()
    async with open_runtime(data_dir=tmp_path / "owner", actors={"NOTES": Notes}) as rt:
        shards: Shards = rt._shards
        for shard in shards:
            shard.committer.replicator = replicator
        notes = rt.namespace("NOTES")
        for n in range(20):
            await notes.get_by_name(f"n{n}").write("a", {"n": n, "tags": ["x", n]})
            await notes.get_by_name(f"n{n}").write("b", b"\x00" * (n * 1000))
        await notes.get_by_name("n1").remove("a")
        await notes.get_by_name("n2").wipe()
        await notes.get_by_name("n3").remind(4_000_000_000.0)
        await notes.get_by_name("n3").remind(4_000_000_100.0)
        owner_rows = sorted(next(iter(shards)).env.dump())
    assert replicator.log

    replica = Environment(str(tmp_path / "replica"), map_size_bytes=1 << 26, max_map_size_bytes=1 << 26)
    try:
        for sequence, payload in enumerate(replicator.log, start=1):
            record = records.decode(payload)
            assert record.kind == "commit" and record.epoch == 1 and record.node == "n1"
            assert replica.apply_batch(record.writes, meta={applied_key(record.partition): b"%d" % sequence}) == []
        assert sorted(replica.dump()) == owner_rows
        last = records.decode(replicator.log[-1])
        assert replica.get_meta(applied_key(last.partition)) == b"%d" % len(replicator.log)
    finally:
        replica.close()


def test_a_large_commit_is_cut_into_records_under_the_limit_without_splitting_an_actor():
    work = [ActorWrites(prefix=b"p" * 40 + bytes([i]), values={b"k": b"v" * 200_000}) for i in range(12)]
    cut = records.commits(7, 3, "n2", work)
    assert len(cut) > 1
    assert [w for _, part in cut for w in part] == work
    for payload, part in cut:
        assert len(payload) <= records.MAX_RECORD_BYTES or len(part) == 1
        assert [w.prefix for w in records.decode(payload).writes] == [w.prefix for w in part]


def test_a_fence_record_names_its_epoch_and_carries_no_writes():
    record = records.decode(records.fence(5, 9, "n3"))
    assert (record.kind, record.partition, record.epoch, record.node, record.writes) == ("fence", 5, 9, "n3", [])
