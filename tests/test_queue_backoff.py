"""Redelivery backoff (issue 20 part 4): ``retry_backoff = "exponential"`` doubles ``retry_delay``
per attempt up to ``max_retry_delay``, less up to 25 % jitter; peek shows each waiting
message's next attempt. In virtual time, through roost.toml, the consumer API and HTTP."""

from __future__ import annotations

import os

import httpx
import pytest
import trio

import runtime
from actors import MessageBatch
from runtime import Actor, load_config, open_runtime
from runtime.config import parse_config
from runtime.errors import ConfigError

DELIVERIES: list[tuple[int, float]] = []  # (attempts, runtime.now()) of each delivery
EPS = 1e-3


class Failing(Actor):
    async def queue(self, batch: MessageBatch) -> None:
        DELIVERIES.extend((m.attempts, runtime.now()) for m in batch.messages)
        raise RuntimeError("downstream is down")


class RetriesInFive(Actor):
    async def queue(self, batch: MessageBatch) -> None:
        DELIVERIES.extend((m.attempts, runtime.now()) for m in batch.messages)
        for message in batch.messages:
            message.retry(delay_seconds=5)


@pytest.fixture(autouse=True)
def clean():
    DELIVERIES.clear()


def gaps() -> list[float]:
    times = [t for _, t in DELIVERIES]
    return [b - a for a, b in zip(times, times[1:])]


def assert_backed_off(observed: list[float], nominal: list[float]) -> None:
    assert len(observed) == len(nominal)
    for gap, delay in zip(observed, nominal, strict=True):
        assert 0.75 * delay - EPS <= gap <= delay + EPS, (observed, nominal)


def consumer(consumer_class=Failing, **settings):
    return [
        {
            "queue": "jobs",
            "binding": "JOBS",
            "consumer": consumer_class,
            "dead_letter_queue": "jobs-dlq",
            "max_batch_size": 1,
            "max_batch_timeout": 0,
            **settings,
        }
    ]


TOML = """
data_dir = "data"
[[queues.producers]]
queue = "jobs"
binding = "JOBS"
[[queues.consumers]]
queue = "jobs"
class_name = "test_queue_backoff:Failing"
max_batch_size = 1
max_batch_timeout = 0
max_retries = 6
dead_letter_queue = "jobs-dlq"
retry_delay = 10
retry_backoff = "exponential"
max_retry_delay = 60
"""


async def test_exponential_delays_double_to_the_cap_shown_in_peek_then_dead_letter(tmp_path, autojump_clock):
    (tmp_path / "roost.toml").write_text(TOML)
    async with open_runtime(load_config(tmp_path / "roost.toml")) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            sent = await http.post("/queues/jobs/messages", json={"body": "job"})
            message_id = sent.json()["id"]
            await trio.sleep(0.5)
            promised = []
            for _ in range(6):
                [peeked] = (await http.get("/queues/jobs/messages")).json()["messages"]
                assert set(peeked) == {
                    "id", "body", "content_type", "attempts", "timestamp_ms", "correlation_id",
                    "dead_letter", "next_attempt_at_ms",
                }
                assert (peeked["id"], peeked["attempts"]) == (message_id, len(DELIVERIES))
                promised.append(peeked["next_attempt_at_ms"] / 1000)
                await trio.sleep(promised[-1] - runtime.now() + 0.5)
            assert [a for a, _ in DELIVERIES] == [1, 2, 3, 4, 5, 6, 7]
            assert_backed_off(gaps(), [10, 20, 40, 60, 60, 60])
            # Each next attempt peek showed is when the delivery came (to the millisecond).
            assert [t for _, t in DELIVERIES[1:]] == pytest.approx(promised, abs=EPS)
            # Past max_retries the message dies as before.
            assert (await http.get("/queues/jobs/messages")).json()["messages"] == []
            [dead] = (await http.get("/queues/jobs-dlq/messages")).json()["messages"]
            assert dead["id"] == message_id and dead["next_attempt_at_ms"] is None
            assert dead["dead_letter"]["attempts"] == 7 and dead["dead_letter"]["reason"] == "max_retries"
            metrics = (await http.get("/queues/jobs")).json()
            assert (metrics["retried"], metrics["dead_lettered"]) == (6, 1)


async def test_jitter_spreads_messages_that_failed_together_within_bounds(data_dir, autojump_clock):
    queues = consumer(max_batch_size=20, retry_delay=10, retry_backoff="exponential", max_retries=5)
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        await rt.env.JOBS.send_batch([{"body": i} for i in range(20)])
        await trio.sleep(0.5)
        [failed_at] = {t for _, t in DELIVERIES}
        waits = [m["next_attempt_at"] - failed_at for m in await rt.env.JOBS.peek(20)]
        assert all(7.5 - EPS <= w <= 10 + EPS for w in waits), waits
        assert len(set(waits)) > 10  # spread out, not in lockstep


@pytest.mark.parametrize("settings", [{}, {"retry_backoff": "fixed"}], ids=["default", "fixed"])
async def test_a_fixed_delay_stays_fixed_and_dead_letters_as_before(data_dir, autojump_clock, settings):
    async with open_runtime(data_dir=data_dir, queues=consumer(retry_delay=10, max_retries=3, **settings)) as rt:
        await rt.env.JOBS.send("job")
        await trio.sleep(100)
        assert [a for a, _ in DELIVERIES] == [1, 2, 3, 4]
        assert gaps() == pytest.approx([10, 10, 10], abs=EPS)
        [dead] = await rt.queue("jobs-dlq").peek()
        assert dead["dead_letter"]["attempts"] == 4


