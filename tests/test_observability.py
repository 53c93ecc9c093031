"""Correlation ids end to end, structured log lines and time limits, through the public API
and HTTP (the ASGI app), in virtual time."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from actors import MessageBatch, get_job_status, list_jobs, schedule_job, update_job_status
from runtime import Actor, AlarmInfo, OverloadedError, Request, Response, now, open_runtime
from runtime.config import secret_values
from runtime.errors import CallTimeoutError
from runtime.observability.logs import REDACTED, JsonFormatter, TextFormatter

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
API_TOKEN = "tok_live_very_secret_value"


def json_lines(caplog: pytest.LogCaptureFixture, *, secrets: list[str] = ()) -> list[dict]:
    """Every captured record as ``roost serve --log-format json`` writes it, parsed back."""
    formatter = JsonFormatter(secrets=secrets)
    return [json.loads(formatter.format(record)) for record in caplog.records]


def events(lines: list[dict], name: str) -> list[dict]:
    return [line for line in lines if line.get("event") == name]


def client(rt) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.asgi_app), base_url="http://roost.test")


class Payments(Actor):
    """Fails every delivery, after recording what it saw; keeps a job status for the order."""

    seen: list[tuple[int, str | None]] = []

    async def queue(self, batch: MessageBatch) -> None:
        for message in batch.messages:
            self.seen.append((message.attempts, message.correlation_id))
            await update_job_status(self.env, message.body["order"], status="processing")
        raise RuntimeError(f"provider down (token {self.env.API_TOKEN})")


class Front(Actor):
    async def place(self, order: str) -> str | None:
        await self.env.PAYMENTS.send({"order": order})
        return self.ctx.correlation_id

    async def fetch(self, request: Request) -> Response:
        await trio.sleep(float(request.query.get("sleep", 0)))
        return Response({"correlation_id": self.ctx.correlation_id})


PAYMENT_QUEUES = [
    {
        "queue": "payments",
        "binding": "PAYMENTS",
        "consumer": Payments,
        "max_batch_size": 1,
        "max_batch_timeout": 0,
        "max_retries": 3,
        "retry_delay": 2,
        "dead_letter_queue": "payments-dlq",
    }
]


async def test_a_request_id_reaches_the_consumer_every_retry_the_dlq_the_job_and_the_logs(
    data_dir, autojump_clock, caplog
):
    caplog.set_level(logging.INFO)
    Payments.seen = []
    async with open_runtime(
        data_dir=data_dir, actors={"FRONT": Front}, queues=PAYMENT_QUEUES, vars={"API_TOKEN": API_TOKEN}
    ) as rt:
        async with client(rt) as http:
            response = await http.post(
                "/rpc/FRONT/shop/place", json={"args": ["order-7"]}, headers={"x-request-id": "req-abc"}
            )
            assert response.headers["x-request-id"] == "req-abc"
            assert response.json() == {"result": "req-abc"}
            await trio.sleep(30)
            assert Payments.seen == [(1, "req-abc"), (2, "req-abc"), (3, "req-abc"), (4, "req-abc")]
            [dead] = await rt.queue("payments-dlq").peek()
            assert dead["correlation_id"] == "req-abc" and dead["dead_letter"]["attempts"] == 4
            status = (await http.get("/jobs/order-7/status")).json()
            assert status["correlation_id"] == "req-abc"
        lines = json_lines(caplog, secrets=secret_values(rt.config))
    failed = events(lines, "queue.delivery_failed")
    assert [line["attempts"] for line in failed] == [1, 2, 3]
    [died] = events(lines, "queue.dead_lettered")
    assert died["attempts"] == 4 and died["dead_letter_queue"] == "payments-dlq"
    for line in [*failed, died]:
        assert line["queue"] == "payments" and line["correlation_id"] == "req-abc"
        assert line["message_id"] == dead["id"] and line["level"] in ("warning", "error")
        assert line["error"].startswith("RuntimeError: provider down")
    # The consumer put the API token in its error; no line shows it.
    assert REDACTED in died["error"]
    assert not any(API_TOKEN in json.dumps(line) for line in lines)


async def test_a_fresh_id_when_none_is_given_and_the_trace_id_of_a_traceparent(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, actors={"FRONT": Front}) as rt, client(rt) as http:
        fresh = await http.get("/actors/FRONT/a/")
        made = fresh.headers["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0
        assert fresh.json() == {"correlation_id": made}
        other = await http.get("/actors/FRONT/a/")
        assert other.headers["x-request-id"] != made
        traced = await http.get("/actors/FRONT/a/", headers={"traceparent": TRACEPARENT})
        assert traced.headers["x-request-id"] == TRACE_ID and traced.json() == {"correlation_id": TRACE_ID}
        both = await http.get(
            "/actors/FRONT/a/", headers={"traceparent": TRACEPARENT, "x-request-id": "mine"}
        )
        assert both.json() == {"correlation_id": "mine"}
        for malformed in ("junk", f"00-{'0' * 32}-00f067aa0ba902b7-01", f"00-{TRACE_ID}-xyz-01"):
            answer = await http.get("/actors/FRONT/a/", headers={"traceparent": malformed})
            assert len(answer.headers["x-request-id"]) == 32 and answer.headers["x-request-id"] != TRACE_ID


async def test_job_status_keeps_the_correlation_id_of_the_request_that_started_it(data_dir, autojump_clock):
    class Jobs(Actor):
        async def start(self, job_id: str) -> None:
            await update_job_status(self.env, job_id, status="pending")

    async with open_runtime(data_dir=data_dir, actors={"JOBS": Jobs}) as rt, client(rt) as http:
        await http.post("/rpc/JOBS/j/start", json={"args": ["job-1"]}, headers={"x-request-id": "req-job"})
        await update_job_status(rt.env, "job-1", status="completed")  # no event: the id stays
        status = (await http.get("/jobs/job-1/status")).json()
        assert status["correlation_id"] == "req-job" and status["status"] == "completed"
        assert (await get_job_status(rt.env, "job-1"))["correlation_id"] == "req-job"


class Reminders(Actor):
    seen: list[tuple[int, str | None]] = []

    async def queue(self, batch: MessageBatch) -> None:
        type(self).seen += [(message.body["n"], message.correlation_id) for message in batch.messages]

    async def plan(self, n: int, at: float) -> None:
        await schedule_job(self.env, {"n": n}, at, queue="reminders")


async def test_scheduled_jobs_due_together_keep_the_correlation_id_of_each_request(data_dir, autojump_clock):
    Reminders.seen = []
    queues = [{"queue": "reminders", "consumer": Reminders, "max_batch_size": 10}]
    async with (
        open_runtime(data_dir=data_dir, actors={"PLANNER": Reminders}, queues=queues) as rt,
        client(rt) as http,
    ):
        due = now() + 60
        for n in range(3):
            await http.post(
                "/rpc/PLANNER/p/plan", json={"args": [n, due]}, headers={"x-request-id": f"req-{n}"}
            )
        assert sorted(job["correlation_id"] for job in await list_jobs(rt.env)) == ["req-0", "req-1", "req-2"]
        await trio.sleep(70)  # due, then up to the default max_batch_timeout
        assert sorted(Reminders.seen) == [(0, "req-0"), (1, "req-1"), (2, "req-2")]


async def test_alarm_retries_actor_resets_and_overloads_are_logged_with_their_fields(
    data_dir, autojump_clock, caplog
):
    caplog.set_level(logging.INFO)

    class Flaky(Actor):
        async def arm(self) -> None:
            await self.storage.set_alarm(0)

        async def alarm(self, info: AlarmInfo) -> None:
            if not info.is_retry:
                raise RuntimeError("first alarm fails")

        async def crash(self) -> None:
            self.ctx.abort("bad state")

        async def slow(self) -> None:
            await trio.sleep(5)

    async with open_runtime(data_dir=data_dir, actors={"F": Flaky}, max_inbox=1) as rt, client(rt) as http:
        await http.post("/rpc/F/a/arm", headers={"x-request-id": "req-alarm"})
        await trio.sleep(10)
        await http.post("/rpc/F/a/crash", headers={"x-request-id": "req-crash"})
        stub = rt.namespace("F").get_by_name("b")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stub.slow)
            await trio.sleep(1)
            with pytest.raises(OverloadedError):
                await stub.slow()
    lines = json_lines(caplog)
    [retry] = events(lines, "alarm.retry")
    assert retry["correlation_id"] == "req-alarm" and retry["retry_count"] == 0
    assert "first alarm fails" in retry["error"] and retry["retry_in_seconds"] >= 2
    assert retry["actor"].startswith("F:")
    [reset] = events(lines, "actor.reset")
    assert reset["correlation_id"] == "req-crash" and "bad state" in reset["reason"]
    [overload] = events(lines, "actor.overloaded")
    assert overload["actor"] == f"F:{stub.id.hex}" and overload["level"] == "warning"


def test_formatters_redact_secrets_and_keep_the_fields():
    record = logging.LogRecord("roost.test", logging.WARNING, __file__, 1, "key %s", ("s3cr3t",), None)
    record.event, record.queue = "demo", "q"
    line = json.loads(JsonFormatter(secrets=["s3cr3t", ""]).format(record))
    assert line["message"] == f"key {REDACTED}" and line["event"] == "demo" and line["queue"] == "q"
    assert line["level"] == "warning" and line["logger"] == "roost.test" and "ts" in line
    text = TextFormatter(secrets=["s3cr3t"]).format(record)
    assert "s3cr3t" not in text and text.endswith(f"key {REDACTED} queue=q")


# -- time limits ------------------------------------------------------------------------------


async def test_a_consumer_past_max_wall_time_counts_as_failed_and_is_retried(
    data_dir, autojump_clock, caplog
):
    caplog.set_level(logging.INFO)
    attempts = []

    class Slow(Actor):
        async def queue(self, batch: MessageBatch) -> None:
            attempts.append(batch.messages[0].attempts)
            if batch.messages[0].attempts == 1:
                await trio.sleep(60)

    queues = [{"queue": "slow", "consumer": Slow, "max_batch_timeout": 0, "max_wall_time": 10}]
    async with open_runtime(data_dir=data_dir, queues=queues) as rt:
        start = trio.current_time()
        await rt.queue("slow").send("x")
        await trio.sleep(30)
        metrics = await rt.queue("slow").metrics()
        assert attempts == [1, 2] and metrics["acked"] == 1 and metrics["retried"] == 1
    [failed] = events(json_lines(caplog), "queue.delivery_failed")
    assert failed["error"] == "TimeoutError: the consumer of queue slow ran past max_wall_time (10 s)"
    assert trio.current_time() - start < 60  # the slow attempt was cut short


async def test_max_wall_time_defaults_to_fifteen_minutes_and_is_checked(data_dir, autojump_clock):
    class Consumer(Actor):
        async def queue(self, batch: MessageBatch) -> None:
            pass

    async with open_runtime(data_dir=data_dir, queues=[{"queue": "q", "consumer": Consumer}]) as rt:
        assert rt.config.queues["q"].max_wall_time == 900
    with pytest.raises(ValueError, match="max_wall_time"):
        async with open_runtime(data_dir=data_dir, queues=[{"queue": "q", "max_wall_time": 0}]):
            pass


async def test_an_alarm_past_its_time_limit_is_retried(data_dir, autojump_clock, caplog):
    caplog.set_level(logging.INFO)
    runs = []

    class Sleeper(Actor):
        async def arm(self) -> None:
            await self.storage.set_alarm(0)

        async def alarm(self, info: AlarmInfo) -> None:
            runs.append(info.retry_count)
            if not info.is_retry:
                await trio.sleep(3600)

    async with open_runtime(data_dir=data_dir, actors={"S": Sleeper}) as rt:
        await rt.namespace("S").get_by_name("a").arm()
        await trio.sleep(960)
        assert runs == [0, 1]
    [retry] = events(json_lines(caplog), "alarm.retry")
    assert "CallTimeoutError" in retry["error"] and "900" in retry["error"]


async def test_rpc_timeout_per_stub(data_dir, autojump_clock):
    class Worker(Actor):
        async def work(self, seconds: float) -> str:
            await self.storage.put("started", True)
            await trio.sleep(seconds)
            await self.storage.put("finished", True)
            return "done"

        async def state(self) -> dict:
            return await self.storage.get_many(["started", "finished"])

    async with open_runtime(data_dir=data_dir, actors={"W": Worker}) as rt:
        stub = rt.namespace("W").get_by_name("a")
        quick = stub.with_options(timeout=5)
        assert await quick.work(1) == "done"
        cut = rt.namespace("W").get_by_name("b").with_options(timeout=5)
        with pytest.raises(CallTimeoutError, match="work on actor W:b took more than 5 s") as caught:
            await cut.work(60)
        assert isinstance(caught.value, TimeoutError)
        # The event was cancelled at its sleep: the write before it stays, the one after never ran.
        assert await cut.state() == {"started": True}
        assert await stub.with_options(timeout=None).work(30) == "done"  # no limit
        for bad in (0, -1, "5", True):
            with pytest.raises(ValueError, match="timeout"):
                stub.with_options(timeout=bad)


async def test_http_request_timeout_answers_504_in_json(data_dir, autojump_clock):
    async with (
        open_runtime(data_dir=data_dir, actors={"FRONT": Front}, request_timeout=10) as rt,
        client(rt) as http,
    ):
        assert rt.request_timeout_seconds == 10
        ok = await http.get("/actors/FRONT/a/?sleep=5")
        assert ok.status_code == 200
        late = await http.get("/actors/FRONT/a/?sleep=30", headers={"x-request-id": "slow-1"})
        assert late.status_code == 504 and late.headers["x-request-id"] == "slow-1"
        assert late.json() == {
            "error": "GET /actors/FRONT/a/ took more than 10 s",
            "type": "CallTimeoutError",
        }
    async with open_runtime(data_dir=data_dir, actors={"FRONT": Front}) as rt:
        assert rt.request_timeout_seconds == 100


# -- roost serve --------------------------------------------------------------------------------

SERVE_APP = """
import trio
from runtime import Actor

