"""Alarms: durable per-actor timers, at-least-once, with retries, surviving restarts."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timezone

import httpx
import pytest
import trio

import runtime
from runtime import Actor, AlarmInfo, open_runtime
from runtime.testing import evict, inject_commit_failure, run_in_actor, trigger_alarm

FIRED: list[tuple[str | None, float, AlarmInfo, float | None]] = []


class Alarmed(Actor):
    """Records every delivery: (name, when it ran, info, get_alarm() inside the handler)."""

    failures_left: dict[str, int] = {}

    async def arm(self, when: float) -> None:
        await self.storage.set_alarm(when)

    async def arm_in(self, seconds: float) -> float:
        when = runtime.now() + seconds
        await self.storage.set_alarm(when)
        return when

    async def alarm_at(self) -> float | None:
        return await self.storage.get_alarm()

    async def disarm(self) -> None:
        await self.storage.delete_alarm()

    async def count(self) -> int:
        return await self.storage.get("fired", 0)

    async def alarm(self, info: AlarmInfo) -> None:
        FIRED.append((self.id.name, runtime.now(), info, await self.storage.get_alarm()))
        await self.storage.put("fired", await self.storage.get("fired", 0) + 1)
        plan = await self.storage.get("plan")
        if plan == "rearm":
            await self.storage.set_alarm(runtime.now() + 100)
        elif plan == "wipe":
            await self.storage.delete_all()
        left = self.failures_left.get(self.id.name or "", 0)
        if left:
            self.failures_left[self.id.name or ""] = left - 1
            if plan == "rearm-then-fail":
                await self.storage.set_alarm(runtime.now() + 1000)
            raise RuntimeError(f"alarm failure, {left - 1} left")

    async def set_plan(self, plan: str) -> None:
        await self.storage.put("plan", plan)


@pytest.fixture(autouse=True)
def clean_records():
    FIRED.clear()
    Alarmed.failures_left = {}


def open_alarmed(data_dir, **kwargs):
    return open_runtime(data_dir=data_dir, actors={"ALARMED": Alarmed}, **kwargs)


async def test_alarm_fires_once_at_its_time_and_is_cleared(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("a")
        when = await stub.arm_in(30)
        assert await stub.alarm_at() == when
        await trio.sleep(29)
        assert FIRED == []
        await trio.sleep(2)
        [(name, fired_at, info, inside)] = FIRED
        assert name == "a" and when <= fired_at < when + 0.1
        assert info == AlarmInfo(retry_count=0, is_retry=False)
        assert inside is None  # get_alarm() inside alarm() reads None
        assert await stub.alarm_at() is None
        await trio.sleep(1000)
        assert len(FIRED) == 1
        assert rt.statistics()["alarms_pending"] == 0


async def test_datetime_and_past_alarms(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        ns = rt.namespace("ALARMED")

        async def arm_datetime(actor):
            await actor.storage.set_alarm(datetime.fromtimestamp(runtime.now() + 10, tz=timezone.utc))

        await run_in_actor(ns.get_by_name("dt"), arm_datetime)
        await ns.get_by_name("past").arm(runtime.now() - 3600)
        await trio.sleep(0.01)
        assert [f[0] for f in FIRED] == ["past"]
        await trio.sleep(10)
        assert [f[0] for f in FIRED] == ["past", "dt"]


async def test_set_alarm_replaces_and_delete_cancels(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        ns = rt.namespace("ALARMED")
        moved, cancelled = ns.get_by_name("moved"), ns.get_by_name("cancelled")
        await moved.arm_in(10)
        later = await moved.arm_in(50)
        await cancelled.arm_in(10)
        await cancelled.disarm()
        await trio.sleep(100)
        assert [(f[0], round(f[1] - later, 3)) for f in FIRED] == [("moved", 0.0)]


async def test_alarm_in_a_rolled_back_transaction_changes_nothing(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("txn")
        original = await stub.arm_in(100)

        async def rolled_back(actor):
            async with actor.storage.transaction() as txn:
                await txn.set_alarm(runtime.now() + 5)
                assert await txn.get_alarm() == pytest.approx(runtime.now() + 5)
                txn.rollback()
            with pytest.raises(ZeroDivisionError):
                async with actor.storage.transaction() as txn:
                    await txn.delete_alarm()
                    raise ZeroDivisionError("abandon the transaction")
            return await actor.storage.get_alarm()

        assert await run_in_actor(stub, rolled_back) == original
        await trio.sleep(50)
        assert FIRED == []
        await trio.sleep(51)
        assert len(FIRED) == 1


async def test_alarm_set_inside_alarm_stands(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("r")
        await stub.set_plan("rearm")
        first = await stub.arm_in(1)
        await trio.sleep(2)
        assert await stub.alarm_at() == pytest.approx(first + 100, abs=0.01)
        await trio.sleep(100)
        assert len(FIRED) == 2


async def test_delete_all_inside_alarm_clears_everything(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("w")
        await stub.set_plan("wipe")
        await stub.arm_in(1)
        await trio.sleep(2)
        assert len(FIRED) == 1
        assert await stub.alarm_at() is None and await stub.count() == 0
        assert rt.statistics()["alarms_pending"] == 0


async def test_failing_handler_is_retried_with_exponential_backoff(data_dir, autojump_clock, caplog):
    Alarmed.failures_left = {"f": 3}
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("f")
        due = await stub.arm_in(10)
        await trio.sleep(200)
        assert [f[2] for f in FIRED] == [
            AlarmInfo(0, False),
            AlarmInfo(1, True),
            AlarmInfo(2, True),
            AlarmInfo(3, True),
        ]
        times = [f[1] for f in FIRED]
        assert times[0] == pytest.approx(due, abs=0.01)
        for i, (earlier, later) in enumerate(zip(times, times[1:], strict=False)):
            base = 2.0 * 2**i
            assert base <= later - earlier <= base * 1.25 + 0.01
        assert await stub.alarm_at() is None
        assert await stub.count() == 4  # the failing handlers' writes stay
        assert "retry 1 in" in caplog.text


async def test_alarm_is_dropped_after_six_retries_and_logged(data_dir, autojump_clock, caplog):
    Alarmed.failures_left = {"doomed": 100}
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("doomed")
        with caplog.at_level(logging.ERROR, logger="roost.alarms"):
            await stub.arm_in(1)
            await trio.sleep(1000)
        assert [f[2].retry_count for f in FIRED] == [0, 1, 2, 3, 4, 5, 6]
        assert await stub.alarm_at() is None
        assert "failed after 6 retries" in caplog.text
        assert f"ALARMED:{stub.id.hex}" in caplog.text
        assert rt.statistics()["alarms_dropped"] == 1


async def test_alarm_set_by_a_failing_handler_replaces_the_retry(data_dir, autojump_clock):
    Alarmed.failures_left = {"x": 1}
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("x")
        await stub.set_plan("rearm-then-fail")
        first = await stub.arm_in(1)
        await trio.sleep(500)
        assert len(FIRED) == 1
        assert await stub.alarm_at() == pytest.approx(first + 1000, abs=0.01)
        await trio.sleep(600)
        assert [f[2].retry_count for f in FIRED] == [0, 0]


async def test_alarm_wakes_an_evicted_actor(data_dir, autojump_clock):
    async with open_alarmed(data_dir, idle_timeout=5) as rt:
        stub = rt.namespace("ALARMED").get_by_name("sleeper")
        await stub.arm_in(60)
        await evict(stub)
        await trio.sleep(30)
        assert rt.statistics()["live_actors"] == 0
        await trio.sleep(31)
        assert [f[0] for f in FIRED] == ["sleeper"]


async def test_alarm_is_durable_before_the_caller_sees_it(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("d")
        before = await stub.arm_in(100)
        inject_commit_failure(stub)
        with pytest.raises(runtime.ActorResetError):
            await stub.arm_in(5)
        assert await stub.alarm_at() == before
        await trio.sleep(50)
        assert FIRED == []


async def test_a_failed_clearing_commit_delivers_again(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("again")
        await stub.arm_in(10)
        await trio.sleep(9)
        inject_commit_failure(stub)
        await trio.sleep(2)
        assert len(FIRED) == 1
        await trio.sleep(5)
        # The first delivery's clearing write did not commit: the alarm was delivered again.
        assert [f[2].retry_count for f in FIRED] == [0, 1]
        assert await stub.alarm_at() is None


async def test_one_handler_at_a_time_per_actor(data_dir, autojump_clock):
    running = []

    class Slow(Actor):
        async def arm(self, seconds: float) -> None:
            await self.storage.set_alarm(runtime.now() + seconds)

        async def alarm(self, info: AlarmInfo) -> None:
            running.append("start")
            assert running.count("start") - running.count("end") == 1
            await self.storage.set_alarm(runtime.now())  # due at once, while this one runs
            await trio.sleep(10)
            running.append("end")
            if len(running) >= 6:
                await self.storage.delete_alarm()

    async with open_runtime(data_dir=data_dir, actors={"SLOW": Slow}) as rt:
        await rt.namespace("SLOW").get_by_name("s").arm(1)
        await trio.sleep(100)
    assert running == ["start", "end"] * 3


async def test_ten_thousand_alarms_fire_once_each_in_time_order(data_dir, autojump_clock):
    rng = random.Random(7)
    async with open_alarmed(data_dir) as rt:
        ns = rt.namespace("ALARMED")
        start = runtime.now()
        due = {}
        async with trio.open_nursery() as nursery:
            for i in range(10_000):
                name = f"n{i}"
                # Whole seconds: several alarms share a due time, and so a commit.
                due[name] = start + rng.randrange(10, 1000)
                nursery.start_soon(ns.get_by_name(name).arm, due[name])
        assert rt.statistics()["alarms_pending"] == 10_000
        await trio.sleep(1100)
        assert sorted(f[0] for f in FIRED) == sorted(due)
        fired_at = [f[1] for f in FIRED]
        assert fired_at == sorted(fired_at)
        assert [due[f[0]] for f in FIRED] == sorted(due.values())
        assert all(due[name] <= at < due[name] + 1 for name, at, _, _ in FIRED)
        assert rt.statistics()["alarms_pending"] == 0


async def test_trigger_alarm_runs_it_now(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("t")
        assert await trigger_alarm(stub) is False
        await stub.arm_in(3600)
        assert await trigger_alarm(stub) is True
        assert len(FIRED) == 1 and await stub.alarm_at() is None
        await trio.sleep(4000)
        assert len(FIRED) == 1


async def test_alarms_due_while_down_fire_after_restart(data_dir, autojump_clock):
    async with open_alarmed(data_dir) as rt:
        ns = rt.namespace("ALARMED")
        await ns.get_by_name("soon").arm_in(60)
        await ns.get_by_name("later").arm_in(600)
    await trio.sleep(120)  # the runtime is down: "soon" is overdue
    async with open_alarmed(data_dir) as rt:
        await trio.sleep(0.01)
        assert [f[0] for f in FIRED] == ["soon"]
        await trio.sleep(600)
        assert [f[0] for f in FIRED] == ["soon", "later"]


async def test_alarm_interrupted_by_shutdown_fires_again(data_dir, autojump_clock):
    class Long(Actor):
        async def arm(self) -> None:
            await self.storage.set_alarm(runtime.now() + 1)

        async def alarm(self, info: AlarmInfo) -> None:
            FIRED.append(("long", runtime.now(), info, None))
            await self.storage.put("started", True)
            await trio.sleep(3600)

    async with trio.open_nursery() as nursery:

        async def first_run():
            async with open_runtime(data_dir=data_dir, actors={"LONG": Long}) as rt:
                await rt.namespace("LONG").get_by_name("l").arm()
                await trio.sleep(10)  # the handler is running when the runtime closes

        nursery.start_soon(first_run)
    assert len(FIRED) == 1
    async with open_runtime(data_dir=data_dir, actors={"LONG": Long}):
        await trio.sleep(1)
        assert len(FIRED) == 2


async def test_alarms_survive_a_real_restart(tmp_path):
    """On the real clock, with commits on the writer thread."""
    data_dir = str(tmp_path / "real")
    async with open_alarmed(data_dir) as rt:
        await rt.namespace("ALARMED").get_by_name("real").arm_in(3600)
    async with open_alarmed(data_dir) as rt:
        stub = rt.namespace("ALARMED").get_by_name("real")
        assert await stub.alarm_at() is not None
        await stub.arm(runtime.now() - 1)  # now overdue: fires at once
        with trio.fail_after(10):
            while not FIRED:
                await trio.sleep(0.01)
        assert FIRED[0][0] == "real"
        assert await stub.alarm_at() is None


async def test_an_alarm_carries_the_correlation_id_of_the_event_that_set_it(data_dir, autojump_clock):
    seen = []

    class Traced(Actor):
        async def arm(self) -> None:
            await self.storage.set_alarm(runtime.now() + 60)

        async def alarm(self, info: AlarmInfo) -> None:
            seen.append(self.ctx.correlation_id)

    async with open_runtime(data_dir=data_dir, actors={"T": Traced}) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            await http.post("/rpc/T/a/arm", headers={"x-request-id": "req-alarm-1"})
    async with open_runtime(data_dir=data_dir, actors={"T": Traced}) as rt:
        await rt.namespace("T").get_by_name("b").arm()  # set outside any request
        await trio.sleep(61)
    assert sorted(seen, key=str) == [None, "req-alarm-1"]