async def test_an_explicit_retry_delay_overrides_the_backoff(data_dir, autojump_clock):
    queues = consumer(RetriesInFive, retry_delay=100, retry_backoff="exponential", max_retries=3)
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        await rt.env.JOBS.send("job")
        await trio.sleep(100)
        assert [a for a, _ in DELIVERIES] == [1, 2, 3, 4]
        assert gaps() == pytest.approx([5, 5, 5], abs=EPS)


async def test_pull_retries_back_off_and_peek_shows_send_delays(data_dir, autojump_clock):
    queues = [{"queue": "work", "binding": "WORK", "retry_delay": 10, "retry_backoff": "exponential"}]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        work = rt.env.WORK
        await work.send("now")
        sent = runtime.now()
        await work.send("later", delay_seconds=30)
        assert [m["next_attempt_at"] for m in await work.peek()] == [None, pytest.approx(sent + 30)]
        for nominal in (10, 20, 40):
            [leased] = await work.pull(batch_size=1)
            assert [m["next_attempt_at"] for m in await work.peek()][0] is None  # in flight
            await work.retry([leased.lease_id])
            wait = (await work.peek())[0]["next_attempt_at"] - runtime.now()
            assert 0.75 * nominal - EPS <= wait <= nominal + EPS
            await trio.sleep(wait + 0.1)
        leased = {m.body: m.attempts for m in await work.pull(batch_size=2)}
        assert leased == {"now": 4, "later": 1}


async def test_the_backoff_goes_on_from_the_stored_attempts_after_a_restart(data_dir, autojump_clock):
    queues = consumer(retry_delay=10, retry_backoff="exponential", max_retries=10)
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        await rt.env.JOBS.send("job")
        await trio.sleep(25)  # deliveries 1 and 2; the third waits 15..20 s
    async with open_runtime(data_dir=data_dir, queues=queues):
        await trio.sleep(60)
    assert [a for a, _ in DELIVERIES][:4] == [1, 2, 3, 4]
    assert_backed_off(gaps()[:3], [10, 20, 40])


BAD = [
    ({"retry_backoff": "linear"}, "retry_backoff", 'expected "fixed" or "exponential"'),
    ({"retry_backoff": 2}, "retry_backoff", "expected"),
    ({"retry_backoff": "exponential", "retry_delay": 10, "max_retry_delay": "1h"}, "max_retry_delay", "a number"),
    ({"retry_backoff": "exponential", "retry_delay": 10, "max_retry_delay": True}, "max_retry_delay", "a number"),
    ({"retry_backoff": "exponential", "retry_delay": 10, "max_retry_delay": 50_000}, "max_retry_delay", "0..43200"),
    ({"retry_backoff": "exponential", "retry_delay": 10, "max_retry_delay": float("nan")}, "max_retry_delay", "range"),
    ({"retry_backoff": "exponential", "retry_delay": 10, "max_retry_delay": 5}, "max_retry_delay", "below"),
    ({"retry_backoff": "exponential", "retry_delay": 7200}, "max_retry_delay", "the default"),
    ({"retry_backoff": "exponential"}, "retry_delay", "above 0"),
    ({"retry_backoff": "exponential", "retry_delay": 0}, "retry_delay", "above 0"),
    ({"max_retry_delay": 60}, "max_retry_delay", "only with"),
    ({"retry_backoff": "fixed", "max_retry_delay": 60}, "max_retry_delay", "only with"),
]


@pytest.mark.parametrize(("settings", "key", "problem"), BAD)
async def test_bad_backoff_settings_are_config_errors_naming_table_and_key(data_dir, settings, key, problem):
    table = {"queue": "jobs", "class_name": "test_queue_backoff:Failing", **settings}
    toml = {"queues": {"producers": [{"queue": "jobs", "binding": "JOBS"}], "consumers": [table]}}
    with pytest.raises(ConfigError) as toml_error:
        parse_config(toml, source="roost.toml")
    assert f"roost.toml: [queues.consumers[0]] key '{key}'" in str(toml_error.value)
    assert problem in str(toml_error.value)
    with pytest.raises(ConfigError) as code_error:
        async with open_runtime(data_dir=data_dir, queues=consumer(**settings)):
            pass
    assert f"[queues[0]] key '{key}'" in str(code_error.value) and problem in str(code_error.value)
    assert not os.path.exists(data_dir)


def test_good_backoff_settings_and_their_defaults():
    def parsed(**settings):
        table = {"queue": "jobs", "class_name": "test_queue_backoff:Failing", **settings}
        toml = {"queues": {"producers": [{"queue": "jobs", "binding": "JOBS"}], "consumers": [table]}}
        return parse_config(toml).queues["jobs"]

    assert (parsed().retry_backoff, parsed().max_retry_delay) == ("fixed", 3600)
    exponential = parsed(retry_backoff="exponential", retry_delay=1)
    assert (exponential.retry_backoff, exponential.max_retry_delay) == ("exponential", 3600)
    capped = parsed(retry_backoff="exponential", retry_delay=2.5, max_retry_delay=2.5)
    assert capped.max_retry_delay == 2.5
