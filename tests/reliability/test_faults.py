"""Fault injection while the runtime serves other traffic over HTTP.

Each fault (a commit that fails, a map that fills up to its ceiling, a pull consumer that
hangs past its lease, a consumer whose ``on_start`` raises, an alarm handler that always
raises) must give a clear error or log line, reset only what it must, and leave every other
actor, queue and alarm served. All in virtual time (``autojump_clock``).
"""

from __future__ import annotations

import logging

import httpx
import pytest
import trio

import runtime
from actors import MessageBatch
from runtime import Actor, AlarmInfo, open_runtime
from runtime.testing import inject_commit_failure

MIB = 1024 * 1024


class Counter(Actor):
    async def increment(self, by: int = 1) -> int:
        n = await self.storage.get("n", 0) + by
        await self.storage.put("n", n)
        return n

    async def value(self) -> int:
        return await self.storage.get("n", 0)

    async def fill(self, start: int, count: int, size: int) -> None:
        for i in range(start, start + count):
            await self.storage.put(f"blob{i:06d}", b"x" * size)

    async def empty(self) -> None:
        await self.storage.delete_all()


class Recorder(Actor):
    """Counts what the work queue's consumer was given."""

    async def record(self, body: str) -> None:
        await self.storage.put(f"got:{body}", await self.storage.get(f"got:{body}", 0) + 1)

    async def got(self) -> dict:
        return await self.storage.list(prefix="got:")


class WorkConsumer(Actor):
    async def queue(self, batch: MessageBatch) -> None:
        for message in batch.messages:
            await self.env.RECORDER.get_by_name("work").record(message.body)


class BrokenStart(Actor):
    async def on_start(self) -> None:
        raise RuntimeError("cannot load the consumer's settings")

    async def queue(self, batch: MessageBatch) -> None:
        raise AssertionError("never delivered: on_start always raises")


class Timer(Actor):
    async def arm(self, delay: float) -> None:
        await self.storage.set_alarm(runtime.now() + delay)

    async def alarm(self, info: AlarmInfo) -> None:
        if self.id.name == "always-fails":
            raise RuntimeError("the alarm's downstream service is gone")
        await self.storage.put("fired", await self.storage.get("fired", 0) + 1)

    async def fired(self) -> int:
        return await self.storage.get("fired", 0)


ACTORS = {"COUNTERS": Counter, "TIMERS": Timer, "RECORDER": Recorder}
QUEUES = [
    {"queue": "work", "binding": "WORK", "consumer": WorkConsumer, "max_batch_timeout": 0},
    {
        "queue": "broken",
        "binding": "BROKEN",
        "consumer": BrokenStart,
        "max_batch_timeout": 0,
        "max_retries": 2,
        "dead_letter_queue": "broken-dlq",
    },
    {"queue": "pulled", "binding": "PULLED"},
]


def open_app(data_dir: str, **kwargs):
    return open_runtime(data_dir=data_dir, actors=ACTORS, queues=QUEUES, **kwargs)


def http_client(rt) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.asgi_app), base_url="http://roost.test")


async def rpc(http: httpx.AsyncClient, binding: str, name: str, method: str, *args) -> httpx.Response:
    return await http.post(f"/rpc/{binding}/{name}/{method}", json={"args": list(args)})


async def assert_everything_else_served(rt, http: httpx.AsyncClient, name: str) -> None:
    """Another actor, a queue with its consumer, and an alarm all still work."""
    before = (await rpc(http, "COUNTERS", name, "value")).json()["result"]
    assert (await rpc(http, "COUNTERS", name, "increment")).json() == {"result": before + 1}
    assert (await http.post("/queues/work/messages", json={"body": name})).status_code == 202
    assert (await rpc(http, "TIMERS", f"{name}-timer", "arm", 1)).status_code == 200
    await trio.sleep(5)
    assert (await rpc(http, "RECORDER", "work", "got")).json()["result"][f"got:{name}"] >= 1
    assert (await rpc(http, "TIMERS", f"{name}-timer", "fired")).json()["result"] == 1
    assert (await http.get("/healthz")).status_code == 200


async def test_an_injected_commit_failure_resets_one_actor_with_a_clear_error(
    data_dir, autojump_clock, caplog
):
    async with open_app(data_dir) as rt, http_client(rt) as http:
        await rpc(http, "COUNTERS", "doomed", "increment")
        inject_commit_failure(rt.namespace("COUNTERS").get_by_name("doomed"))
        with caplog.at_level(logging.WARNING):
            response = await rpc(http, "COUNTERS", "doomed", "increment", 10)
        assert response.status_code == 503
        assert response.json()["type"] == "ActorResetError"
        assert "injected commit failure" in response.json()["error"]
        assert "Traceback" not in response.text
        # The failed write is gone; the actor itself is served again at once.
        assert (await rpc(http, "COUNTERS", "doomed", "value")).json() == {"result": 1}
        assert (await rpc(http, "COUNTERS", "doomed", "increment")).json() == {"result": 2}
        await assert_everything_else_served(rt, http, "other")
        assert rt.statistics()["resets"] == 1


async def test_a_whole_failed_commit_resets_its_actors_and_the_next_commit_works(
    data_dir, autojump_clock, caplog
):
    async with open_app(data_dir) as rt, http_client(rt) as http:
        inject_commit_failure(rt.namespace("COUNTERS"))
        with caplog.at_level(logging.ERROR, logger="roost.store"):
            response = await rpc(http, "COUNTERS", "c0", "increment")
        assert response.status_code == 503
        assert "injected commit failure" in response.json()["error"]
        assert "actors failed: injected commit failure" in caplog.text
        assert rt.statistics()["failed_commits"] == 1
        await assert_everything_else_served(rt, http, "c0")


