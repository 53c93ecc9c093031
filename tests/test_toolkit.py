"""The async-processing toolkit: backoff, webhook signatures, job status, idempotency."""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import uuid
from datetime import datetime

import httpx
import pytest
import trio

import runtime
from actors import (
    BatchResult,
    IdempotencyKeyReuseError,
    IdempotentResult,
    PermanentError,
    Queue,
    QueueLimitError,
    QueueNotFoundError,
    cancel_job,
    enqueue_batch,
    execute_idempotent,
    get_job_status,
    is_permanent_failure,
    list_jobs,
    process_batch,
    schedule_job,
    update_job_status,
    verify_stripe_signature,
    with_backoff,
)
from actors.backoff import backoff_delay
from actors.names import SCHEDULER_BINDING
from actors.scheduler import SchedulerActor, _shard
from runtime import Actor, OverloadedError, load_config, open_runtime
from runtime.errors import ConfigError
from runtime.extensions import BUILTINS
from runtime.testing import inject_commit_failure, run_in_actor

# -- backoff ---------------------------------------------------------------------------------


class HttpFailure(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status


class Response:
    def __init__(self, status: int) -> None:
        self.status_code = status


class ClientError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.response = Response(status)


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (PermanentError("no"), True),
        (HttpFailure(400), True),
        (HttpFailure(404), True),
        (HttpFailure(408), False),
        (HttpFailure(429), False),
        (HttpFailure(500), False),
        (HttpFailure(503), False),
        (ClientError(422), True),
        (ClientError(429), False),
        (ValueError("plain"), False),
    ],
)
def test_is_permanent_failure(error, permanent):
    assert is_permanent_failure(error) is permanent


async def test_backoff_retries_with_capped_exponential_delays(autojump_clock):
    attempts = []

    async def flaky():
        attempts.append(trio.current_time())
        if len(attempts) < 5:
            raise HttpFailure(503)
        return "ok"

    assert await with_backoff(flaky, max_retries=5, base_delay=1, max_delay=4, jitter=False) == "ok"
    gaps = [round(b - a, 6) for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps == [1, 2, 4, 4]


async def test_backoff_gives_up_after_max_retries_with_the_last_error(autojump_clock):
    calls = []

    async def always():
        calls.append(1)
        raise HttpFailure(500 + len(calls))

    with pytest.raises(HttpFailure, match="HTTP 504"):
        await with_backoff(always, max_retries=3, base_delay=0.5, jitter=True)
    assert len(calls) == 4


async def test_backoff_does_not_retry_permanent_errors(autojump_clock):
    calls = []

    async def rejected():
        calls.append(1)
        raise HttpFailure(402)

    with pytest.raises(HttpFailure):
        await with_backoff(rejected, max_retries=5)
    assert calls == [1]

    async def custom():
        calls.append(2)
        raise KeyError("stop")

    with pytest.raises(KeyError):
        await with_backoff(custom, is_permanent=lambda e: isinstance(e, KeyError))
    assert calls == [1, 2]


def test_full_jitter_stays_under_the_capped_delay():
    rng = random.Random(1)
    delays = [
        backoff_delay(i, base_delay=1, max_delay=10, jitter=True, rng=rng)
        for i in range(8)
        for _ in range(50)
    ]
    assert all(0 <= d <= 10 for d in delays)
    assert max(backoff_delay(2, base_delay=1, max_delay=10, jitter=True, rng=rng) for _ in range(200)) <= 4
    assert len({round(d, 6) for d in delays}) > 100


# -- webhook signatures ----------------------------------------------------------------------

SECRET = "whsec_test"
PAYLOAD = b'{"id": "evt_1", "type": "payment_intent.succeeded"}'


def sign(payload: bytes, timestamp: int, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def test_a_valid_signature_verifies():
    t = 1_700_000_000
    assert verify_stripe_signature(PAYLOAD, f"t={t},v1={sign(PAYLOAD, t)}", SECRET, now=t + 10)


def test_any_of_several_v1_signatures_verifies():
    t = 1_700_000_000
    header = f"t={t},v1={sign(PAYLOAD, t, 'old_secret')},v1={sign(PAYLOAD, t)},v0=ignored"
    assert verify_stripe_signature(PAYLOAD, header, SECRET, now=t)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "t=abc,v1=00",
        "v1=" + "0" * 64,
        "t=1700000000",
        "t=1700000000,v1=" + "0" * 64,
    ],
)
def test_malformed_or_wrong_signatures_do_not_verify(header):
    assert verify_stripe_signature(PAYLOAD, header, SECRET, now=1_700_000_000) is False


