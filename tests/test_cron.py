"""Cron triggers in virtual time: ``scheduled(event)`` at the right slots with the right
``scheduled_time``, across restarts (no slot twice, missed slots once), retried when it
raises, and following edits of the config."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone

import httpx
import trio

import runtime
from runtime import Actor, open_runtime
from runtime.testing import list_actor_ids

MINUTE = 60.0


class Ticker(Actor):
    """Keeps every event it got: (cron, scheduled_time in ms, when it ran, correlation id)."""

    failures: dict[int, int] = {}  # scheduled_time -> how many runs of it raise
    runs_everywhere: list[tuple[str | None, str, int, float]] = []  # every attempt, in memory

    async def scheduled(self, event) -> None:
        Ticker.runs_everywhere.append((self.id.name, event.cron, event.scheduled_time, runtime.now()))
        if Ticker.failures.get(event.scheduled_time, 0) > 0:
            Ticker.failures[event.scheduled_time] -= 1
            raise RuntimeError(f"slot {event.scheduled_time} fails")
        runs = await self.storage.get("runs", [])
        await self.storage.put("runs", [*runs, [event.cron, event.scheduled_time, self.ctx.correlation_id]])

    async def runs(self) -> list[list]:
        return await self.storage.get("runs", [])


def trigger(cron: str, name: str = "tick") -> dict:
    return {"cron": cron, "binding": "TICKS", "name": name}


def open_ticks(data_dir: str, *crons: str):
    return open_runtime(data_dir=data_dir, actors={"TICKS": Ticker}, triggers=[trigger(c) for c in crons])


def slots_between(start: float, end: float, every: float) -> list[int]:
    """The ms of every multiple of ``every`` seconds in (start, end]."""
    first = math.floor(start / every) + 1
    return [round(k * every * 1000) for k in range(first, math.floor(end / every) + 1)]


def setup_function() -> None:
    Ticker.failures = {}
    Ticker.runs_everywhere = []


async def sleep_past_first_slot(every: float) -> None:
    """Until a second after the first slot from now of a trigger every ``every`` seconds."""
    await trio.sleep(slots_between(runtime.now(), runtime.now() + every, every)[0] / 1000 + 1 - runtime.now())


async def runs_of(rt, name: str = "tick") -> list[list]:
    return await rt.namespace("TICKS").get_by_name(name).runs()


async def test_fires_at_each_slot_with_its_scheduled_time(data_dir, autojump_clock):
    async with open_ticks(data_dir, "*/5 * * * *") as rt:
        start = runtime.now()
        await trio.sleep(31 * MINUTE)
        runs = await runs_of(rt)
        end = runtime.now()
    expected = slots_between(start, end, 5 * MINUTE)
    assert len(expected) >= 6
    assert [run[1] for run in runs] == expected
    assert {run[0] for run in runs} == {"*/5 * * * *"}
    # Each ran at its slot, not before, and each with a correlation id of its own.
    for _, cron, scheduled_ms, ran_at in Ticker.runs_everywhere:
        assert scheduled_ms / 1000 <= ran_at < scheduled_ms / 1000 + 1
    assert len({run[2] for run in runs}) == len(runs) and None not in {run[2] for run in runs}


async def test_weekdays_count_from_sunday_as_cloudflare_does(data_dir, autojump_clock):
    """``0 17 * * 1`` is Sunday 5 PM UTC on Cloudflare; ``friL`` the last Friday of a month."""
    async with open_ticks(data_dir, "0 17 * * 1", "0 18 * * friL") as rt:
        await trio.sleep(40 * 24 * 60 * MINUTE)
        runs = await runs_of(rt)

    def times(cron: str) -> list[datetime]:
        return [datetime.fromtimestamp(r[1] / 1000, timezone.utc) for r in runs if r[0] == cron]

    sundays = times("0 17 * * 1")
    assert len(sundays) >= 5
    assert all((t.strftime("%a"), t.hour, t.minute) == ("Sun", 17, 0) for t in sundays)
    fridays = times("0 18 * * friL")
    assert fridays and all((t.strftime("%a"), t.hour) == ("Fri", 18) for t in fridays)
    for t in fridays:  # the last Friday: a week later is another month
        assert datetime.fromordinal(t.toordinal() + 7).month != t.month


async def test_a_restart_runs_no_slot_twice_and_missed_slots_once(data_dir, autojump_clock):
    async with open_ticks(data_dir, "*/5 * * * *") as rt:
        start = runtime.now()
        await trio.sleep(11 * MINUTE)
        before = await runs_of(rt)
        closed_at = runtime.now()
    assert len(before) >= 2
    await trio.sleep(23 * MINUTE)  # the server is down over four slots
    async with open_ticks(data_dir, "*/5 * * * *") as rt:
        reopened_at = runtime.now()
        await trio.sleep(1)
        caught_up = await runs_of(rt)
        await trio.sleep(10 * MINUTE)
        after = await runs_of(rt)
        end = runtime.now()
    missed = slots_between(closed_at, reopened_at, 5 * MINUTE)
    assert len(missed) >= 4
    # Right after the start: the latest missed slot, once.
    assert [run[1] for run in caught_up] == [*[run[1] for run in before], missed[-1]]
    # Then the slots that follow, as usual; no slot ran twice.
    later = slots_between(reopened_at, end, 5 * MINUTE)
    assert [run[1] for run in after] == [*[run[1] for run in before], missed[-1], *later]
    assert len({run[1] for run in after}) == len(after)
    assert slots_between(start, closed_at, 5 * MINUTE) == [run[1] for run in before]


async def test_a_clean_restart_between_slots_changes_nothing(data_dir, autojump_clock):
    async with open_ticks(data_dir, "*/5 * * * *") as rt:
        start = runtime.now()
        await trio.sleep(6 * MINUTE)
    async with open_ticks(data_dir, "*/5 * * * *") as rt:
        await trio.sleep(10 * MINUTE)
        runs = await runs_of(rt)
        end = runtime.now()
    assert [run[1] for run in runs] == slots_between(start, end, 5 * MINUTE)


async def test_a_raising_handler_is_retried_for_the_same_slot(data_dir, autojump_clock):
    async with open_ticks(data_dir, "*/5 * * * *") as rt:
        first = slots_between(runtime.now(), runtime.now() + 5 * MINUTE, 5 * MINUTE)[0]
        Ticker.failures[first] = 2
        await trio.sleep(11 * MINUTE)
        runs = await runs_of(rt)
    attempts = [(t, ran_at) for _, _, t, ran_at in Ticker.runs_everywhere if t == first]
    assert len(attempts) == 3
    # As alarms are retried: after 2 s, then 4 s more, each plus up to 25 % jitter.
    gaps = [attempts[i + 1][1] - attempts[i][1] for i in range(2)]
    assert 2 <= gaps[0] <= 2.5 + 0.1 and 4 <= gaps[1] <= 5 + 0.1
    assert [run[1] for run in runs] == [first, first + 300_000, first + 600_000][: len(runs)]
    assert len(runs) >= 2


async def test_a_slot_failing_past_the_last_retry_is_given_up_and_the_next_runs(
    data_dir, autojump_clock, caplog
):
    caplog.set_level(logging.INFO, logger="roost")
    async with open_ticks(data_dir, "0 * * * *") as rt:
        first = slots_between(runtime.now(), runtime.now() + 60 * MINUTE, 60 * MINUTE)[0]
        Ticker.failures[first] = 1000
        await trio.sleep(first / 1000 + 121 * MINUTE - runtime.now())
        runs = await runs_of(rt)
    attempts = [t for _, _, t, _ in Ticker.runs_everywhere if t == first]
    assert len(attempts) == 7  # the run and the alarms' 6 retries
    assert [run[1] for run in runs] == [first + 3_600_000, first + 7_200_000]
    assert any("given up" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


async def test_a_later_slot_due_while_retrying_replaces_the_failing_one(data_dir, autojump_clock):
    async with open_ticks(data_dir, "* * * * *") as rt:
        first = slots_between(runtime.now(), runtime.now() + MINUTE, MINUTE)[0]
        Ticker.failures[first] = 1000
        await trio.sleep(5 * MINUTE)
        runs = await runs_of(rt)
    tried = [t for _, _, t, _ in Ticker.runs_everywhere]
    # Retries at about 2, 6, 14, 30 s; at the next one (62 s or later) the next slot is due.
    assert tried.count(first) == 5
    assert runs and runs[0][1] == first + 60_000
    assert [run[1] for run in runs] == sorted({run[1] for run in runs})


async def test_a_removed_trigger_never_runs_again_and_retires(data_dir, autojump_clock):
    async with open_ticks(data_dir, "*/5 * * * *") as rt:
        await sleep_past_first_slot(5 * MINUTE)
        assert len(await runs_of(rt)) == 1
        assert len(await list_actor_ids(rt.namespace("__CRON"))) == 1
    async with open_ticks(data_dir) as rt:
        await trio.sleep(20 * MINUTE)
        assert len(await runs_of(rt)) == 1
        # Its cron actor retired at the slot it was waiting for: nothing of it is left.
        assert await list_actor_ids(rt.namespace("__CRON")) == []


async def test_an_edited_expression_is_a_new_trigger_from_its_next_slot(data_dir, autojump_clock):
    async with open_ticks(data_dir, "*/5 * * * *") as rt:
        await sleep_past_first_slot(5 * MINUTE)
        (old,) = await runs_of(rt)
    async with open_ticks(data_dir, "*/10 * * * *") as rt:
        edited_at = runtime.now()
        await trio.sleep(31 * MINUTE)
        runs = await runs_of(rt)
        end = runtime.now()
        assert len(await list_actor_ids(rt.namespace("__CRON"))) == 1
    assert runs[0] == old
    # No catch-up for the new expression: its first slot is the first after the edit.
    assert [run[1] for run in runs[1:]] == slots_between(edited_at, end, 10 * MINUTE)
    assert {run[0] for run in runs[1:]} == {"*/10 * * * *"}


async def test_two_triggers_on_one_actor_each_run(data_dir, autojump_clock):
    async with open_ticks(data_dir, "*/5 * * * *", "*/15 * * * *") as rt:
        start = runtime.now()
        await trio.sleep(31 * MINUTE)
        runs = await runs_of(rt)
        end = runtime.now()
    by_cron = {c: [r[1] for r in runs if r[0] == c] for c in ("*/5 * * * *", "*/15 * * * *")}
    assert by_cron["*/5 * * * *"] == slots_between(start, end, 5 * MINUTE)
    assert by_cron["*/15 * * * *"] == slots_between(start, end, 15 * MINUTE)


async def test_triggers_from_a_roost_toml_shaped_dict(data_dir, autojump_clock):
    config = {
        "data_dir": data_dir,
        "durable_objects": {"bindings": [{"name": "TICKS", "class_name": Ticker}]},
        "triggers": {"crons": [trigger("*/5 * * * *", "from-dict")]},
    }
    async with open_runtime(config) as rt:
        await sleep_past_first_slot(5 * MINUTE)
        assert len(await runs_of(rt, "from-dict")) == 1


async def test_scheduled_is_not_callable_by_rpc(data_dir):
    async with open_ticks(data_dir) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost") as client:
            response = await client.post("/rpc/TICKS/a/scheduled", json={"args": [{"cron": "x"}]})
            assert response.status_code == 404
            response = await client.post("/rpc/__CRON/a/arm", json={})
            assert response.status_code == 404
    assert Ticker.runs_everywhere == []
