"""Output gate, group commit, failed commits and restarts (API.md section 3, DESIGN.md)."""

from __future__ import annotations

import sys

import pytest
import trio

from runtime import Actor, ActorResetError, StorageError, open_runtime
from runtime.testing import inject_commit_failure, run_in_actor


class Counter(Actor):
    async def increment(self, by: int = 1) -> int:
        n = await self.storage.get("n", 0) + by
        await self.storage.put("n", n)
        return n

    async def value(self) -> int:
        return await self.storage.get("n", 0)

    async def write_then_call(self, other: str) -> int:
        await self.storage.put("n", 1000)
        return await self.env.COUNTERS.get_by_name(other).increment()

    async def fill(self, count: int, size: int) -> None:
        for i in range(count):
            await self.storage.put(f"blob{i}", b"x" * size)


def open_counters(data_dir, **kwargs):
    return open_runtime(data_dir=data_dir, actors={"COUNTERS": Counter}, **kwargs)


async def test_result_is_released_only_after_its_write_is_committed(data_dir):
    async with open_counters(data_dir) as rt:
        stub = rt.namespace("COUNTERS").get_by_name("a")
        before = rt.statistics()["committed_writes"]
        assert await stub.increment() == 1
        assert rt.statistics()["committed_writes"] == before + 1


async def test_writes_of_concurrent_actors_share_commits(data_dir):
    async with open_counters(data_dir) as rt:
        ns = rt.namespace("COUNTERS")
        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(ns.get_by_name(f"c{i}").increment)
        stats = rt.statistics()
        assert stats["committed_actors"] >= 200
        assert stats["commits"] < 200


async def test_callers_that_keep_writing_lose_nothing_while_commits_overlap_their_work(data_dir):
    # With the real clock a commit syncs on the writer thread while the next batch fills.
    acknowledged = [0] * 50
    async with open_counters(data_dir) as rt:
        ns = rt.namespace("COUNTERS")
        stubs = [ns.get_by_name(f"c{i}") for i in range(50)]

        async def caller(c: int) -> None:
            for k in range(40):
                i = (c + k * 16) % 50
                await stubs[i].increment()
                acknowledged[i] += 1

        async with trio.open_nursery() as nursery:
            for c in range(16):
                nursery.start_soon(caller, c)
        stats = rt.statistics()
        assert stats["committed_writes"] >= 640
        assert stats["commits"] < 640
    async with open_counters(data_dir) as rt:
        ns = rt.namespace("COUNTERS")
        assert [await ns.get_by_name(f"c{i}").value() for i in range(50)] == acknowledged


async def test_the_switch_interval_comes_back_when_the_last_of_several_runtimes_closes(tmp_path):
    # With the real clock a runtime lowers Python's switch interval while it is open.
    before = sys.getswitchinterval()
    first_open, second_open, first_may_close, first_closed = (trio.Event() for _ in range(4))

    async def first() -> None:
        async with open_counters(str(tmp_path / "first")):
            first_open.set()
            await first_may_close.wait()
        first_closed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        await first_open.wait()
        async with open_counters(str(tmp_path / "second")):
            lowered = sys.getswitchinterval()
            first_may_close.set()
            await first_closed.wait()
            # The first runtime closed while the second is open: still lowered.
            assert sys.getswitchinterval() == lowered < before
    assert sys.getswitchinterval() == before


def test_a_part_that_fails_while_writing_together_is_left_out_alone(data_dir):
    from runtime.durability.env import ActorWrites, Environment

    env = Environment(data_dir, map_size_bytes=1 << 24, max_map_size_bytes=1 << 24)
    try:
        good = ActorWrites(b"g" * 40, values={b"n": b"1"})
        # No actor has a prefix this long; LMDB refuses the key in the commit.
        bad = ActorWrites(b"b" * 600, values={b"n": b"1"})
        also_good = ActorWrites(b"h" * 40, values={b"n": b"2"})
        failed = env.apply_batch([good, bad, also_good])
        assert [writes for writes, _ in failed] == [bad]
        assert env.get(b"g" * 40, b"n") == b"1"
        assert env.get(b"h" * 40, b"n") == b"2"
    finally:
        env.close()


def test_with_a_log_position_a_part_that_fails_fails_the_whole_commit(data_dir):
    """A cluster's commit carries its log position: written only with every actor's part,
    so the local copy is always the log up to that position."""
    from runtime.durability.env import ActorWrites, Environment

    env = Environment(data_dir, map_size_bytes=1 << 24, max_map_size_bytes=1 << 24)
    try:
        good = ActorWrites(b"g" * 40, values={b"n": b"1"})
        bad = ActorWrites(b"b" * 600, values={b"n": b"1"})  # LMDB refuses the key
        with pytest.raises(StorageError, match="none of the commit was"):
            env.apply_batch([good, bad], meta={b"cluster/applied/07": b"42"})
        assert env.get(b"g" * 40, b"n") is None
        assert env.get_meta(b"cluster/applied/07") is None
        assert env.apply_batch([good], meta={b"cluster/applied/07": b"42"}) == []
        assert env.get_meta(b"cluster/applied/07") == b"42"
    finally:
        env.close()


