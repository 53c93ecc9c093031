"""Durable queues: producers, batched delivery, acks and retries, DLQ, operations (API.md 5)."""

from __future__ import annotations

import httpx
import pytest
import trio

import runtime
from actors import Message, MessageBatch, Queue, QueueLimitError
from actors.queues import actor as queue_actor
from runtime import Actor, OverloadedError, open_runtime

DELIVERED: list[tuple[str, list[tuple[object, int]]]] = []


class Consumer(Actor):
    """Records each batch; the body says what to do with a message."""

    async def queue(self, batch: MessageBatch) -> None:
        DELIVERED.append((self.id.name, [(m.body, m.attempts) for m in batch.messages]))
        await trio.sleep(0.5)  # real work takes time: batches can overlap
        for message in batch.messages:
            plan = message.body.get("plan") if isinstance(message.body, dict) else None
            if plan == "retry":
                message.retry()
            elif plan == "retry-later":
                message.retry(delay_seconds=100)
            elif plan == "ack":
                message.ack()
            elif plan == "ack-all-then-raise":
                batch.ack_all()
                raise RuntimeError("after ack_all")
        if any(isinstance(m.body, dict) and m.body.get("plan") == "raise" for m in batch.messages):
            raise ValueError("consumer failed")


@pytest.fixture(autouse=True)
def clean():
    DELIVERED.clear()


def queue_config(**consumer_settings):
    settings = {"max_batch_size": 3, "max_batch_timeout": 5, "max_retries": 2, "retry_delay": 10}
    settings.update(consumer_settings)
    return [
        {
            "queue": "jobs",
            "binding": "JOBS",
            "consumer": Consumer,
            "dead_letter_queue": "jobs-dlq",
            **settings,
        },
    ]


def open_queues(data_dir, **consumer_settings):
    return open_runtime(data_dir=data_dir, queues=queue_config(**consumer_settings))


def bodies(index: int) -> list[object]:
    return [body for body, _ in DELIVERED[index][1]]


async def test_send_returns_an_id_and_the_message_waits_durably(data_dir, autojump_clock):
    async with open_queues(data_dir) as rt:
        message_id = await rt.env.JOBS.send({"n": 1})
        assert isinstance(message_id, str) and len(message_id) == 32
        metrics = await rt.queue("jobs").metrics()
        assert metrics["backlog"] == 1 and metrics["in_flight"] == 0
        assert [m["id"] for m in await rt.queue("jobs").peek()] == [message_id]


async def test_a_full_batch_goes_at_once_a_partial_one_after_the_timeout(data_dir, autojump_clock):
    async with open_queues(data_dir) as rt:
        queue = rt.env.JOBS
        start = runtime.now()
        await queue.send_batch([{"body": {"n": i}} for i in range(4)])
        await trio.sleep(0.1)
        assert [bodies(0)] == [[{"n": 0}, {"n": 1}, {"n": 2}]]
        assert len(DELIVERED) == 1
        await trio.sleep(4)  # the fourth waits for max_batch_timeout (5 s)
        assert len(DELIVERED) == 1
        await trio.sleep(1.5)
        assert bodies(1) == [{"n": 3}]
        assert runtime.now() - start < 6
        await trio.sleep(1)
        metrics = await queue.metrics()
        assert metrics["backlog"] == 0 and metrics["acked"] == 4


async def test_explicit_and_implicit_outcomes(data_dir, autojump_clock):
    async with open_queues(data_dir, max_batch_size=4, max_retries=5) as rt:
        await rt.env.JOBS.send_batch(
            [{"body": {"plan": "retry", "k": 1}}, {"body": {"plan": "ack", "k": 2}}, {"body": {"k": 3}}]
        )
        await trio.sleep(6)
        assert bodies(0) == [{"plan": "retry", "k": 1}, {"plan": "ack", "k": 2}, {"k": 3}]
        metrics = await rt.queue("jobs").metrics()
        assert (metrics["acked"], metrics["retried"], metrics["backlog"]) == (2, 1, 1)


