"""``roost queues ...`` and ``roost jobs ...`` run as subprocesses against one real ``roost
serve --workers 2`` (behind an internal token), and ``GET /jobs/{id}/events`` read from it
as it streams.

Every command's stderr is checked for a traceback. The server is shared by the module, so
each test uses queues and jobs of its own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "reliability"))  # shared with those tests

from serve_process import ROOST, ServeProcess  # noqa: E402

TOKEN = "operator-token-3f1e"
BEARER = {"authorization": f"Bearer {TOKEN}"}
CLI_TIMEOUT_SECONDS = 30

APP = '''
from actors import schedule_job, update_job_status
from runtime import Actor, now


class AlwaysFails(Actor):
    async def queue(self, batch) -> None:
        raise RuntimeError("this consumer always fails")


class Ops(Actor):
    async def schedule(self, job: dict, in_seconds: float, queue: str) -> str:
        return await schedule_job(self.env, job, now() + in_seconds, queue=queue)

    async def set_status(self, job_id: str, fields: dict) -> dict:
        return await update_job_status(self.env, job_id, **fields)
'''

CONFIG = f"""
data_dir = "state"
[vars]
ADMIN_KEY = "{TOKEN}"
[http]
internal_token = "ADMIN_KEY"
[[durable_objects.bindings]]
name = "OPS"
class_name = "ops_app:Ops"
[[queues.producers]]
queue = "inbox"
binding = "INBOX"
[[queues.producers]]
queue = "held"
binding = "HELD"
[[queues.producers]]
queue = "scratch"
binding = "SCRATCH"
[[queues.producers]]
queue = "parked"
binding = "PARKED"
[[queues.producers]]
queue = "flaky"
binding = "FLAKY"
[[queues.consumers]]
queue = "flaky"
class_name = "ops_app:AlwaysFails"
max_retries = 0
max_batch_timeout = 0
dead_letter_queue = "flaky-dlq"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    directory = tmp_path_factory.mktemp("operator")
    (directory / "ops_app.py").write_text(APP)
    (directory / "roost.toml").write_text(CONFIG)
    process = ServeProcess(directory, directory / "serve.log", "--workers", "2")
    try:
        yield process
    finally:
        assert process.stop() == 0
        log = process.log()
        assert "Traceback" not in log, log
        assert "the app raised" not in log, log


