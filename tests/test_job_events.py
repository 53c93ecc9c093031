"""``GET /jobs/{id}/events`` (server-sent events of a job's status) and the scheduled jobs'
routes ``GET /jobs`` and ``DELETE /jobs/{id}``, through the ASGI app in virtual time.

httpx's ASGI transport hands the body over once the stream ended, so each test changes the
job from a task beside the request, a virtual second apart, and reads the whole stream.
Over a real server, as it streams, see ``test_operator_cli``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import trio

from actors import schedule_job, update_job_status
from actors.job_status import MAX_WAIT_SECONDS, wait_job_status_change
from runtime import now, open_runtime


@pytest.fixture
async def rt(data_dir):
    async with open_runtime(data_dir=data_dir, queues=[{"queue": "later"}]) as rt:
        yield rt


def client(rt: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.asgi_app), base_url="http://roost.test")


def parse_events(text: str) -> list[dict[str, Any]]:
    """Each event of an event stream as {"event", "id"?, "data"} (data parsed as JSON), and
    each comment as {"comment": text}."""
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            events.append({"comment": block[1:].strip()})
            continue
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            event[name] = json.loads(value) if name == "data" else value
        events.append(event)
    return events


async def read_events(rt: Any, job_id: str, changes: list[tuple[float, dict[str, Any]]], **headers: str):
    """The response to ``GET /jobs/{job_id}/events`` while ``changes`` (seconds to wait,
    then the fields to set) are applied beside it."""

    async def change() -> None:
        for delay, fields in changes:
            await trio.sleep(delay)
            await update_job_status(rt.env, job_id, **fields)

    async with client(rt) as http, trio.open_nursery() as nursery:
        nursery.start_soon(change)
        return await http.get(f"/jobs/{job_id}/events", headers=headers)


async def test_events_follow_status_and_progress_and_end_at_a_final_status(rt, autojump_clock):
    await update_job_status(rt.env, "job-1", status="pending")
    changes = [
        (1, {"status": "processing", "progress": 30}),
        (1, {"progress": 70}),
        (1, {"status": "completed", "progress": 100, "result": {"rows": 3}}),
    ]
    response = await read_events(rt, "job-1", changes)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = parse_events(response.text)
    assert [(e["event"], e["data"].get("status"), e["data"].get("progress")) for e in events] == [
        ("status", "pending", None),
        ("status", "processing", 30),
        ("status", "processing", 70),
        ("status", "completed", 100),
        ("end", "completed", None),
    ]
    assert [e.get("id") for e in events] == ["1", "2", "3", "4", None]
    assert events[3]["data"]["result"] == {"rows": 3}
    assert events[3]["data"]["job_id"] == "job-1"
    assert events[4]["data"] == {"job_id": "job-1", "status": "completed", "reason": "final"}
    assert trio.current_time() == pytest.approx(3)  # ended with the final status, not later


async def test_a_quiet_stream_sends_a_comment_every_15_seconds(rt, autojump_clock):
    await update_job_status(rt.env, "job-1", status="processing", progress=5)
    response = await read_events(rt, "job-1", [(40, {"status": "failed", "error": "card declined"})])
    events = parse_events(response.text)
    assert [e.get("event") or e["comment"] for e in events] == ["status", "keep-alive", "keep-alive", "status", "end"]
    assert events[3]["data"]["error"] == "card declined"
    assert events[4]["data"]["status"] == "failed"


async def test_a_final_job_gets_its_status_and_the_end_at_once(rt, autojump_clock):
    await update_job_status(rt.env, "job-1", status="completed", progress=100)
    async with client(rt) as http:
        events = parse_events((await http.get("/jobs/job-1/events")).text)
    assert [e["event"] for e in events] == ["status", "end"]
    assert trio.current_time() == 0


async def test_the_stream_ends_when_the_record_expires(rt, autojump_clock):
    await update_job_status(rt.env, "job-1", status="processing", ttl_seconds=20)
    response = await read_events(rt, "job-1", [])
    events = parse_events(response.text)
    assert [e.get("event") or e["comment"] for e in events] == ["status", "keep-alive", "end"]
    assert events[2]["data"] == {"job_id": "job-1", "status": None, "reason": "expired"}
    assert trio.current_time() == pytest.approx(20)


async def test_unknown_job_is_404(rt, autojump_clock):
    async with client(rt) as http:
        response = await http.get("/jobs/nope/events")
    assert response.status_code == 404
    assert response.json() == {"error": "Job not found", "type": "NotFound"}


async def test_last_event_id_resumes_after_what_the_client_saw(rt, autojump_clock):
    await update_job_status(rt.env, "job-1", status="pending")
    await update_job_status(rt.env, "job-1", status="processing", progress=50)  # revision 2
    response = await read_events(rt, "job-1", [(1, {"status": "completed"})], **{"last-event-id": "2"})
    assert [(e["event"], e.get("id")) for e in parse_events(response.text)] == [("status", "3"), ("end", None)]
    async with client(rt) as http:
        # The final record seen already: 204, which tells an EventSource not to reconnect.
        again = await http.get("/jobs/job-1/events", headers={"last-event-id": "3"})
        assert again.status_code == 204
        assert again.text == ""


async def test_a_client_that_goes_away_ends_the_stream_quietly(rt, autojump_clock, caplog):
    """The stream is cancelled where it waits: no error and no warning is logged, and the
    job's actor is not held (its next update goes through at once)."""
    await update_job_status(rt.env, "job-1", status="processing")
    sent: list[dict[str, Any]] = []
    got_first = trio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await got_first.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            got_first.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/jobs/job-1/events",
        "raw_path": b"/jobs/job-1/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"roost.test")],
        "client": ("127.0.0.1", 1),
        "server": ("roost.test", 80),
    }
    with caplog.at_level(logging.WARNING), trio.fail_after(1):
        await rt.asgi_app(scope, receive, send)
        await update_job_status(rt.env, "job-1", status="completed")
    assert sent[0]["status"] == 200
    assert b"event: status" in sent[1]["body"]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_wait_change_returns_at_a_change_or_after_its_timeout(rt, autojump_clock):
    first = await wait_job_status_change(rt.env, "job-1", None, timeout_seconds=5)
    assert first == {"revision": 0, "record": None}
    await update_job_status(rt.env, "job-1", status="pending")
    quiet = await wait_job_status_change(rt.env, "job-1", 1, timeout_seconds=5)
    assert quiet["revision"] == 1 and trio.current_time() == pytest.approx(5)
    with pytest.raises(ValueError, match="timeout_seconds"):
        await wait_job_status_change(rt.env, "job-1", 1, timeout_seconds=MAX_WAIT_SECONDS + 1)
    with pytest.raises(ValueError, match="seen_revision"):
        await wait_job_status_change(rt.env, "job-1", "1", timeout_seconds=1)