async def test_a_raising_handler_retries_what_it_did_not_ack(data_dir, autojump_clock):
    async with open_queues(data_dir, max_batch_size=3, max_retries=5) as rt:
        await rt.env.JOBS.send_batch(
            [{"body": {"plan": "ack", "k": 1}}, {"body": {"k": 2}}, {"body": {"plan": "raise"}}]
        )
        await trio.sleep(1)
        metrics = await rt.queue("jobs").metrics()
        assert (metrics["acked"], metrics["retried"], metrics["backlog"]) == (1, 2, 2)


async def test_ack_all_before_a_raise_acks_everything(data_dir, autojump_clock):
    async with open_queues(data_dir, max_batch_size=2) as rt:
        await rt.env.JOBS.send_batch([{"body": {"plan": "ack-all-then-raise"}}, {"body": {"k": 2}}])
        await trio.sleep(1)
        metrics = await rt.queue("jobs").metrics()
        assert (metrics["acked"], metrics["retried"], metrics["backlog"]) == (2, 0, 0)


def test_first_call_on_a_message_wins():
    batch = MessageBatch("q", [Message("a", None, 1, 1), Message("b", None, 2, 1), Message("c", None, 3, 1)])
    batch.messages[0].retry(5)
    batch.ack_all()
    batch.messages[0].ack()
    batch.messages[1].retry()  # ack_all came first for this one
    assert batch.outcomes(handler_raised=True) == [("retry", 5.0), ("ack", None), ("ack", None)]
    fresh = MessageBatch("q", [Message("a", None, 1, 1), Message("b", None, 2, 1)])
    fresh.messages[1].ack()
    assert fresh.outcomes(handler_raised=True) == [("retry", None), ("ack", None)]
    assert fresh.outcomes(handler_raised=False) == [("ack", None), ("ack", None)]


async def test_retries_wait_retry_delay_count_attempts_then_dead_letter(data_dir, autojump_clock):
    async with open_queues(data_dir, max_batch_size=1, max_retries=2, retry_delay=10) as rt:
        sent = runtime.now()
        message_id = await rt.env.JOBS.send({"plan": "raise"})
        await trio.sleep(60)
        assert [attempts for _, [(_, attempts)] in DELIVERED] == [1, 2, 3]
        jobs, dlq = await rt.queue("jobs").metrics(), await rt.queue("jobs-dlq").metrics()
        assert jobs["backlog"] == 0 and jobs["dead_lettered"] == 1 and jobs["retried"] == 2
        assert dlq["backlog"] == 1
        [dead] = await rt.queue("jobs-dlq").peek()
        assert dead["id"] == message_id and dead["body"] == {"plan": "raise"}
        assert dead["timestamp"] == pytest.approx(sent)
        assert dead["dead_letter"]["queue"] == "jobs" and dead["dead_letter"]["attempts"] == 3
        assert "consumer failed" in dead["dead_letter"]["error"]


async def test_without_a_dead_letter_queue_exhausted_messages_are_deleted(data_dir, autojump_clock):
    queues = [{"queue": "plain", "consumer": Consumer, "max_batch_size": 1, "max_retries": 0}]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        await rt.queue("plain").send({"plan": "raise"})
        await trio.sleep(10)
        assert len(DELIVERED) == 1
        metrics = await rt.queue("plain").metrics()
        assert metrics["backlog"] == 0 and metrics["dead_lettered"] == 1


async def test_retry_with_its_own_delay(data_dir, autojump_clock):
    async with open_queues(data_dir, max_batch_size=1, max_retries=5) as rt:
        await rt.env.JOBS.send({"plan": "retry-later"})
        await trio.sleep(50)
        assert len(DELIVERED) == 1
        assert (await rt.queue("jobs").metrics())["delayed"] == 1
        await trio.sleep(60)
        assert len(DELIVERED) == 2


