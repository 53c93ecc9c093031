"""A delay is at most 12 hours (43,200 s, Cloudflare's cap) wherever it enters a queue: sends,
batches, a consumer's and a pull consumer's retries, the HTTP ack route, and ``retry_delay``."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

from actors import MessageBatch, QueueLimitError
from runtime import Actor, open_runtime
from runtime.config import parse_config
from runtime.errors import ConfigError

MAX_DELAY_SECONDS = 43_200
LIMIT = "0..43200 s"
SEEN: list[tuple[int, str]] = []  # (attempts, body) of each delivery
REFUSED: list[tuple[str, object]] = []  # (error, the message's outcome after it) of each refusal


@pytest.fixture(autouse=True)
def clean():
    SEEN.clear()
    REFUSED.clear()


def pull_queue(**settings):
    return [{"queue": "work", "binding": "WORK", "max_retries": 3, **settings}]


@pytest.mark.parametrize(
    "call",
    [
        lambda q: q.send(1, delay_seconds=MAX_DELAY_SECONDS + 1),
        lambda q: q.send_batch([{"body": 1, "delay_seconds": MAX_DELAY_SECONDS + 1}]),
        lambda q: q.send_batch([{"body": 1}], delay_seconds=MAX_DELAY_SECONDS + 0.5),
        # the batch-wide delay is checked even when every message brings its own, or none is sent
        lambda q: q.send_batch([{"body": 1, "delay_seconds": 0}], delay_seconds=MAX_DELAY_SECONDS + 1),
        lambda q: q.send_batch([], delay_seconds=86_400),
    ],
    ids=["send", "batch-message", "batch-wide", "batch-wide-overridden", "empty-batch"],
)
async def test_a_send_delay_past_12_hours_is_refused_and_nothing_enqueued(data_dir, autojump_clock, call):
    async with open_runtime(data_dir=data_dir, queues=pull_queue()) as rt:
        with pytest.raises(QueueLimitError, match=rf"delay_seconds is (43201|43200.5|86400); .*{LIMIT}"):
            await call(rt.env.WORK)
        assert (await rt.env.WORK.metrics())["backlog"] == 0


async def test_a_delay_of_exactly_12_hours_is_accepted(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queue()) as rt:
        await rt.env.WORK.send(1, delay_seconds=MAX_DELAY_SECONDS)
        await rt.env.WORK.send_batch([{"body": 2}], delay_seconds=MAX_DELAY_SECONDS)
        assert (await rt.env.WORK.metrics())["delayed"] == 2


async def test_a_pull_retry_past_12_hours_is_refused_and_the_lease_kept(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queue()) as rt:
        await rt.env.WORK.send(1)
        [leased] = await rt.env.WORK.pull()
        with pytest.raises(QueueLimitError, match=f"is 43201; .*{LIMIT}"):
            await rt.env.WORK.retry([leased.lease_id], delay_seconds=MAX_DELAY_SECONDS + 1)
        assert (await rt.env.WORK.metrics())["in_flight"] == 1
        assert await rt.env.WORK.retry([leased.lease_id], delay_seconds=MAX_DELAY_SECONDS) == 1


async def test_the_ack_route_refuses_a_retry_past_12_hours_and_applies_nothing(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queue()) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            await rt.env.WORK.send_batch([{"body": 1}, {"body": 2}])
            first, second = await rt.env.WORK.pull(batch_size=2)
            answer = await http.post(
                "/queues/work/messages/ack",
                json={
                    "acks": [{"lease_id": first.lease_id}],
                    "retries": [{"lease_id": second.lease_id, "delay_seconds": MAX_DELAY_SECONDS + 1}],
                },
            )
            assert answer.status_code == 400
            assert answer.json()["type"] == "QueueLimitError" and LIMIT in answer.json()["error"]
            metrics = await rt.env.WORK.metrics()
            assert (metrics["acked"], metrics["in_flight"]) == (0, 2)
            sent = await http.post("/queues/work/messages", json={"body": 3, "delay_seconds": 50_000})
            assert sent.status_code == 400 and "is 50000" in sent.json()["error"]


class BadRetries(Actor):
    """Retries with a delay past the cap: caught (each refusal recorded, then an ack), or not."""

    async def queue(self, batch: MessageBatch) -> None:
        [message] = batch.messages
        SEEN.append((message.attempts, message.body))
        if message.body == "uncaught":
            message.retry(delay_seconds=MAX_DELAY_SECONDS + 1)
        for retry in (message.retry, batch.retry_all):
            try:
                retry(delay_seconds=MAX_DELAY_SECONDS + 1)
            except QueueLimitError as exc:
                REFUSED.append((str(exc), message.outcome))
        message.ack()


async def test_a_consumer_retry_past_12_hours_raises_in_the_handler_and_decides_nothing(
    data_dir, autojump_clock, caplog
):
    queues = [
        {"queue": "jobs", "consumer": BadRetries, "max_batch_size": 1, "retry_delay": 10, "max_retries": 5}
    ]
    caplog.set_level(logging.WARNING, logger="roost.queues")
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        await rt.queue("jobs").send("caught")
        await trio.sleep(1)
        assert SEEN == [(1, "caught")]
        assert [(LIMIT in error, outcome) for error, outcome in REFUSED] == [(True, None), (True, None)]
        assert (await rt.queue("jobs").metrics())["acked"] == 1
        # Uncaught, the refusal fails the batch as any raise does: the message is retried
        # after the queue's retry_delay (not the refused delay), the error logged.
        await rt.queue("jobs").send("uncaught")
        await trio.sleep(1)
        assert SEEN[1:] == [(1, "uncaught")]
        await trio.sleep(10)
        assert SEEN[1:] == [(1, "uncaught"), (2, "uncaught")]
        [failed, *_] = [r for r in caplog.records if getattr(r, "event", None) == "queue.delivery_failed"]
        assert failed.error.startswith("QueueLimitError: delay_seconds is 43201") and LIMIT in failed.error


@pytest.mark.parametrize("value", [MAX_DELAY_SECONDS + 1, 86_400])
async def test_retry_delay_past_12_hours_is_a_config_error(data_dir, value):
    def consumers(retry_delay):
        consumer = {"queue": "jobs", "class_name": "examples.counter:Counter", "retry_delay": retry_delay}
        return {"queues": {"producers": [{"queue": "jobs", "binding": "JOBS"}], "consumers": [consumer]}}

    toml_error = rf"roost.toml: \[queues.consumers\[0\]\] key 'retry_delay': {value} is out of range 0..43200"
    with pytest.raises(ConfigError, match=toml_error):
        parse_config(consumers(value), source="roost.toml")
    code_error = rf"\[queues\[0\]\] key 'retry_delay': {value} is out of range 0..43200"
    with pytest.raises(ConfigError, match=code_error):
        async with open_runtime(data_dir=data_dir, queues=pull_queue(retry_delay=value)):
            pass
    assert parse_config(consumers(MAX_DELAY_SECONDS)).queues["jobs"].retry_delay == MAX_DELAY_SECONDS
