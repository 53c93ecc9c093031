"""Retention, as Cloudflare's ``message_retention_period``: a message nobody acked within its
queue's retention period (default 4 days, 60 s to 14 days) is expired: removed, counted,
logged, or moved to the dead-letter queue with ``dead_letter_expired``. Driven by the queue
actor's alarm, for waiting, delayed and in-flight messages, and across restarts."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

import runtime
from actors import MessageBatch
from actors.names import REGISTRY_BINDING
from actors.queues import actor as queue_actor
from runtime import Actor, load_config, open_runtime
from runtime.config import parse_config
from runtime.errors import ConfigError

RETENTION = 60
DEFAULT_RETENTION = 345_600
DELIVERED: list[tuple[str, object, int, float]] = []  # (queue, body, attempts, when)


@pytest.fixture(autouse=True)
def clean():
    DELIVERED.clear()


@pytest.fixture
def expiry_log(caplog):
    caplog.set_level(logging.WARNING, logger="roost.queues")
    return lambda: [r for r in caplog.records if getattr(r, "event", None) == "queue.expired"]


class Recorder(Actor):
    """Records each delivery. Body "retry": retried after 25 s; "slow": acked after 100 s;
    "slow-fail": raises after 100 s; anything else is acked."""

    async def queue(self, batch: MessageBatch) -> None:
        for message in batch.messages:
            DELIVERED.append((batch.queue, message.body, message.attempts, runtime.now()))
            if message.body == "retry":
                message.retry(delay_seconds=25)
        if any(message.body in ("slow", "slow-fail") for message in batch.messages):
            await trio.sleep(100)
        if any(message.body == "slow-fail" for message in batch.messages):
            raise RuntimeError("failed after the retention period")


def pull_queue(**settings):
    return [{"queue": "work", "binding": "WORK", "message_retention_period": RETENTION, **settings}]


def push_queue(**settings):
    return [
        {
            "queue": "jobs",
            "consumer": Recorder,
            "max_batch_size": 1,
            "max_retries": 10,
            "message_retention_period": RETENTION,
            **settings,
        }
    ]


async def test_an_unacked_message_is_expired_after_the_retention_period(data_dir, autojump_clock, expiry_log):
    async with open_runtime(data_dir=data_dir, queues=pull_queue()) as rt:
        queue = rt.env.WORK
        await queue.pause()  # a paused queue still expires what it keeps
        message_id = await queue.send({"n": 1})
        await trio.sleep(RETENTION - 1)
        assert (await queue.metrics())["backlog"] == 1
        await trio.sleep(2)
        metrics = await queue.metrics()
        assert (metrics["backlog"], metrics["expired"], metrics["acked"]) == (0, 1, 0)
        assert await queue.peek() == [] and await queue.pull() == []
        [logged] = expiry_log()
        assert (logged.message_id, logged.queue, logged.dead_letter_queue) == (message_id, "work", None)
        assert logged.levelno == logging.WARNING and logged.message_retention_period == RETENTION


async def test_the_default_retention_is_four_days(data_dir, autojump_clock):
    queues = [{"queue": "work", "binding": "WORK"}]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        assert rt.config.queues["work"].message_retention_period == DEFAULT_RETENTION
        await rt.env.WORK.send(1)
        await trio.sleep(DEFAULT_RETENTION - 1)
        assert (await rt.env.WORK.metrics())["backlog"] == 1
        await trio.sleep(2)
        assert (await rt.env.WORK.metrics())["expired"] == 1


async def test_retention_counts_from_the_timestamp_across_redeliveries(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=push_queue()) as rt:
        sent = runtime.now()
        await rt.queue("jobs").send("retry")
        await trio.sleep(RETENTION + 30)
        # delivered at 0, 25 and 50 s; the retry after the third would come at 75 s: too late
        assert [attempts for _, _, attempts, _ in DELIVERED] == [1, 2, 3]
        assert DELIVERED[-1][3] - sent < RETENTION
        metrics = await rt.queue("jobs").metrics()
        assert (metrics["backlog"], metrics["retried"], metrics["expired"]) == (0, 3, 1)


async def test_a_delayed_message_expires_before_its_delay_ends(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=push_queue()) as rt:
        await rt.queue("jobs").send("late", delay_seconds=RETENTION * 2)
        await trio.sleep(RETENTION + 1)
        metrics = await rt.queue("jobs").metrics()
        assert (metrics["backlog"], metrics["delayed"], metrics["expired"]) == (0, 0, 1)
        await trio.sleep(RETENTION * 2)
        assert DELIVERED == []


async def test_a_pulled_message_expires_once_its_lease_ends_unacked(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queue()) as rt:
        queue = rt.env.WORK
        await queue.send_batch([{"body": "acked"}, {"body": "dropped"}])
        acked, dropped = await queue.pull(batch_size=2, visibility_timeout=100)
        await trio.sleep(RETENTION + 10)
        metrics = await queue.metrics()
        assert (metrics["backlog"], metrics["in_flight"], metrics["expired"]) == (2, 2, 0)
        assert await queue.ack([acked.lease_id]) == 1  # its lease still holds: nothing acked is lost
        await trio.sleep(100 - RETENTION)
        metrics = await queue.metrics()
        assert (metrics["backlog"], metrics["acked"], metrics["expired"]) == (0, 1, 1)
        assert await queue.retry([dropped.lease_id]) == 0


async def test_a_pulled_message_retried_past_its_retention_expires(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queue(max_retries=5)) as rt:
        await rt.env.WORK.send(1)
        [leased] = await rt.env.WORK.pull(visibility_timeout=100)
        await trio.sleep(RETENTION + 1)
        assert await rt.env.WORK.retry([leased.lease_id]) == 1
        await trio.sleep(0.1)  # the alarm, set for now, expires it
        metrics = await rt.env.WORK.metrics()
        assert (metrics["backlog"], metrics["retried"], metrics["expired"]) == (0, 1, 1)


async def test_a_pushed_message_expires_once_its_delivery_fails(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=push_queue(max_concurrency=2)) as rt:
        await rt.queue("jobs").send_batch([{"body": "slow"}, {"body": "slow-fail"}])
        await trio.sleep(RETENTION + 1)
        assert (await rt.queue("jobs").metrics())["in_flight"] == 2
        await trio.sleep(50)
        metrics = await rt.queue("jobs").metrics()
        assert (metrics["backlog"], metrics["acked"], metrics["expired"]) == (0, 1, 1)
        assert sorted(body for _, body, _, _ in DELIVERED) == ["slow", "slow-fail"]


def dead_lettering_queues(dlq_retention=120, **settings):
    return [
        {
            "queue": "work",
            "binding": "WORK",
            "message_retention_period": RETENTION,
            "dead_letter_queue": "work-dlq",
            "dead_letter_expired": True,
            **settings,
        },
        {"queue": "work-dlq", "message_retention_period": dlq_retention},
    ]


async def test_with_dead_letter_expired_the_dead_letter_queue_receives_them(
    data_dir, autojump_clock, expiry_log
):
    async with open_runtime(data_dir=data_dir, queues=dead_lettering_queues()) as rt:
        sent = runtime.now()
        message_id = await rt.env.WORK.send({"order": 7})
        [leased] = await rt.env.WORK.pull()
        await trio.sleep(RETENTION + 1)
        assert (await rt.env.WORK.metrics())["expired"] == 1
        [dead] = await rt.queue("work-dlq").peek()
        assert (dead["id"], dead["body"], dead["attempts"]) == (message_id, {"order": 7}, 0)
        assert dead["timestamp"] == pytest.approx(sent)
        info = dead["dead_letter"]
        assert (info["queue"], info["reason"], info["attempts"]) == ("work", "expired", 1)
        assert info["error"] is None
        assert info["failed_at"] == pytest.approx(sent + RETENTION, abs=1)
        [logged] = expiry_log()
        assert (logged.message_id, logged.dead_letter_queue) == (message_id, "work-dlq")
        assert await rt.env.WORK.ack([leased.lease_id]) == 0
        # The dead-letter queue's own retention counts from the message's arrival there.
        await trio.sleep(100)
        assert (await rt.queue("work-dlq").metrics())["backlog"] == 1
        await trio.sleep(20)
        dlq = await rt.queue("work-dlq").metrics()
        assert (dlq["backlog"], dlq["expired"]) == (0, 1)


async def test_a_message_that_ran_out_of_retries_is_dead_lettered_for_that_reason(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=dead_lettering_queues(max_retries=0)) as rt:
        await rt.env.WORK.send(1)
        await rt.env.WORK.retry([m.lease_id for m in await rt.env.WORK.pull()])
        [dead] = await rt.queue("work-dlq").peek()
        assert dead["dead_letter"]["reason"] == "max_retries"


async def test_a_redriven_message_gets_a_fresh_retention_period(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=dead_lettering_queues()) as rt:
        message_id = await rt.env.WORK.send(1)
        await trio.sleep(RETENTION + 1)
        assert await rt.queue("work-dlq").redrive() == 1
        await trio.sleep(RETENTION - 2)
        assert [m["id"] for m in await rt.env.WORK.peek()] == [message_id]
        await trio.sleep(3)
        assert (await rt.env.WORK.metrics())["expired"] == 2


async def test_expiry_is_driven_by_the_alarm_and_survives_a_restart(data_dir, autojump_clock):
    queues = dead_lettering_queues()
    queues[1] = {**queues[1], "consumer": Recorder, "max_batch_size": 1}
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        sent = runtime.now()
        await rt.env.WORK.send_batch([{"body": "waiting"}, {"body": "delayed", "delay_seconds": 500}])
        [leased] = await rt.env.WORK.pull(batch_size=1, visibility_timeout=30)
        await trio.sleep(10)
    # The second life never calls the queue: its alarm wakes it when the retention ends.
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        await trio.sleep(RETENTION)
        assert sorted(body for _, body, _, _ in DELIVERED) == ["delayed", "waiting"]
        for queue, _, _, when in DELIVERED:
            assert queue == "work-dlq" and when == pytest.approx(sent + RETENTION, abs=1)
        assert (await rt.env.WORK.metrics())["expired"] == 2
        assert await rt.env.WORK.ack([leased.lease_id]) == 0


async def test_a_message_that_expired_while_the_process_was_down_is_never_delivered(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=push_queue()) as rt:
        await rt.queue("jobs").send("stale", delay_seconds=RETENTION * 2)
    await trio.sleep(RETENTION * 3)
    # Both its delay and its retention ended while no process ran: the queue actor wakes up
    # with the message ready, and expires it instead of delivering it.
    async with open_runtime(data_dir=data_dir, queues=push_queue()) as rt:
        await trio.sleep(10)
        assert DELIVERED == []
        assert (await rt.queue("jobs").metrics())["expired"] == 1


async def test_a_backlog_past_the_index_expires_whole(data_dir, autojump_clock, monkeypatch):
    monkeypatch.setattr(queue_actor, "INDEX_WINDOW", 10)
    async with open_runtime(data_dir=data_dir, queues=pull_queue()) as rt:
        for start in range(0, 30, 6):
            await rt.env.WORK.send_batch([{"body": n} for n in range(start, start + 6)])
        await rt.env.WORK.send_batch([{"body": n} for n in range(30, 130)])
        await trio.sleep(RETENTION + 1)
        metrics = await rt.env.WORK.metrics()
        assert (metrics["backlog"], metrics["bytes"], metrics["expired"]) == (0, 0, 130)
    async with open_runtime(data_dir=data_dir, queues=pull_queue()) as rt:
        assert (await rt.env.WORK.metrics())["backlog"] == 0


async def test_expired_counts_reach_metrics(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=dead_lettering_queues()) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            await rt.env.WORK.send_batch([{"body": 1}, {"body": 2}])
            await trio.sleep(RETENTION + 1)
            assert (await http.get("/queues/work")).json()["expired"] == 2
            lines = (await http.get("/metrics")).text.splitlines()
    assert "# TYPE roost_queue_expired_total counter" in lines
    assert 'roost_queue_expired_total{queue="work"} 2' in lines
    assert 'roost_queue_expired_total{queue="work-dlq"} 0' in lines


async def test_messages_stored_before_retention_existed_count_from_the_upgrade(data_dir, autojump_clock):
    """Messages stored by the code before retention have 8 fields (no arrival time). However
    old, they are not expired at once on the upgrade: their period counts from when their
    queue first ran with retention, a time its meta record keeps across restarts."""
    queues = [{"queue": "old", "binding": "OLD"}]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        upgraded = runtime.now()
        sent_long_ago = upgraded - 2 * DEFAULT_RETENTION
        died_long_ago = {"queue": "x", "attempts": 4, "error": "boom", "failed_at": sent_long_ago}
        # id, body, content type, timestamp, correlation id, dead letter, visible at, traceparent
        old_layout = [
            ["a" * 32, b"1", "json", sent_long_ago, None, None, sent_long_ago, None],
            ["b" * 32, b"2", "json", sent_long_ago, None, died_long_ago, sent_long_ago, None],
        ]
        await rt.env[REGISTRY_BINDING].actor("old").enqueue(old_layout)
        await trio.sleep(60)
        assert [m["id"] for m in await rt.env.OLD.peek()] == ["a" * 32, "b" * 32]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        await trio.sleep(DEFAULT_RETENTION - (runtime.now() - upgraded) - 10)
        [pulled, _] = await rt.env.OLD.pull(batch_size=2)
        assert await rt.env.OLD.ack([pulled.lease_id]) == 1
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        await trio.sleep(60)  # past the upgrade's period, counted from before the restarts
        metrics = await rt.env.OLD.metrics()
        assert (metrics["expired"], metrics["acked"], metrics["backlog"]) == (1, 1, 0)


# -- configuration ------------------------------------------------------------------------------

TOML = """
[[queues.producers]]
queue = "jobs"
binding = "JOBS"
[[queues.consumers]]
queue = "jobs"
class_name = "examples.counter:Counter"
dead_letter_queue = "jobs-dlq"
dead_letter_expired = true
[[queues.settings]]
queue = "jobs"
message_retention_period = 3600
[[queues.settings]]
queue = "jobs-dlq"                   # declared only as a dead-letter queue
message_retention_period = 1209600
"""


def test_roost_toml_sets_retention_per_queue(tmp_path):
    path = tmp_path / "roost.toml"
    path.write_text(TOML + '[[queues.producers]]\nqueue = "plain"\nbinding = "PLAIN"\n')
    config = load_config(path)
    jobs, dlq, plain = (config.queues[name] for name in ("jobs", "jobs-dlq", "plain"))
    assert (jobs.message_retention_period, jobs.dead_letter_expired) == (3600, True)
    assert (jobs.binding, jobs.dead_letter_queue) == ("JOBS", "jobs-dlq")
    assert dlq.message_retention_period == 1_209_600
    assert (plain.message_retention_period, plain.dead_letter_expired) == (DEFAULT_RETENTION, False)


OUT_OF_RANGE = "is out of range 60..1209600"


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ("= 3600", "= 59", f"[queues.settings[0]] key 'message_retention_period': 59 {OUT_OF_RANGE}"),
        (
            "= 1209600",
            "= 1209601",
            f"[queues.settings[1]] key 'message_retention_period': 1209601 {OUT_OF_RANGE}",
        ),
        ("= 3600", "= nan", f"[queues.settings[0]] key 'message_retention_period': nan {OUT_OF_RANGE}"),
        ("= 3600", '= "1h"', "[queues.settings[0]] key 'message_retention_period': expected a number"),
        (
            'queue = "jobs-dlq"  ',
            'queue = "nowhere"  ',
            "[queues.settings[1]] key 'queue': queue 'nowhere' is not declared",
        ),
        (
            'queue = "jobs-dlq"  ',
            'queue = "jobs"  ',
            "[queues.settings[1]] key 'queue': queue 'jobs' has its settings already,"
            " in [queues.settings[0]]",
        ),
        ("retention_period = 3600", "retries = 3", "[queues.settings[0]] unknown key 'message_retries'"),
        (
            "dead_letter_expired = true",
            'dead_letter_expired = "yes"',
            "[queues.consumers[0]] key 'dead_letter_expired': expected a boolean",
        ),
        (
            'dead_letter_queue = "jobs-dlq"\n',
            "",
            "[queues.consumers[0]] key 'dead_letter_expired': true needs a dead_letter_queue",
        ),
        (
            'class_name = "examples.counter:Counter"',
            'class_name = "examples.counter:Counter"\nmessage_retention_period = 60',
            "[queues.consumers[0]] unknown key 'message_retention_period'",
        ),
    ],
    ids=[
        "too-short",
        "too-long",
        "nan",
        "not-a-number",
        "undeclared-queue",
        "twice",
        "unknown-key",
        "dead-letter-expired-not-bool",
        "dead-letter-expired-without-dlq",
        "retention-on-a-consumer",
    ],
)
def test_bad_retention_settings_in_roost_toml_are_refused(tmp_path, replace, by, message):
    assert replace in TOML
    path = tmp_path / "roost.toml"
    path.write_text(TOML.replace(replace, by, 1))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        (
            [{"queue": "a", "message_retention_period": 1_209_601}],
            f"[queues[0]] key 'message_retention_period': 1209601 {OUT_OF_RANGE}",
        ),
        (
            [{"queue": "a", "message_retention_period": True}],
            "[queues[0]] key 'message_retention_period': expected a number",
        ),
        (
            [{"queue": "a", "dead_letter_expired": True}],
            "[queues[0]] key 'dead_letter_expired': true needs a dead_letter_queue",
        ),
        (
            [{"queue": "a"}, {"queue": "a", "message_retention_period": 60}],
            "[queues[1]] key 'queue': queue 'a' is given already, by queues[0]",
        ),
    ],
    ids=["out-of-range", "a-bool", "dead-letter-expired-without-dlq", "queue-twice"],
)
async def test_bad_retention_settings_in_code_are_refused(data_dir, queues, message):
    with pytest.raises(ConfigError) as raised:
        async with open_runtime(data_dir=data_dir, queues=queues):
            pass
    assert message in str(raised.value)


def test_queue_settings_must_be_an_array_of_tables():
    with pytest.raises(ConfigError, match=r"\[queues\] key 'settings': expected an array"):
        parse_config({"queues": {"settings": {"queue": "a"}}})
