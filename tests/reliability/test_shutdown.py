"""SIGTERM with pooled keep-alive connections: idle ones are closed at once, whichever front
(direct or Quart) served their last request; an in-flight request still finishes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess, write_counter_app

# The graceful timeout is 30 s: an idle connection that shutdown does not close holds the
# exit that long. Closed at once, the exit takes a fraction of a second.
PROMPT_EXIT_SECONDS = 2.0

QUEUE = """
[[queues.producers]]
queue = "jobs"
binding = "JOBS"
"""


@pytest.fixture
def server(tmp_path: Path):
    write_counter_app(tmp_path, QUEUE)
    process = ServeProcess(tmp_path, tmp_path / "serve.log", "--data-dir", str(tmp_path / "data"))
    yield process
    if process.process.poll() is None:
        process.kill_9()


def _stop_timed(server: ServeProcess) -> tuple[int, float]:
    started = time.monotonic()
    status = server.stop()
    return status, time.monotonic() - started


@pytest.mark.parametrize(
    ("front", "method", "path", "body"),
    [
        ("direct", "POST", "/rpc/COUNTERS/a/increment", None),
        ("direct", "GET", "/actors/COUNTERS/a/", None),
        ("quart", "POST", "/queues/jobs/messages", {"body": {"n": 1}}),
        ("quart", "GET", "/queues", None),
        ("quart", "GET", "/metrics", None),
        ("quart", "GET", "/healthz", None),
    ],
)
def test_an_idle_pooled_connection_does_not_hold_the_exit(server, front, method, path, body):
    with httpx.Client(base_url=server.url) as pooled:
        assert pooled.request(method, path, json=body).status_code < 500
        status, seconds = _stop_timed(server)
    assert status == 0
    assert seconds < PROMPT_EXIT_SECONDS, f"exit took {seconds:.1f} s after a {front} route"
    assert "Traceback" not in server.log()


def test_an_in_flight_request_finishes_beside_an_idle_pooled_connection(server):
    answers: list[httpx.Response] = []
    with (
        httpx.Client(base_url=server.url, timeout=30) as idle,
        httpx.Client(base_url=server.url, timeout=30) as busy,
    ):
        assert idle.get("/queues").status_code == 200
        worker = threading.Thread(target=lambda: answers.append(busy.post("/rpc/COUNTERS/b/slow")))
        worker.start()
        time.sleep(0.3)  # inside its one-second handler
        status, seconds = _stop_timed(server)
        worker.join(timeout=30)
    assert status == 0 and seconds < 1 + PROMPT_EXIT_SECONDS
    assert [answer.json() for answer in answers] == [{"result": 1}]