async def test_a_full_map_at_its_ceiling_refuses_writes_clearly_and_serves_reads(
    data_dir, autojump_clock, caplog
):
    # The disk filling up, simulated by the map's ceiling: LMDB refuses to grow past it.
    ceiling = 4 * MIB
    async with open_app(data_dir, map_size=ceiling, max_map_size=ceiling) as rt, http_client(rt) as http:
        await rpc(http, "COUNTERS", "small", "increment")
        with caplog.at_level(logging.ERROR, logger="roost.store"):
            filled = await rpc(http, "COUNTERS", "big", "fill", 0, 100, 100_000)
        assert filled.status_code == 503
        assert "the LMDB map is full at its maximum size (max_map_size)" in filled.json()["error"]
        assert "map is full" in caplog.text
        # Nothing of the failed commit is visible; reads and the rest are served meanwhile.
        assert (await rpc(http, "COUNTERS", "big", "value")).json() == {"result": 0}
        assert (await rpc(http, "COUNTERS", "small", "value")).json() == {"result": 1}
        assert (await http.get("/queues/work")).status_code == 200
        await assert_everything_else_served(rt, http, "small")


async def test_the_map_grows_by_itself_up_to_its_maximum_and_keeps_everything(
    data_dir, autojump_clock, caplog
):
    with caplog.at_level(logging.WARNING, logger="roost.store"):
        async with open_app(data_dir, map_size=MIB, max_map_size=256 * MIB) as rt, http_client(rt) as http:
            for start in range(0, 200, 20):
                response = await rpc(http, "COUNTERS", "big", "fill", start, 20, 100_000)
                assert response.status_code == 200, response.text
            assert rt.statistics()["failed_commits"] == 0
    assert "LMDB map grew to" in caplog.text
    async with open_app(data_dir, map_size=MIB, max_map_size=256 * MIB) as rt:
        stub = rt.namespace("COUNTERS").get_by_name("big")
        assert await stub.increment() == 1
        assert await stub.value() == 1


async def test_a_pull_consumer_that_hangs_past_its_lease_gets_its_message_redelivered(
    data_dir, autojump_clock
):
    async with open_app(data_dir) as rt, http_client(rt) as http:
        sent = (await http.post("/queues/pulled/messages", json={"body": "job-1"})).json()["id"]
        first = (await http.post("/queues/pulled/messages/pull", json={"visibility_timeout_ms": 5000})).json()
        [leased] = first["messages"]
        assert (leased["id"], leased["attempts"]) == (sent, 1)
        await trio.sleep(6)  # the consumer hangs past its lease
        again = (await http.post("/queues/pulled/messages/pull", json={"visibility_timeout_ms": 5000})).json()
        [redelivered] = again["messages"]
        assert (redelivered["id"], redelivered["attempts"]) == (sent, 2)
        # The hung consumer wakes and acks with its expired lease: that changes nothing.
        late = await http.post(
            "/queues/pulled/messages/ack", json={"acks": [{"lease_id": leased["lease_id"]}]}
        )
        assert late.status_code == 200
        assert (await http.get("/queues/pulled")).json()["backlog"] == 1
        fresh = {"acks": [{"lease_id": redelivered["lease_id"]}]}
        assert (await http.post("/queues/pulled/messages/ack", json=fresh)).status_code == 200
        assert (await http.get("/queues/pulled")).json()["backlog"] == 0
        await assert_everything_else_served(rt, http, "pull")


async def test_a_consumer_whose_on_start_raises_dead_letters_its_messages_only(
    data_dir, autojump_clock, caplog
):
    async with open_app(data_dir) as rt, http_client(rt) as http:
        assert (await http.post("/queues/broken/messages", json={"body": "doomed"})).status_code == 202
        await trio.sleep(30)
        broken = (await http.get("/queues/broken")).json()
        assert (broken["backlog"], broken["dead_lettered"]) == (0, 1)
        [dead] = (await http.get("/queues/broken-dlq/messages?limit=5")).json()["messages"]
        assert dead["body"] == "doomed"
        assert "on_start raised RuntimeError: cannot load the consumer's settings" in str(dead)
        await assert_everything_else_served(rt, http, "broken")


async def test_an_alarm_that_always_raises_is_dropped_with_a_log_line_and_others_fire(
    data_dir, autojump_clock, caplog
):
    async with open_app(data_dir) as rt, http_client(rt) as http:
        with caplog.at_level(logging.WARNING, logger="roost.alarms"):
            await rpc(http, "TIMERS", "always-fails", "arm", 1)
            for i in range(5):
                await rpc(http, "TIMERS", f"fine-{i}", "arm", 10 * i)
            await trio.sleep(45)
            # Meanwhile the failing alarm is being retried; every other alarm fired on time.
            assert [(await rpc(http, "TIMERS", f"fine-{i}", "fired")).json()["result"] for i in range(5)] == [
                1
            ] * 5
            await trio.sleep(1000)
        assert "alarm of TIMERS" in caplog.text
        assert "raised RuntimeError: the alarm's downstream service is gone; retry 1" in caplog.text
        assert "failed after 6 retries and is dropped" in caplog.text
        assert "roost_alarms_dropped_total 1" in (await http.get("/metrics")).text
        await assert_everything_else_served(rt, http, "alarms")


@pytest.fixture(autouse=True)
def _no_stray_tracebacks(caplog):
    """No fault here may surface as an unhandled error in the log."""
    yield
    assert "Traceback" not in caplog.text