def test_tampered_payload_wrong_secret_and_expired_timestamp_do_not_verify():
    t = 1_700_000_000
    header = f"t={t},v1={sign(PAYLOAD, t)}"
    assert not verify_stripe_signature(PAYLOAD + b" ", header, SECRET, now=t)
    assert not verify_stripe_signature(PAYLOAD, header, "whsec_other", now=t)
    assert not verify_stripe_signature(PAYLOAD, header, SECRET, now=t + 301)
    assert verify_stripe_signature(PAYLOAD, header, SECRET, now=t + 299)
    assert not verify_stripe_signature(PAYLOAD, header, SECRET, now=t + 20, tolerance=10)
    assert not verify_stripe_signature(PAYLOAD, None, SECRET, now=t)  # type: ignore[arg-type]


async def test_signature_time_defaults_to_the_runtime_clock(autojump_clock):
    t = int(runtime.now())
    header = f"t={t},v1={sign(PAYLOAD, t)}"
    assert verify_stripe_signature(PAYLOAD, header, SECRET)
    await trio.sleep(400)
    assert not verify_stripe_signature(PAYLOAD, header, SECRET)


# -- job status ------------------------------------------------------------------------------


async def test_job_status_lifecycle_and_expiry(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir) as rt:
        assert await get_job_status(rt.env, "job-1") is None
        created = await update_job_status(rt.env, "job-1", status="pending", ttl_seconds=100)
        await trio.sleep(10)
        await update_job_status(rt.env, "job-1", status="processing", progress=40, ttl_seconds=100)
        record = await get_job_status(rt.env, "job-1")
        assert record["status"] == "processing" and record["progress"] == 40
        assert record["created_at"] == created["created_at"]
        assert record["updated_at"] == pytest.approx(created["created_at"] + 10)
        await update_job_status(rt.env, "job-1", status="completed", progress=100, result={"ok": True})
        assert (await get_job_status(rt.env, "job-1"))["result"] == {"ok": True}
        await update_job_status(rt.env, "job-2", status="failed", error="card declined", ttl_seconds=50)
        await trio.sleep(51)
        assert await get_job_status(rt.env, "job-2") is None
        assert (await get_job_status(rt.env, "job-1"))["status"] == "completed"


@pytest.mark.parametrize(
    "fields",
    [{"status": "done"}, {"progress": 101}, {"progress": -1}, {"progress": "50"}, {"colour": "red"}],
)
async def test_bad_job_status_changes_nothing(data_dir, autojump_clock, fields):
    async with open_runtime(data_dir=data_dir) as rt:
        await update_job_status(rt.env, "j", status="pending", progress=0)
        with pytest.raises(ValueError):
            await update_job_status(rt.env, "j", **fields)
        record = await get_job_status(rt.env, "j")
        assert record["status"] == "pending" and record["progress"] == 0


async def test_job_status_route(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir) as rt:
        await update_job_status(rt.env, "order-7", status="processing", progress=10)
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            found = await http.get("/jobs/order-7/status")
            assert found.status_code == 200 and found.json()["progress"] == 10
            missing = await http.get("/jobs/nope/status")
            assert missing.status_code == 404 and missing.json()["error"] == "Job not found"


# -- idempotency -----------------------------------------------------------------------------


async def test_concurrent_callers_run_the_operation_once(data_dir, autojump_clock):
    runs = []

    async def charge():
        runs.append(1)
        await trio.sleep(2)  # the payment provider takes a while
        return {"charge": "ch_1"}

    async with open_runtime(data_dir=data_dir) as rt:
        results: list[IdempotentResult] = []

        async def caller():
            results.append(await execute_idempotent(rt.env, "order-1", charge))

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(caller)
        assert runs == [1]
        assert all(r.result == {"charge": "ch_1"} for r in results)
        assert sorted(r.cached for r in results) == [False] + [True] * 99
        again = await execute_idempotent(rt.env, "order-1", charge)
        assert again == IdempotentResult({"charge": "ch_1"}, cached=True) and runs == [1]


