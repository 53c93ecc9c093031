"""Actor lifecycle and the input gate: on_start, block_concurrency_while, wait_until, abort,
ordering, overload and eviction (API.md section 1, DESIGN.md "Semantics we emulate")."""

from __future__ import annotations

import logging

import pytest
import trio

from runtime import Actor, ActorResetError, OverloadedError, open_runtime
from runtime.testing import evict, run_in_actor


class Lifecycle(Actor):
    starts = 0
    fail_next_start = False

    async def on_start(self) -> None:
        type(self).starts += 1
        self.log: list = []
        await trio.sleep(1)  # real I/O inside on_start: events must still wait for it
        if type(self).fail_next_start:
            type(self).fail_next_start = False
            raise RuntimeError("cannot start")
        self.ready = True

    async def record(self, item):
        self.log.append(item)
        return self.ready

    async def history(self):
        return self.log

    async def hold(self, seconds: float, result: str):
        async def section():
            await trio.sleep(seconds)
            self.log.append(result)
            return result

        return await self.ctx.block_concurrency_while(section)

    async def hold_and_fail(self):
        async def section():
            raise ValueError("inside the section")

        return await self.ctx.block_concurrency_while(section)

    async def later(self, seconds: float):
        async def work():
            await trio.sleep(seconds)
            await self.storage.put("later", "done")

        self.ctx.wait_until(work())
        return "returned"

    async def later_fails(self):
        async def work():
            raise LookupError("background failure")

        self.ctx.wait_until(work())

    async def stop(self, reason: str):
        self.ctx.abort(reason)
        self.log.append("after abort")  # never runs

    async def slow(self, seconds: float):
        await trio.sleep(seconds)
        return "slow done"


@pytest.fixture(autouse=True)
def reset_counters():
    Lifecycle.starts = 0
    Lifecycle.fail_next_start = False


def open_lifecycle(data_dir, **kwargs):
    return open_runtime(data_dir=data_dir, actors={"LIFE": Lifecycle}, **kwargs)


async def test_on_start_runs_once_before_any_event(data_dir, autojump_clock):
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(stub.record, i)
        assert Lifecycle.starts == 1
        assert sorted(await stub.history()) == [0, 1, 2, 3, 4]


async def test_events_queued_behind_a_closed_gate_keep_their_order(data_dir, autojump_clock):
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        await stub.record("first")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stub.hold, 5, "held")
            await trio.sleep(1)  # the section is running, the gate is closed
            for i in range(20):
                nursery.start_soon(stub.record, i)
                await trio.sleep(0.01)  # each call is made before the next one
        assert await stub.history() == ["first", "held", *range(20)]


async def test_on_start_failure_resets_and_the_next_event_starts_again(data_dir, autojump_clock):
    Lifecycle.fail_next_start = True
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        with pytest.raises(ActorResetError, match="on_start raised RuntimeError: cannot start") as info:
            await stub.record(1)
        assert info.value.remote is True
        assert await stub.record(2) is True
        assert Lifecycle.starts == 2
        assert await stub.history() == [2]


async def test_block_concurrency_while_holds_other_events(data_dir, autojump_clock):
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        await stub.record("warm")
        order = []

        async def held():
            order.append(await stub.hold(10, "held"))

        async def other():
            await trio.sleep(1)
            await stub.record("other")
            order.append("other")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(held)
            nursery.start_soon(other)
        assert order == ["held", "other"]
        assert await stub.history() == ["warm", "held", "other"]