async def test_delayed_send(data_dir, autojump_clock):
    async with open_queues(data_dir, max_batch_size=1) as rt:
        await rt.env.JOBS.send({"k": "later"}, delay_seconds=30)
        await rt.env.JOBS.send_batch([{"body": {"k": "batch-later"}}], delay_seconds=60)
        assert (await rt.queue("jobs").metrics())["delayed"] == 2
        await trio.sleep(29)
        assert DELIVERED == []
        await trio.sleep(2)
        assert bodies(0) == [{"k": "later"}]
        await trio.sleep(30)
        assert bodies(1) == [{"k": "batch-later"}]


async def test_content_types_round_trip(data_dir, autojump_clock):
    async with open_queues(data_dir, max_batch_size=4) as rt:
        await rt.env.JOBS.send_batch(
            [
                {"body": {"json": [1, 2]}},
                {"body": "text", "content_type": "text"},
                {"body": b"\x00\xff", "content_type": "bytes"},
                {"body": {"tuple": (1, 2), "bytes": b"x"}, "content_type": "msgpack"},
            ]
        )
        await trio.sleep(1)
        assert bodies(0) == [{"json": [1, 2]}, "text", b"\x00\xff", {"tuple": [1, 2], "bytes": b"x"}]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: q.send("x" * 128_001, content_type="text"), "the limit is 128000"),
        (lambda q: q.send({1, 2}), "cannot encode"),
        (lambda q: q.send("x", content_type="text", delay_seconds=43_201), "0..43200"),
        (lambda q: q.send(b"x", content_type="text"), "must be str"),
        (lambda q: q.send("x", content_type="yaml"), "content_type"),
        (lambda q: q.send_batch([{"body": i} for i in range(101)]), "the limit is 100"),
        (
            lambda q: q.send_batch([{"body": "x" * 100_000, "content_type": "text"}] * 3),
            "the limit is 256000",
        ),
        (lambda q: q.send_batch([{"bodee": 1}]), "needs 'body'"),
    ],
)
async def test_limits_refuse_and_enqueue_nothing(data_dir, autojump_clock, call, message):
    async with open_queues(data_dir) as rt:
        with pytest.raises(QueueLimitError, match=message):
            await call(rt.env.JOBS)
        assert (await rt.queue("jobs").metrics())["backlog"] == 0


async def test_pause_keeps_accepting_and_resume_delivers(data_dir, autojump_clock):
    async with open_queues(data_dir, max_batch_size=1) as rt:
        await rt.queue("jobs").pause()
        await rt.env.JOBS.send({"k": 1})
        await trio.sleep(30)
        assert DELIVERED == [] and (await rt.queue("jobs").metrics())["paused"] is True
        await rt.queue("jobs").resume()
        await trio.sleep(1)
        assert bodies(0) == [{"k": 1}]


async def test_purge_deletes_every_message(data_dir, autojump_clock):
    async with open_queues(data_dir) as rt:
        await rt.queue("jobs").pause()
        await rt.env.JOBS.send_batch([{"body": i} for i in range(10)])
        assert await rt.queue("jobs").purge() == 10
        metrics = await rt.queue("jobs").metrics()
        assert metrics["backlog"] == 0 and await rt.queue("jobs").peek() == []


async def test_messages_wait_in_a_queue_without_consumer(data_dir, autojump_clock):
    async with open_queues(data_dir) as rt:
        await rt.queue("jobs-dlq").send("kept", content_type="text")
        await trio.sleep(3600)
        assert (await rt.queue("jobs-dlq").metrics())["backlog"] == 1


async def test_concurrent_batches_go_to_their_own_consumer_instances(data_dir, autojump_clock):
    async with open_queues(data_dir, max_batch_size=1, max_concurrency=3) as rt:
        await rt.env.JOBS.send_batch([{"body": i} for i in range(3)])
        await trio.sleep(0.1)
        assert len(DELIVERED) == 3
        assert len({name for name, _ in DELIVERED}) == 3