async def test_a_failed_operation_clears_the_key_for_a_retry(data_dir, autojump_clock):
    attempts = []

    async def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("provider down")
        return "paid"

    async with open_runtime(data_dir=data_dir) as rt:
        with pytest.raises(ConnectionError):
            await execute_idempotent(rt.env, "k", flaky)
        assert await execute_idempotent(rt.env, "k", flaky) == IdempotentResult("paid", cached=False)
        assert len(attempts) == 2


async def test_a_vanished_runner_loses_the_key_when_its_lease_ends(data_dir, autojump_clock):
    runs = []

    async def hangs():
        runs.append("first")
        await trio.sleep_forever()

    async def works():
        runs.append("second")
        return "done"

    async with open_runtime(data_dir=data_dir) as rt:
        with trio.move_on_after(5):
            await execute_idempotent(rt.env, "k", hangs, lease_seconds=30)
        # The cancelled runner gave the key back at once.
        assert await execute_idempotent(rt.env, "k", works, lease_seconds=30) == IdempotentResult(
            "done", False
        )

        async def claim_and_vanish(actor):
            return await actor.claim("request-a", 30, 100)

        stub = rt.env["__IDEMPOTENCY"].get_by_name("crashed")
        await run_in_actor(stub, claim_and_vanish)  # a runner that died without a word
        started = runtime.now()
        assert (await execute_idempotent(rt.env, "crashed", works, fingerprint="request-a")).cached is False
        assert runtime.now() - started == pytest.approx(30, abs=0.1)
        assert runs == ["first", "second", "second"]

        # Nobody calls again: the vanished runner's record expires its TTL after its lease.
        await run_in_actor(rt.env["__IDEMPOTENCY"].get_by_name("forgotten"), claim_and_vanish)
        await trio.sleep(35)
        with pytest.raises(IdempotencyKeyReuseError):
            await execute_idempotent(rt.env, "forgotten", works, fingerprint="request-b")
        await trio.sleep(100)
        assert (await execute_idempotent(rt.env, "forgotten", works, fingerprint="request-b")).cached is False


async def test_records_expire_after_their_ttl(data_dir, autojump_clock):
    runs = []

    async def operation():
        runs.append(1)
        return len(runs)

    async with open_runtime(data_dir=data_dir) as rt:
        assert (await execute_idempotent(rt.env, "k", operation, ttl_seconds=60)).result == 1
        await trio.sleep(30)
        assert await execute_idempotent(rt.env, "k", operation, ttl_seconds=60) == IdempotentResult(1, True)
        await trio.sleep(31)
        assert await execute_idempotent(rt.env, "k", operation, ttl_seconds=60) == IdempotentResult(2, False)


async def test_a_reused_key_with_another_fingerprint_is_refused(data_dir, autojump_clock):
    class Payments(Actor):
        async def pay(self, key: str, fingerprint: str) -> str:
            async def charge():
                return f"charged {fingerprint}"

            return (await execute_idempotent(self.env, key, charge, fingerprint=fingerprint)).result

    async with open_runtime(data_dir=data_dir, actors={"PAYMENTS": Payments}) as rt:

        async def charge():
            return "ok"

        await execute_idempotent(rt.env, "k", charge, fingerprint="sha256:aaa")
        with pytest.raises(IdempotencyKeyReuseError):
            await execute_idempotent(rt.env, "k", charge, fingerprint="sha256:bbb")
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            first = await http.post("/rpc/PAYMENTS/p/pay", json={"args": ["order-9", "a"]})
            assert first.json() == {"result": "charged a"}
            reused = await http.post("/rpc/PAYMENTS/p/pay", json={"args": ["order-9", "b"]})
            assert reused.status_code == 422
            assert reused.json()["type"] == "IdempotencyKeyReuseError"


# -- scheduled jobs --------------------------------------------------------------------------

RECEIVED: list[tuple[float, object]] = []