def roost(server: ServeProcess, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    """``roost *args`` with ``ROOST_URL`` naming ``server`` (and ``ROOST_TOKEN``, unless None)."""
    return roost_all(server, [list(args)], token=token)[0]


def roost_all(
    server: ServeProcess, commands: list[list[str]], *, token: str | None = TOKEN
) -> list[subprocess.CompletedProcess[str]]:
    """Several ``roost`` commands at once (each takes most of a second to start)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ROOST_URL", "ROOST_TOKEN")}
    env["ROOST_URL"] = server.url
    if token is not None:
        env["ROOST_TOKEN"] = token
    started = [
        (args, subprocess.Popen([ROOST, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for args in commands
    ]
    results = []
    for args, process in started:
        out, err = process.communicate(timeout=CLI_TIMEOUT_SECONDS)
        assert "Traceback" not in err, err
        results.append(subprocess.CompletedProcess([ROOST, *args], process.returncode, out, err))
    return results


def http(server: ServeProcess, method: str, path: str, body: object = None) -> object:
    response = httpx.request(method, server.url + path, json=body, headers=BEARER, timeout=10)
    response.raise_for_status()
    return response.json()


def rpc(server: ServeProcess, method: str, *args: object) -> object:
    return http(server, "POST", f"/rpc/OPS/ops/{method}", {"args": list(args)})["result"]


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_queues_list_and_info_as_a_table_and_as_json(server):
    table, as_json, info = roost_all(
        server, [["queues", "list"], ["queues", "list", "--json"], ["queues", "info", "held", "--json"]]
    )
    assert table.returncode == as_json.returncode == info.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["QUEUE", "BACKLOG", "IN_FLIGHT"]
    assert {row.split()[0] for row in rows} == {"inbox", "held", "scratch", "parked", "flaky", "flaky-dlq"}
    queues = json.loads(as_json.stdout)["queues"]
    assert {q["queue"] for q in queues} == {"inbox", "held", "scratch", "parked", "flaky", "flaky-dlq"}
    assert json.loads(info.stdout)["backlog"] == 0


def test_send_then_peek_sees_the_messages(server):
    sent_json = roost(server, "queues", "send", "inbox", '{"order": 7}', "--json")
    sent_text, delayed = roost_all(
        server,
        [["queues", "send", "inbox", "plain words", "--text"], ["queues", "send", "inbox", "[1, 2]", "--delay", "600"]],
    )
    assert sent_json.returncode == sent_text.returncode == delayed.returncode == 0
    first = json.loads(sent_json.stdout)["id"]
    assert sent_text.stdout.startswith("sent message ") and "to queue 'inbox'" in sent_text.stdout
    assert "delivered in 10m" in delayed.stdout
    peeked, table = roost_all(
        server, [["queues", "peek", "inbox", "--json"], ["queues", "peek", "inbox", "--limit", "1"]]
    )
    messages = json.loads(peeked.stdout)["messages"]
    assert (messages[0]["id"], messages[0]["body"]) == (first, {"order": 7})
    later = {m["content_type"]: m for m in messages[1:]}  # sent at once: in either order
    assert (later["text"]["body"], later["json"]["body"]) == ("plain words", [1, 2])
    assert later["json"]["next_attempt_at_ms"] is not None  # the delayed one
    header, row = table.stdout.splitlines()
    assert header.split() == ["ID", "ATTEMPTS", "SENT", "NEXT_ATTEMPT", "DEAD_LETTER", "BODY"]
    assert row.startswith(first) and row.endswith('{"order":7}')


def test_pause_and_resume(server):
    paused = roost(server, "queues", "pause", "held")
    assert paused.returncode == 0 and "queue 'held' paused" in paused.stdout
    assert http(server, "GET", "/queues/held")["paused"] is True
    resumed = roost(server, "queues", "resume", "held", "--json")
    assert json.loads(resumed.stdout) == {"paused": False}
    assert http(server, "GET", "/queues/held")["paused"] is False


def test_purge_needs_yes(server):
    for n in range(3):
        http(server, "POST", "/queues/scratch/messages", {"body": n})
    refused = roost(server, "queues", "purge", "scratch")
    assert refused.returncode == 2
    assert "pass --yes" in refused.stderr and refused.stdout == ""
    assert http(server, "GET", "/queues/scratch")["backlog"] == 3
    purged = roost(server, "queues", "purge", "scratch", "--yes")
    assert purged.returncode == 0
    assert purged.stdout.strip() == "purged 3 message(s) from queue 'scratch'"
    assert http(server, "GET", "/queues/scratch")["backlog"] == 0


def test_redrive_from_the_dead_letter_queue(server):
    dead = http(server, "POST", "/queues/flaky/messages", {"body": {"charge": 1}})["id"]
    http(server, "POST", "/queues/flaky/messages", {"body": {"charge": 2}})
    deadline = time.monotonic() + 10
    while http(server, "GET", "/queues/flaky-dlq")["backlog"] < 2:
        assert time.monotonic() < deadline, "the messages did not die into flaky-dlq"
        time.sleep(0.05)
    peeked = roost(server, "queues", "peek", "flaky-dlq")
    assert "from flaky: RuntimeError: this consumer always fails" in peeked.stdout
    moved = roost(server, "queues", "redrive", "flaky-dlq", "--to", "parked", "--ids", dead)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() == "moved 1 message(s) from queue 'flaky-dlq' to queue 'parked'"
    parked = http(server, "GET", "/queues/parked/messages")["messages"]
    assert [(m["id"], m["body"]) for m in parked] == [(dead, {"charge": 1})]
    assert http(server, "GET", "/queues/flaky-dlq")["backlog"] == 1


def test_jobs_list_status_and_cancel(server):
    job_id = rpc(server, "schedule", {"report": "daily"}, 3600, "held")
    rpc(server, "set_status", "import-9", {"status": "processing", "progress": 40})
    listed, table, status = roost_all(
        server, [["jobs", "list", "--json"], ["jobs", "list"], ["jobs", "status", "import-9"]]
    )
    jobs = json.loads(listed.stdout)["jobs"]
    assert [(j["job"], j["queue"]) for j in jobs if j["id"] == job_id] == [({"report": "daily"}, "held")]
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "QUEUE", "DUE", "CREATED", "JOB"]
    assert any(row.startswith(job_id) and "(in 59m" in row for row in rows), table.stdout
    assert status.returncode == 0
    assert "status:" in status.stdout and "processing" in status.stdout and "progress:" in status.stdout

    cancelled = roost(server, "jobs", "cancel", job_id)
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"cancelled scheduled job {job_id}"
    again, unknown_status = roost_all(server, [["jobs", "cancel", job_id], ["jobs", "status", "nope-1"]])
    assert again.returncode == 1 and job_id in one_line(again.stderr)
    assert unknown_status.returncode == 1 and "'nope-1'" in one_line(unknown_status.stderr)
    assert all(j["id"] != job_id for j in http(server, "GET", "/jobs")["jobs"])


def test_an_unknown_queue_exits_1_naming_it(server):
    result = roost(server, "queues", "info", "nope")
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("roost: no queue named 'nope'")
    assert result.stdout == ""


def test_bad_usage_exits_2(server):
    results = roost_all(
        server,
        [
            ["queues"],
            ["queues", "peek", "inbox", "--limit", "0"],
            ["queues", "send", "inbox", "not json"],
            ["jobs", "explode"],
            ["queues", "list", "--url", "ftp://example.com"],
        ],
    )
    for result in results:
        assert result.returncode == 2, result
        assert "usage: roost" in result.stderr
    assert "BODY is not JSON" in results[2].stderr


def test_no_server_exits_2_with_one_line_naming_the_url(server):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = subprocess.run(
        [ROOST, "queues", "list", "--url", url], capture_output=True, text=True, timeout=CLI_TIMEOUT_SECONDS
    )
    assert result.returncode == 2
    assert one_line(result.stderr) == (
        f"roost: cannot reach the server at {url}: connection refused (is `roost serve` running there?)"
    )


def test_without_the_token_the_server_says_no(server):
    result = roost(server, "queues", "list", token=None)
    assert result.returncode == 1
    assert "ROOST_TOKEN" in one_line(result.stderr)


def read_event(lines: Iterator[str]) -> dict[str, object]:
    """The next event of an event stream (comments skipped)."""
    event: dict[str, object] = {}
    for line in lines:
        if not line:
            if event:
                return event
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        event[name] = json.loads(value) if name == "data" else value
    raise AssertionError(f"the stream ended after {event}")


def test_job_events_stream_as_the_status_changes(server):
    """Four jobs, so that with two workers some live in the one that did not take the request
    (their changes reach the stream from another process)."""
    jobs = [f"export-{n}" for n in range(4)]
    for job in jobs:
        rpc(server, "set_status", job, {"status": "pending"})
    with httpx.Client(base_url=server.url, headers=BEARER, timeout=10) as client:
        for job in jobs:
            with client.stream("GET", f"/jobs/{job}/events") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.iter_lines()
                assert read_event(lines)["data"]["status"] == "pending"
                rpc(server, "set_status", job, {"status": "processing", "progress": 50})
                progress = read_event(lines)
                assert (progress["data"]["status"], progress["data"]["progress"]) == ("processing", 50)
                rpc(server, "set_status", job, {"status": "completed", "progress": 100})
                assert read_event(lines)["data"]["status"] == "completed"
                assert read_event(lines)["event"] == "end"
                assert list(lines) == []  # the server ended the stream


def test_a_client_leaving_an_event_stream_is_no_error(server):
    rpc(server, "set_status", "left-1", {"status": "processing"})
    with httpx.Client(base_url=server.url, headers=BEARER, timeout=10) as client:
        with client.stream("GET", "/jobs/left-1/events") as response:
            assert read_event(response.iter_lines())["data"]["status"] == "processing"
    rpc(server, "set_status", "left-1", {"status": "completed"})
    assert http(server, "GET", "/jobs/left-1/status")["status"] == "completed"
    # The module's server checks its log for errors when it stops.