async def test_a_delivery_cut_by_a_restart_is_delivered_again(data_dir, autojump_clock):
    class Slow(Actor):
        async def queue(self, batch: MessageBatch) -> None:
            DELIVERED.append((self.id.name, [(m.body, m.attempts) for m in batch.messages]))
            await trio.sleep(3600)

    queues = [{"queue": "slow", "consumer": Slow, "max_batch_size": 1}]
    async with trio.open_nursery() as nursery:

        async def first_life():
            async with open_runtime(data_dir=data_dir, queues=queues) as rt:
                await rt.queue("slow").send("job", content_type="text")
                await trio.sleep(10)

        nursery.start_soon(first_life)
    assert [attempts for _, [(_, attempts)] in DELIVERED] == [1]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        await rt.queue("slow").metrics()  # wakes the queue actor, which finds the cut lease
        await trio.sleep(1)
        assert [attempts for _, [(_, attempts)] in DELIVERED] == [1, 2]


async def test_sends_survive_a_restart(data_dir, autojump_clock):
    async with open_queues(data_dir) as rt:
        await rt.queue("jobs").pause()
        ids = await rt.env.JOBS.send_batch([{"body": i} for i in range(5)])
    async with open_queues(data_dir) as rt:
        assert [m["id"] for m in await rt.queue("jobs").peek()] == ids


async def test_a_batch_over_one_storage_value_is_kept_whole_and_in_order(data_dir, autojump_clock):
    big = ["a" * 100_000, "b" * 100_000, "c"]  # 200,001 bytes: more than one stored value holds
    async with open_queues(data_dir) as rt:
        await rt.queue("jobs").pause()
        ids = await rt.env.JOBS.send_batch([{"body": body, "content_type": "text"} for body in big])
    async with open_queues(data_dir) as rt:
        assert [(m["id"], m["body"]) for m in await rt.queue("jobs").peek()] == list(zip(ids, big, strict=True))
        await rt.queue("jobs").resume()
        await trio.sleep(10)
        assert bodies(0) == big
        assert (await rt.queue("jobs").metrics())["backlog"] == 0


async def test_mixed_outcomes_in_one_batch_survive_a_restart(data_dir, autojump_clock):
    plans = ["ack", "retry-later", "ack", "retry-later", "ack"]
    async with open_queues(data_dir, max_batch_size=5) as rt:
        await rt.env.JOBS.send_batch([{"body": {"plan": plan, "n": n}} for n, plan in enumerate(plans)])
        await trio.sleep(1)
        assert (await rt.queue("jobs").metrics())["delayed"] == 2
    async with open_queues(data_dir, max_batch_size=5) as rt:
        waiting = await rt.queue("jobs").peek()
        assert [(m["body"]["n"], m["attempts"]) for m in waiting] == [(1, 1), (3, 1)]
        await trio.sleep(110)  # the retry delay, then the batch timeout for a partial batch
        assert [(body["n"], attempts) for body, attempts in DELIVERED[-1][1]] == [(1, 2), (3, 2)]


@pytest.fixture
def small_index(monkeypatch):
    """A queue index of 10 messages, so that a backlog of a few dozen waits on disk."""
    monkeypatch.setattr(queue_actor, "INDEX_WINDOW", 10)


async def test_a_backlog_past_the_index_waits_on_disk_and_keeps_its_order(data_dir, autojump_clock, small_index):
    async with open_queues(data_dir, max_batch_size=3) as rt:
        await rt.queue("jobs").pause()
        for start in range(0, 30, 6):
            await rt.env.JOBS.send_batch([{"body": n} for n in range(start, start + 6)])
        await rt.env.JOBS.send(30)
        metrics = await rt.queue("jobs").metrics()
        assert metrics["backlog"] == 31 and metrics["bytes"] == 10 + 21 * 2
        assert [m["body"] for m in await rt.queue("jobs").peek(5)] == [0, 1, 2, 3, 4]
    async with open_queues(data_dir, max_batch_size=3) as rt:
        assert (await rt.queue("jobs").metrics())["backlog"] == 31
        await rt.queue("jobs").resume()
        await trio.sleep(60)
        delivered = [body for index in range(len(DELIVERED)) for body in bodies(index)]
        assert sorted(delivered) == list(range(31)) and len(delivered) == 31
        assert (await rt.queue("jobs").metrics())["backlog"] == 0