class Recorder(Actor):
    async def queue(self, batch):
        RECEIVED.extend((runtime.now(), m.body) for m in batch.messages)


def recorder_queues():
    return [{"queue": "reminders", "consumer": Recorder, "max_batch_size": 1}]


async def test_scheduled_jobs_run_when_due_and_only_then(data_dir, autojump_clock):
    RECEIVED.clear()
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        start = runtime.now()
        later = await schedule_job(rt.env, {"remind": "later"}, start + 100, queue="reminders")
        sooner = await schedule_job(rt.env, {"remind": "sooner"}, start + 10, queue="reminders")
        cancelled = await schedule_job(rt.env, {"remind": "never"}, start + 50, queue="reminders")
        assert [j["id"] for j in await list_jobs(rt.env)] == [sooner, cancelled, later]
        assert await cancel_job(rt.env, cancelled) is True
        assert await cancel_job(rt.env, cancelled) is False
        await trio.sleep(9)
        assert RECEIVED == []
        await trio.sleep(2)
        assert [body for _, body in RECEIVED] == [{"remind": "sooner"}]
        await trio.sleep(100)
        assert [body for _, body in RECEIVED] == [{"remind": "sooner"}, {"remind": "later"}]
        assert RECEIVED[0][0] == pytest.approx(start + 10, abs=0.1)
        assert RECEIVED[1][0] == pytest.approx(start + 100, abs=0.1)
        assert await list_jobs(rt.env) == []


async def test_scheduled_jobs_survive_a_restart(data_dir, autojump_clock):
    RECEIVED.clear()
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        await schedule_job(rt.env, {"n": 1}, runtime.now() + 60, queue="reminders")
        await schedule_job(rt.env, {"n": 2}, runtime.now() + 3600, queue="reminders")
    await trio.sleep(120)  # down while the first came due
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        await trio.sleep(1)
        assert [body for _, body in RECEIVED] == [{"n": 1}]
        await trio.sleep(3600)
        assert [body for _, body in RECEIVED] == [{"n": 1}, {"n": 2}]