async def test_a_failed_commit_resets_only_its_actor(data_dir):
    async with open_counters(data_dir) as rt:
        ns = rt.namespace("COUNTERS")
        doomed, healthy = ns.get_by_name("doomed"), ns.get_by_name("healthy")
        await doomed.increment()
        inject_commit_failure(doomed)
        outcomes = {}

        async def call(name, stub):
            try:
                outcomes[name] = await stub.increment(10)
            except ActorResetError as exc:
                outcomes[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "doomed", doomed)
            nursery.start_soon(call, "healthy", healthy)
        assert isinstance(outcomes["doomed"], ActorResetError)
        assert outcomes["doomed"].remote is True
        assert "commit failed" in str(outcomes["doomed"])
        assert outcomes["healthy"] == 10
        # Nothing of the failed write is visible; both actors go on serving.
        assert await doomed.value() == 1
        assert await doomed.increment() == 2
        assert await healthy.value() == 10
    async with open_counters(data_dir) as rt:
        assert await rt.namespace("COUNTERS").get_by_name("doomed").value() == 2


async def test_a_failed_group_commit_resets_every_actor_in_it(data_dir, autojump_clock):
    # Under MockClock the committer takes every write of a scheduling round in one commit, so
    # all five writes are in the failing one.
    async with open_counters(data_dir) as rt:
        ns = rt.namespace("COUNTERS")
        stubs = [ns.get_by_name(f"c{i}") for i in range(5)]
        for stub in stubs:
            await stub.increment()
        inject_commit_failure(ns)
        failures = []

        async def call(stub):
            try:
                await stub.increment(100)
            except ActorResetError:
                failures.append(stub)

        async with trio.open_nursery() as nursery:
            for stub in stubs:
                nursery.start_soon(call, stub)
        assert len(failures) == 5
        assert rt.statistics()["failed_commits"] == 1
        assert [await stub.value() for stub in stubs] == [1] * 5
        assert await stubs[0].increment() == 2


async def test_an_outgoing_call_waits_for_the_callers_writes(data_dir):
    async with open_counters(data_dir) as rt:
        ns = rt.namespace("COUNTERS")
        sender, receiver = ns.get_by_name("sender"), ns.get_by_name("receiver")
        await sender.increment()
        inject_commit_failure(sender)
        with pytest.raises(ActorResetError):
            await sender.write_then_call("receiver")
        # The sender's write never became durable, so its message was never delivered.
        assert await receiver.value() == 0
        assert await sender.value() == 1


async def test_full_map_fails_the_commit_and_the_runtime_keeps_serving(data_dir):
    size = 4 * 1024 * 1024
    async with open_counters(data_dir, map_size=size, max_map_size=size) as rt:
        ns = rt.namespace("COUNTERS")
        small = ns.get_by_name("small")
        await small.increment()
        with pytest.raises(ActorResetError, match="map is full"):
            await ns.get_by_name("big").fill(100, 100_000)
        assert await small.increment() == 2
        assert await ns.get_by_name("big").value() == 0


async def test_map_grows_up_to_its_maximum(data_dir):
    async with open_counters(data_dir, map_size=1024 * 1024, max_map_size=64 * 1024 * 1024) as rt:
        stub = rt.namespace("COUNTERS").get_by_name("big")
        await stub.fill(40, 100_000)

        async def count(actor):
            return len(await actor.storage.list(prefix="blob"))

        assert await run_in_actor(stub, count) == 40


async def test_closing_flushes_pending_writes(data_dir):
    class Background(Actor):
        async def start(self):
            async def work():
                await trio.sleep(0.01)
                await self.storage.put("done", True)

            self.ctx.wait_until(work())

    async with open_runtime(data_dir=data_dir, actors={"B": Background}) as rt:
        stub = rt.namespace("B").get_by_name("b")
        await stub.start()
        await trio.sleep(0.05)
    async with open_runtime(data_dir=data_dir, actors={"B": Background}) as rt:
        stub = rt.namespace("B").get_by_name("b")

        async def read(actor):
            return await actor.storage.get("done")

        assert await run_in_actor(stub, read) is True


async def test_reopen_sees_every_acknowledged_write(data_dir):
    async with open_counters(data_dir) as rt:
        ns = rt.namespace("COUNTERS")
        async with trio.open_nursery() as nursery:
            for i in range(50):
                for _ in range(3):
                    nursery.start_soon(ns.get_by_name(f"c{i}").increment)
    async with open_counters(data_dir) as rt:
        ns = rt.namespace("COUNTERS")
        assert [await ns.get_by_name(f"c{i}").value() for i in range(50)] == [3] * 50


async def test_calls_after_close_are_refused(data_dir):
    async with open_counters(data_dir) as rt:
        stub = rt.namespace("COUNTERS").get_by_name("late")
    with pytest.raises(ActorResetError, match="shut down"):
        await stub.increment()


async def test_an_error_in_the_runtime_block_propagates_as_raised(data_dir):
    with pytest.raises(LookupError, match="from the block"):
        async with open_counters(data_dir) as rt:
            await rt.namespace("COUNTERS").get_by_name("a").increment()
            raise LookupError("from the block")
    async with open_counters(data_dir) as rt:
        assert await rt.namespace("COUNTERS").get_by_name("a").value() == 1