async def test_purge_and_redrive_reach_messages_past_the_index(data_dir, autojump_clock, small_index):
    async with open_queues(data_dir) as rt:
        await rt.queue("jobs").pause()
        for start in range(0, 24, 6):
            await rt.env.JOBS.send_batch([{"body": n} for n in range(start, start + 6)])
        assert await rt.queue("jobs").redrive(to="jobs-dlq") == 24
        assert (await rt.queue("jobs").metrics())["backlog"] == 0
        assert sorted(m["body"] for m in await rt.queue("jobs-dlq").peek(100)) == list(range(24))
        assert await rt.queue("jobs-dlq").purge() == 24
    async with open_queues(data_dir) as rt:
        for name in ("jobs", "jobs-dlq"):
            assert (await rt.queue(name).metrics())["backlog"] == 0


async def test_metrics_endpoint_has_every_queue_with_its_label(data_dir, autojump_clock):
    async with open_queues(data_dir, max_retries=0) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            await rt.queue("jobs").send_batch([{"body": {"plan": "ack"}}, {"body": {"plan": "raise"}}])
            await trio.sleep(6)  # the batch times out, is delivered; one acked, one dead-lettered
            await rt.queue("jobs").pause()
            await rt.queue("jobs").send_batch([{"body": n} for n in range(3)])
            text = (await http.get("/metrics")).text
    lines = text.splitlines()
    for expected in (
        'roost_queue_backlog{queue="jobs"} 3',
        'roost_queue_backlog{queue="jobs-dlq"} 1',
        'roost_queue_paused{queue="jobs"} 1',
        'roost_queue_paused{queue="jobs-dlq"} 0',
        'roost_queue_acked_total{queue="jobs"} 1',
        'roost_queue_dead_lettered_total{queue="jobs"} 1',
        "# TYPE roost_queue_acked_total counter",
        "# TYPE roost_queue_backlog gauge",
    ):
        assert expected in lines
    assert lines.count("# TYPE roost_queue_backlog gauge") == 1
    assert "roost_live_actors" in text  # the runtime's own metrics are still there


async def test_a_queue_that_cannot_answer_is_left_out_of_a_scrape_with_a_warning(
    data_dir, autojump_clock, monkeypatch, caplog
):
    original = Queue.metrics

    async def metrics(self):
        if self.name == "jobs":
            raise OverloadedError("too many events waiting")
        return await original(self)

    monkeypatch.setattr(Queue, "metrics", metrics)
    async with open_queues(data_dir) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            scrape = await http.get("/metrics")
    assert scrape.status_code == 200
    lines = scrape.text.splitlines()
    assert 'roost_queue_backlog{queue="jobs-dlq"} 0' in lines
    assert not any('queue="jobs"' in line for line in lines)
    [skipped] = [r for r in caplog.records if getattr(r, "event", None) == "queue.metrics_skipped"]
    assert skipped.queue == "jobs" and skipped.error.startswith("OverloadedError")