async def test_schedule_job_refuses_bad_input(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        with pytest.raises(QueueNotFoundError):
            await schedule_job(rt.env, {}, runtime.now(), queue="nowhere")
        with pytest.raises(QueueLimitError):
            await schedule_job(rt.env, {"blob": "x" * 200_000}, runtime.now(), queue="reminders")
        with pytest.raises(ValueError):
            await schedule_job(rt.env, {}, datetime(2030, 1, 1), queue="reminders")
        for never in (math.inf, math.nan):
            with pytest.raises(ValueError, match="finite"):
                await schedule_job(rt.env, {}, never, queue="reminders")
        with pytest.raises(ValueError):
            await cancel_job(rt.env, "not-an-id")
        assert await list_jobs(rt.env) == []


async def test_many_jobs_run_each_at_its_time_including_past_and_simultaneous_ones(data_dir, autojump_clock):
    RECEIVED.clear()
    rng = random.Random(5)
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        start = runtime.now()
        # 300 due together (more than a shard lists at once), 100 at random times, 5 in the past.
        due = [start + 10] * 300 + [start + rng.uniform(0, 100) for _ in range(100)] + [start - 3600] * 5
        for n, execute_at in enumerate(due):
            await schedule_job(rt.env, {"n": n}, execute_at, queue="reminders")
        await trio.sleep(9.5)
        assert sorted(body["n"] for _, body in RECEIVED) == [
            n for n, at in enumerate(due) if at < start + 9.5
        ]
        await trio.sleep(92)
        assert sorted(body["n"] for _, body in RECEIVED) == list(range(len(due)))
        for at, body in RECEIVED:
            assert at == pytest.approx(max(start, due[body["n"]]), abs=0.1)
        assert await list_jobs(rt.env) == []


async def test_large_jobs_due_together_are_sent_within_the_batch_limits(data_dir, autojump_clock):
    RECEIVED.clear()
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        due = runtime.now() + 10
        # 100 kB each: two would already pass send_batch's 256,000 bytes.
        for n in range(5):
            await schedule_job(rt.env, {"n": n, "blob": "x" * 100_000}, due, queue="reminders")
        await trio.sleep(11)
        assert sorted(body["n"] for _, body in RECEIVED) == list(range(5))
        assert await list_jobs(rt.env) == []


@pytest.mark.parametrize("send_fails", [False, True])
async def test_cancelling_a_job_being_sent_answers_with_the_outcome_of_its_send(
    data_dir, autojump_clock, monkeypatch, send_fails
):
    RECEIVED.clear()
    original = Queue.send_scheduled

    async def slow_send(self, jobs):
        await trio.sleep(5)
        if send_fails:
            raise ConnectionError("queue unreachable")
        await original(self, jobs)

    monkeypatch.setattr(Queue, "send_scheduled", slow_send)
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        start = runtime.now()
        job = await schedule_job(rt.env, {"n": 1}, start + 10, queue="reminders")
        await trio.sleep(12)  # the send started at +10 and ends at +15
        assert await cancel_job(rt.env, job) is send_fails
        assert runtime.now() == pytest.approx(start + 15, abs=0.1)
        await trio.sleep(60)  # past any retry
        assert [body for _, body in RECEIVED] == ([] if send_fails else [{"n": 1}])
        assert await list_jobs(rt.env) == []


async def test_list_jobs_with_a_limit_gives_the_soonest(data_dir, autojump_clock):
    rng = random.Random(9)
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        start = runtime.now()
        for n in range(40):
            await schedule_job(rt.env, {"n": n}, start + rng.uniform(10, 1000), queue="reminders")
        every = await list_jobs(rt.env)
        assert len(every) == 40
        assert await list_jobs(rt.env, limit=7) == every[:7]
        assert await list_jobs(rt.env, limit=100) == every
        for bad in (0, -1, True, 2.5, "3"):
            with pytest.raises(ValueError):
                await list_jobs(rt.env, limit=bad)


async def pending_on_metrics(rt) -> int:
    transport = httpx.ASGITransport(app=rt.asgi_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
        text = (await http.get("/metrics")).text
    [line] = [line for line in text.splitlines() if line.startswith("roost_scheduled_jobs_pending ")]
    return int(line.split()[1])


async def test_metrics_count_the_pending_jobs_across_a_restart(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        assert await pending_on_metrics(rt) == 0
        start = runtime.now()
        await schedule_job(rt.env, {"n": 1}, start + 10, queue="reminders")
        later = [await schedule_job(rt.env, {"n": n}, start + 100, queue="reminders") for n in (2, 3)]
        assert await pending_on_metrics(rt) == 3
        assert await cancel_job(rt.env, later[0]) is True
        assert await pending_on_metrics(rt) == 2
        await trio.sleep(11)
        assert await pending_on_metrics(rt) == 1
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        assert await pending_on_metrics(rt) == 1
        await trio.sleep(100)
        assert await pending_on_metrics(rt) == 0


class OverloadedScheduler(SchedulerActor):
    async def pending_count(self) -> int:
        raise OverloadedError("too many events waiting")


class OverloadedSchedulerExtension:
    name = "overloaded-scheduler"

    def namespaces(self, config):
        return {SCHEDULER_BINDING: OverloadedScheduler}


OVERLOADED_SCHEDULER = OverloadedSchedulerExtension()


async def test_a_shard_that_cannot_answer_leaves_the_count_out_of_a_scrape(data_dir, autojump_clock, caplog):
    extensions = (BUILTINS, f"{__name__}:OVERLOADED_SCHEDULER")
    async with open_runtime(data_dir=data_dir, queues=recorder_queues(), extensions=extensions) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            scrape = await http.get("/metrics")
    assert scrape.status_code == 200
    assert not any(line.startswith("roost_scheduled_jobs_pending ") for line in scrape.text.splitlines())
    assert [r.shard for r in caplog.records if getattr(r, "event", None) == "scheduler.metrics_skipped"] == [
        0
    ]


async def test_a_job_cancelled_while_an_earlier_batch_is_sent_is_not_sent(
    data_dir, autojump_clock, monkeypatch
):
    RECEIVED.clear()
    original = Queue.send_scheduled

    async def slow_send(self, jobs):
        await trio.sleep(5)
        await original(self, jobs)

    monkeypatch.setattr(Queue, "send_scheduled", slow_send)
    monkeypatch.setattr("actors.scheduler._shard", lambda job_id: "shard-0")
    queues = [{"queue": name, "consumer": Recorder, "max_batch_size": 1} for name in ("first", "second")]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        start = runtime.now()
        jobs = {
            await schedule_job(rt.env, {"n": n}, start + 10, queue=queue): n
            for n, queue in ((1, "first"), (2, "second"))
        }
        # Due together, they are sent in the order of their ids, a batch per queue.
        sent_first, waits = sorted(jobs)
        await trio.sleep(12)  # the one batch is being sent; the other waits
        assert await cancel_job(rt.env, waits) is True
        await trio.sleep(60)
        assert [body for _, body in RECEIVED] == [{"n": jobs[sent_first]}]
        assert await list_jobs(rt.env) == []
        assert await pending_on_metrics(rt) == 0


class OldLayoutScheduler(Actor):
    """Stores a job as the scheduler did before its due index: the record and an alarm only."""

    async def put_job(self, job_id: str, record: dict) -> None:
        await self.storage.put(f"job:{job_id}", record)
        current = await self.storage.get_alarm()
        if current is None or record["execute_at"] < current:
            await self.storage.set_alarm(record["execute_at"])


class OldLayout:
    name = "old-scheduler-layout"

    def namespaces(self, config):
        return {SCHEDULER_BINDING: OldLayoutScheduler}


OLD_LAYOUT = OldLayout()


async def test_jobs_stored_before_the_due_index_still_run_and_cancel(data_dir, autojump_clock):
    RECEIVED.clear()
    start = runtime.now()
    ids = [uuid.uuid4().hex for _ in range(20)]
    async with open_runtime(data_dir=data_dir, extensions=(f"{__name__}:OLD_LAYOUT",)) as rt:
        for n, job_id in enumerate(ids):
            record = {
                "job": {"n": n},
                "execute_at": start + 10 + n,
                "queue": "reminders",
                "created_at": start,
            }
            await rt.namespace(SCHEDULER_BINDING).get_by_name(_shard(job_id)).put_job(job_id, record)
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        assert await cancel_job(rt.env, ids[0]) is True
        await trio.sleep(40)  # the other shards wake by their alarms
        assert await pending_on_metrics(rt) == 0
        assert [body for _, body in RECEIVED] == [{"n": n} for n in range(1, 20)]
        assert [at for at, _ in RECEIVED] == pytest.approx([start + 10 + n for n in range(1, 20)], abs=0.1)
        assert await list_jobs(rt.env) == []


# -- batches ---------------------------------------------------------------------------------


async def test_enqueue_and_process_batches_with_progress(data_dir, autojump_clock):
    seen: list[int] = []
    results: list[BatchResult] = []
    bad = {7, 23}

    class Worker(Actor):
        async def queue(self, batch):
            for message in batch.messages:

                async def handle(item):
                    seen.append(item)
                    if item in bad:
                        raise ValueError(f"bad item {item}")

                result = await process_batch(message.body, handle, env=self.env)
                results.append(result)
                if result.failed:
                    bad.difference_update(result.failed_items)  # their next attempt succeeds
                    await self.env.WORK.send({**message.body, "items": result.failed_items})

    queues = [
        {"queue": "work", "binding": "WORK", "consumer": Worker, "max_batch_size": 10, "max_batch_timeout": 1}
    ]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        batch_id = await enqueue_batch(list(range(30)), rt.env.WORK, batch_size=10, env=rt.env)
        assert (await get_job_status(rt.env, batch_id))["status"] == "pending"
        await trio.sleep(10)
        assert sorted(seen) == sorted([*range(30), 7, 23])  # only the failed items ran again
        assert sum(r.failed for r in results) == 2
        assert sorted(item for r in results for item in r.failed_items) == [7, 23]
        status = await get_job_status(rt.env, batch_id)
        assert status["status"] == "completed" and status["progress"] == 100
        assert (status["succeeded"], status["failures"], status["total"]) == (30, 2, 30)


# -- webhooks --------------------------------------------------------------------------------


async def test_webhook_route_verifies_enqueues_once_and_answers(data_dir, autojump_clock):
    RECEIVED.clear()
    queues = [{"queue": "stripe-events", "consumer": Recorder, "max_batch_size": 1}]
    webhooks = [{"provider": "stripe", "queue": "stripe-events", "secret": "STRIPE_WEBHOOK_SECRET"}]
    async with open_runtime(
        data_dir=data_dir, queues=queues, webhooks=webhooks, vars={"STRIPE_WEBHOOK_SECRET": SECRET}
    ) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:

            async def post(body: bytes, header: str | None, provider: str = "stripe") -> httpx.Response:
                headers = {} if header is None else {"stripe-signature": header}
                return await http.post(f"/webhooks/{provider}", content=body, headers=headers)

            t = int(runtime.now())
            good = f"t={t},v1={sign(PAYLOAD, t)}"
            first = await post(PAYLOAD, good)
            assert first.status_code == 200 and first.json() == {"received": True}
            assert (await post(PAYLOAD, good)).json() == {"received": True}  # redelivered
            assert (await post(PAYLOAD, None)).status_code == 401
            assert (await post(PAYLOAD + b" ", good)).status_code == 401
            assert (await post(PAYLOAD, f"t={t - 1000},v1={sign(PAYLOAD, t - 1000)}")).status_code == 401
            bad_json = b"{not json"
            assert (await post(bad_json, f"t={t},v1={sign(bad_json, t)}")).status_code == 400
            no_id = b'{"type": "x"}'
            assert (await post(no_id, f"t={t},v1={sign(no_id, t)}")).status_code == 400
            assert (await post(PAYLOAD, good, provider="paypal")).status_code == 404
            await trio.sleep(10)
        assert [body for _, body in RECEIVED] == [{"id": "evt_1", "type": "payment_intent.succeeded"}]


def test_webhook_config_must_name_a_queue_and_a_var(tmp_path):
    base = '[vars]\nSECRET = "s"\n[[queues.producers]]\nqueue = "events"\nbinding = "EVENTS"\n'
    path = tmp_path / "roost.toml"
    path.write_text(base + '[[webhooks]]\nprovider = "stripe"\nqueue = "events"\nsecret = "SECRET"\n')
    assert load_config(path).webhooks["stripe"].queue == "events"
    path.write_text(base + '[[webhooks]]\nprovider = "stripe"\nqueue = "nowhere"\nsecret = "SECRET"\n')
    with pytest.raises(ConfigError, match="queue 'nowhere' is not declared"):
        load_config(path)
    path.write_text(base + '[[webhooks]]\nprovider = "stripe"\nqueue = "events"\nsecret = "NOPE"\n')
    with pytest.raises(ConfigError, match="no var named 'NOPE'"):
        load_config(path)


async def test_a_failed_scheduled_send_is_retried_with_backoff(data_dir, autojump_clock, caplog, monkeypatch):
    RECEIVED.clear()
    # One shard holds the three jobs, so they go out (and fail) as one batch.
    monkeypatch.setattr("actors.scheduler._shard", lambda job_id: "shard-0")
    async with open_runtime(data_dir=data_dir, queues=recorder_queues()) as rt:
        start = runtime.now()
        jobs = [await schedule_job(rt.env, {"n": n}, start + 10, queue="reminders") for n in range(3)]
        # The queue's own commit fails twice when the jobs are sent: the send raises.
        inject_commit_failure(rt.namespace("__QUEUES").get_by_name("reminders"), times=2)
        await trio.sleep(12)
        assert RECEIVED == []
        assert sorted(job["id"] for job in await list_jobs(rt.env)) == sorted(jobs)
        await trio.sleep(5)  # retried after 1 s, then 2 s
        assert sorted(body["n"] for _, body in RECEIVED) == [0, 1, 2]
        assert [at for at, _ in RECEIVED] == pytest.approx([start + 13] * 3, abs=0.5)
        assert await list_jobs(rt.env) == []
    failed = [
        record for record in caplog.records if getattr(record, "event", None) == "scheduler.send_failed"
    ]
    assert [(record.queue, sorted(record.jobs)) for record in failed] == [("reminders", sorted(jobs))] * 2