class Echo(Actor):
    async def leak(self) -> None:
        self.ctx.wait_until(self._fail())  # its failure is logged, with the traceback

    async def _fail(self) -> None:
        raise RuntimeError("token is " + self.env.API_TOKEN)

    async def nap(self) -> None:
        await trio.sleep(5)
"""

SERVE_CONFIG = f"""
data_dir = "state"
[vars]
API_TOKEN = "{API_TOKEN}"
[[durable_objects.bindings]]
name = "ECHO"
class_name = "serve_echo:Echo"
"""


def test_roost_serve_writes_json_lines_for_config_start_and_shutdown_and_never_a_secret(tmp_path):
    (tmp_path / "serve_echo.py").write_text(SERVE_APP)
    (tmp_path / "roost.toml").write_text(SERVE_CONFIG)
    roost = str(Path(sys.executable).with_name("roost"))
    args = [
        roost,
        "serve",
        "--port",
        "0",
        "--log-format",
        "json",
        "--log-level",
        "info",
        "--request-timeout",
        "1",
    ]
    process = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any(line.get("event") == "serve.started" for line in lines):
            raw = process.stderr.readline()
            assert raw, "roost serve exited early"
            lines.append(json.loads(raw))
        [url] = lines[-1]["binds"]
        with httpx.Client(base_url=url) as http:
            assert http.post("/rpc/ECHO/a/leak").status_code == 200
            late = http.post("/rpc/ECHO/a/nap")
            assert late.status_code == 504 and late.json()["type"] == "CallTimeoutError"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        rest = process.stderr.read()
    finally:
        process.kill()
    lines += [json.loads(raw) for raw in rest.splitlines()]
    assert {"config.loaded", "serve.started", "shutdown.started", "shutdown.done"} <= {
        line.get("event") for line in lines
    }
    assert any(REDACTED in line.get("exception", "") + line["message"] for line in lines)
    assert API_TOKEN not in json.dumps(lines) + rest