async def test_queue_routes(data_dir, autojump_clock):
    async with open_queues(data_dir) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            assert (await http.post("/queues/jobs/pause")).json() == {"paused": True}
            sent = await http.post("/queues/jobs/messages", json={"body": {"a": 1}})
            assert sent.status_code == 202 and len(sent.json()["id"]) == 32
            batch = await http.post(
                "/queues/jobs/messages/batch",
                json={
                    "messages": [
                        {"body": "t", "content_type": "text"},
                        {"body": "AP8=", "content_type": "bytes"},
                    ]
                },
            )
            assert batch.status_code == 202 and len(batch.json()["ids"]) == 2
            peeked = (await http.get("/queues/jobs/messages?limit=5")).json()["messages"]
            assert [m["body"] for m in peeked] == [{"a": 1}, "t", "AP8="]
            assert (await http.get("/queues/jobs")).json()["backlog"] == 3
            names = [q["queue"] for q in (await http.get("/queues")).json()["queues"]]
            assert names == ["jobs", "jobs-dlq"]
            assert (await http.delete("/queues/jobs/messages")).json() == {"purged": 3}
            assert (await http.post("/queues/jobs/resume")).json() == {"paused": False}
            for method, path, kwargs, status in [
                ("POST", "/queues/nope/messages", {"json": {"body": 1}}, 404),
                ("GET", "/queues/nope", {}, 404),
                ("POST", "/queues/jobs/messages", {"content": b"{bad"}, 400),
                ("POST", "/queues/jobs/messages", {"json": {"bod": 1}}, 400),
                (
                    "POST",
                    "/queues/jobs/messages",
                    {"json": {"body": "x" * 128_001, "content_type": "text"}},
                    400,
                ),
                ("POST", "/queues/jobs/messages/batch", {"json": {"messages": "no"}}, 400),
                ("POST", "/queues/jobs/messages", {"content": b"x" * (2 << 20)}, 413),
            ]:
                response = await http.request(method, path, **kwargs)
                assert response.status_code == status, (path, response.text)
                assert set(response.json()) == {"error", "type"}
            assert (await http.get("/queues/jobs")).json()["backlog"] == 0


def pull_queues(**settings):
    return [
        {"queue": "work", "binding": "WORK", "max_retries": 1, "dead_letter_queue": "work-dlq", **settings}
    ]


async def test_pull_leases_messages_and_ack_removes_them(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queues()) as rt:
        queue = rt.env.WORK
        ids = await queue.send_batch([{"body": i} for i in range(3)])
        pulled = await queue.pull(batch_size=2, visibility_timeout=30)
        assert [m.id for m in pulled] == ids[:2]
        assert [m.body for m in pulled] == [0, 1] and all(m.attempts == 1 for m in pulled)
        assert len({m.lease_id for m in pulled}) == 2
        assert [m.id for m in await queue.pull(batch_size=5)] == [ids[2]]  # leased ones are hidden
        assert await queue.pull() == []
        assert await queue.ack([pulled[0].lease_id, "not-a-lease"]) == 1
        metrics = await queue.metrics()
        assert (metrics["backlog"], metrics["in_flight"], metrics["acked"]) == (2, 2, 1)


async def test_an_expired_lease_makes_the_message_visible_again(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queues()) as rt:
        queue = rt.env.WORK
        await queue.send("x", content_type="text")
        [first] = await queue.pull(visibility_timeout=10)
        await trio.sleep(11)
        [again] = await queue.pull(visibility_timeout=10)
        assert again.id == first.id and again.attempts == 2 and again.lease_id != first.lease_id
        assert await queue.ack([first.lease_id]) == 0  # the old lease is gone
        assert await queue.ack([again.lease_id]) == 1


async def test_pull_retry_delays_and_dead_letters_past_max_retries(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queues(retry_delay=5)) as rt:
        queue = rt.env.WORK
        await queue.send({"job": 1})
        [first] = await queue.pull()
        assert await queue.retry([first.lease_id], delay_seconds=20) == 1
        assert await queue.pull() == []
        await trio.sleep(21)
        [second] = await queue.pull()
        assert second.attempts == 2
        await queue.retry([second.lease_id])  # past max_retries (1): dead-lettered
        assert (await queue.metrics())["backlog"] == 0
        [dead] = await rt.queue("work-dlq").peek()
        assert dead["body"] == {"job": 1} and dead["dead_letter"]["attempts"] == 2


async def test_pull_leases_survive_a_restart(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queues()) as rt:
        await rt.env.WORK.send("x", content_type="text")
        [leased] = await rt.env.WORK.pull(visibility_timeout=60)
    async with open_runtime(data_dir=data_dir, queues=pull_queues()) as rt:
        assert await rt.env.WORK.pull() == []
        assert await rt.env.WORK.ack([leased.lease_id]) == 1