async def test_block_concurrency_while_past_30_seconds_resets_the_actor(data_dir, autojump_clock):
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        await stub.record("state")
        waiting = []

        async def queued():
            with pytest.raises(ActorResetError):
                await stub.record("queued")
            waiting.append("failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(queued)
            with pytest.raises(ActorResetError, match="30"):
                await stub.hold(31, "too slow")
        assert waiting == ["failed"]
        assert await stub.history() == []  # a fresh instance
        assert Lifecycle.starts == 2


async def test_block_concurrency_while_error_propagates_and_resets(data_dir, autojump_clock):
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        await stub.record("state")
        with pytest.raises(ValueError, match="inside the section"):
            await stub.hold_and_fail()
        assert await stub.history() == []
        assert Lifecycle.starts == 2


async def test_wait_until_outlives_the_event_and_delays_eviction(data_dir, autojump_clock):
    async with open_lifecycle(data_dir, idle_timeout=5) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        assert await stub.later(20) == "returned"
        await trio.sleep(10)  # past idle_timeout, but the background work still runs
        assert rt.statistics()["live_actors"] == 1
        await trio.sleep(11)

        async def read(actor):
            return await actor.storage.get("later")

        assert await run_in_actor(stub, read) == "done"
        assert Lifecycle.starts == 1


async def test_wait_until_failure_is_logged_with_the_actor(data_dir, autojump_clock, caplog):
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        with caplog.at_level(logging.ERROR, logger="roost.actor"):
            await stub.later_fails()
            await trio.sleep(1)
        assert "background failure" in caplog.text
        assert stub.id.hex in caplog.text
        assert await stub.record("still serving") is True


async def test_wait_until_takes_only_awaitables(data_dir, autojump_clock):
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")

        async def misuse(actor):
            actor.ctx.wait_until(42)

        with pytest.raises(TypeError, match="awaitable"):
            await run_in_actor(stub, misuse)


async def test_abort_resets_now_and_pending_callers_fail(data_dir, autojump_clock):
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        await stub.record("before")
        outcomes = []

        async def in_flight():
            try:
                await stub.slow(10)
                outcomes.append("delivered")
            except ActorResetError:
                outcomes.append("reset")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_flight)
            await trio.sleep(1)
            with pytest.raises(ActorResetError, match="maintenance") as info:
                await stub.stop("maintenance")
            assert info.value.remote is True
        assert outcomes == ["reset"]
        assert await stub.history() == []
        assert Lifecycle.starts == 2


async def test_overload_past_max_inbox(data_dir, autojump_clock):
    async with open_lifecycle(data_dir, max_inbox=5) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        await stub.record("warm")
        refused = []

        async def call(i):
            try:
                await stub.slow(10)
            except OverloadedError as exc:
                refused.append(exc)

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(call, i)
                await trio.sleep(0.01)
        assert len(refused) == 3
        assert all(exc.remote is True for exc in refused)
        assert "limit is 5" in str(refused[0])
        assert await stub.record("after") is True


async def test_idle_instances_are_evicted_and_busy_ones_are_not(data_dir, autojump_clock):
    async with open_lifecycle(data_dir, idle_timeout=30) as rt:
        ns = rt.namespace("LIFE")
        idle, busy = ns.get_by_name("idle"), ns.get_by_name("busy")
        await idle.record("x")
        for _ in range(10):
            await busy.record("tick")
            await trio.sleep(10)
        # idle has been idle for 100 s; busy was used every 10 s
        assert rt.statistics()["live_actors"] == 1
        assert await busy.history() == ["tick"] * 10
        assert await idle.history() == []  # rebuilt: in-memory state is gone
        assert Lifecycle.starts == 3


async def test_evict_keeps_durable_state(data_dir, autojump_clock):
    class Keeper(Actor):
        async def put(self, value):
            await self.storage.put("v", value)

        async def get(self):
            return await self.storage.get("v")

    async with open_runtime(data_dir=data_dir, actors={"K": Keeper}, idle_timeout=1) as rt:
        stub = rt.namespace("K").get_by_name("k")
        await stub.put("kept")
        await evict(stub)
        assert rt.statistics()["live_actors"] == 0
        assert await stub.get() == "kept"
        await trio.sleep(5)
        assert rt.statistics()["live_actors"] == 0
        assert await stub.get() == "kept"


async def test_actor_to_actor_calls_through_env(data_dir):
    class Caller(Actor):
        async def relay(self, name: str, by: int):
            await self.storage.put("relayed", by)
            return await self.env.COUNTERS.get_by_name(name).increment(by)

    class Counter(Actor):
        async def increment(self, by: int) -> int:
            n = await self.storage.get("n", 0) + by
            await self.storage.put("n", n)
            return n

    async with open_runtime(data_dir=data_dir, actors={"CALLERS": Caller, "COUNTERS": Counter}) as rt:
        caller = rt.namespace("CALLERS").get_by_name("c")
        assert await caller.relay("x", 2) == 2
        assert await caller.relay("x", 3) == 5


async def test_a_wait_until_task_ended_by_its_actors_reset_is_a_warning(data_dir, autojump_clock, caplog):
    async with open_lifecycle(data_dir) as rt:
        stub = rt.namespace("LIFE").get_by_name("a")
        await stub.later(5)  # in the background: sleeps 5 s, then writes
        with pytest.raises(ActorResetError):
            await stub.stop("going away")
        await trio.sleep(6)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    [ended] = [r for r in caplog.records if "ended by its actor's reset" in r.getMessage()]
    assert ended.levelno == logging.WARNING and "going away" in ended.getMessage()
