"""Bad input over HTTP: random methods, paths, headers and bodies against every route.

No answer is a 500 (the actors here never raise), every error is the JSON error shape with
no traceback, and a refused request writes nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile

import httpx
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import Actor, open_runtime


class Quiet(Actor):
    async def add(self, a: int = 0, b: int = 0) -> int:
        try:
            return a + b
        except TypeError:
            return 0

    async def fetch(self, request):
        return {"ok": True}


QUEUES = [{"queue": "jobs", "binding": "JOBS", "dead_letter_queue": "jobs-dlq"}]
WEBHOOKS = [{"provider": "stripe", "queue": "jobs", "secret": "SECRET"}]

PATHS = st.sampled_from(
    [
        "/rpc/Q/a/add",
        "/rpc/Q/a/_private",
        "/rpc/NOPE/a/add",
        "/actors/Q/a/x",
        "/actors/Q/id/zz/x",
        "/queues",
        "/queues/jobs",
        "/queues/nope",
        "/queues/jobs/messages",
        "/queues/jobs/messages/batch",
        "/queues/jobs/messages/pull",
        "/queues/jobs/messages/ack",
        "/queues/jobs/messages?limit=x",
        "/queues/jobs/messages?limit=-4",
        "/queues/jobs/redrive",
        "/queues/jobs/pause",
        "/jobs/x/status",
        "/webhooks/stripe",
        "/webhooks/other",
        "/healthz",
        "/metrics",
        "/%ff%fe",
        "/rpc/Q/%00/add",
    ]
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
BODY_KEYS = st.sampled_from(
    ["args", "kwargs", "body", "content_type", "delay_seconds", "messages", "batch_size",
     "visibility_timeout_ms", "acks", "retries", "to", "ids", "lease_id"]
)  # fmt: skip
BODIES = st.one_of(
    st.binary(max_size=64),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(BODY_KEYS, JSON_VALUES, max_size=4).map(lambda v: json.dumps(v).encode()),
)
REQUESTS = st.lists(
    st.tuples(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]), PATHS, BODIES),
    min_size=1,
    max_size=15,
)


async def _run(requests: list, data_dir: str) -> list[tuple[int, str]]:
    bad = []
    async with open_runtime(
        data_dir=data_dir, actors={"Q": Quiet}, queues=QUEUES, webhooks=WEBHOOKS, vars={"SECRET": "s"}
    ) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fuzz.test") as http:
            for method, path, body in requests:
                backlog = (await rt.queue("jobs").metrics())["backlog"]
                response = await http.request(
                    method, path, content=body, headers={"x-custom": "\u00e9".encode()}
                )
                text = response.text
                if (
                    response.status_code >= 500
                    or "Traceback" in text
                    or not response.headers.get("x-request-id")
                ):
                    bad.append((response.status_code, f"{method} {path} {body[:60]!r} -> {text[:200]}"))
                if response.status_code >= 400:
                    if set(response.json()) < {"error", "type"}:
                        bad.append((response.status_code, f"{method} {path}: error shape {text[:200]}"))
                    if (await rt.queue("jobs").metrics())["backlog"] != backlog and "pull" not in path:
                        bad.append(
                            (response.status_code, f"{method} {path}: a refused request changed the queue")
                        )
    return bad


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests=REQUESTS)
def test_no_request_breaks_the_server(requests):
    data_dir = tempfile.mkdtemp(prefix="roost-http-fuzz-")
    try:
        bad = trio.run(_run, requests, data_dir, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    assert bad == []