async def test_redrive_moves_dead_letters_back(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queues(max_retries=0)) as rt:
        queue, dlq = rt.env.WORK, rt.queue("work-dlq")
        ids = await queue.send_batch(
            [{"body": "a", "content_type": "text"}, {"body": "b", "content_type": "text"}]
        )
        await queue.retry([m.lease_id for m in await queue.pull()])
        assert [m["id"] for m in await dlq.peek()] == ids
        assert await dlq.redrive(ids=[ids[1]]) == 1
        assert [m["id"] for m in await queue.peek()] == [ids[1]]
        assert await dlq.redrive() == 1
        assert (await dlq.metrics())["backlog"] == 0
        back = await queue.pull()
        assert sorted(m.id for m in back) == sorted(ids) and all(m.attempts == 1 for m in back)
        with pytest.raises(QueueLimitError, match="give 'to'"):
            await queue.send("no origin", content_type="text")
            await queue.redrive()


async def test_pull_ack_and_redrive_routes(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=pull_queues(max_retries=0)) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            await http.post(
                "/queues/work/messages/batch",
                json={
                    "messages": [
                        {"body": {"j": 1}},
                        {"body": "t", "content_type": "text"},
                        {"body": "AP8=", "content_type": "bytes"},
                    ]
                },
            )
            pulled = (
                await http.post(
                    "/queues/work/messages/pull", json={"batch_size": 3, "visibility_timeout_ms": 5000}
                )
            ).json()["messages"]
            assert [m["body"] for m in pulled] == [{"j": 1}, "t", "AP8="]
            assert [m["content_type"] for m in pulled] == ["json", "text", "bytes"]
            assert all(m["attempts"] == 1 and m["lease_id"] and m["timestamp_ms"] > 0 for m in pulled)
            answer = await http.post(
                "/queues/work/messages/ack",
                json={
                    "acks": [{"lease_id": pulled[0]["lease_id"]}],
                    "retries": [{"lease_id": pulled[1]["lease_id"]}],
                },
            )
            assert answer.json() == {"acked": 1, "retried": 1}
            assert (await http.get("/queues/work-dlq")).json()["backlog"] == 1
            assert (await http.post("/queues/work-dlq/redrive", json={})).json() == {"moved": 1}
            for path, body, status in [
                ("/queues/work/messages/pull", {"batch_size": 0}, 400),
                ("/queues/work/messages/pull", {"visibility_timeout_ms": "x"}, 400),
                ("/queues/work/messages/ack", {"acks": [{"lease": 1}]}, 400),
                ("/queues/work/redrive", {"to": "nowhere"}, 404),
                ("/queues/nope/messages/pull", {}, 404),
            ]:
                response = await http.post(path, json=body)
                assert response.status_code == status, (path, response.text)


async def test_messages_carry_the_senders_correlation_id(data_dir, autojump_clock):
    seen = []

    class Tracing(Actor):
        async def queue(self, batch: MessageBatch) -> None:
            seen.extend(m.correlation_id for m in batch.messages)
            raise RuntimeError("to the dead-letter queue")

    queues = [
        {
            "queue": "traced",
            "consumer": Tracing,
            "max_batch_size": 1,
            "max_retries": 0,
            "dead_letter_queue": "dlq",
        },
        {"queue": "parking"},
    ]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            await http.post("/queues/traced/messages", json={"body": 1}, headers={"x-request-id": "order-42"})
        await rt.queue("traced").send(2)  # outside any request or event: no correlation id
        await trio.sleep(10)
        assert sorted(seen, key=str) == [None, "order-42"]
        assert {m["correlation_id"] for m in await rt.queue("dlq").peek()} == {None, "order-42"}
        assert await rt.queue("dlq").redrive(to="parking") == 2
        assert {m["correlation_id"] for m in await rt.queue("parking").peek()} == {None, "order-42"}