async def test_scheduled_jobs_are_listed_and_cancelled_over_http(rt, autojump_clock):
    soon = await schedule_job(rt.env, {"n": 1}, now() + 60, queue="later")
    late = await schedule_job(rt.env, {"n": 2}, now() + 3600, queue="later")
    async with client(rt) as http:
        listed = (await http.get("/jobs")).json()
        assert [(j["id"], j["job"], j["queue"]) for j in listed["jobs"]] == [
            (soon, {"n": 1}, "later"),
            (late, {"n": 2}, "later"),
        ]
        assert listed["jobs"][0]["execute_at"] == pytest.approx(listed["now"] + 60)
        assert [j["id"] for j in (await http.get("/jobs?limit=1")).json()["jobs"]] == [soon]
        assert (await http.get("/jobs?limit=0")).status_code == 400

        cancelled = await http.delete(f"/jobs/{soon}")
        assert cancelled.json() == {"cancelled": True, "id": soon}
        again = await http.delete(f"/jobs/{soon}")
        assert again.status_code == 404 and soon in again.json()["error"]
        malformed = await http.delete("/jobs/order-1001")
        assert malformed.status_code == 400 and "'order-1001'" in malformed.json()["error"]
        assert [j["id"] for j in (await http.get("/jobs")).json()["jobs"]] == [late]
