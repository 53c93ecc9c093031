"""Bad input over HTTP: random methods, paths, headers and bodies against every route of the
HTTP reference (API.md section 6).

Paths are the routes with random segments (unicode, percent-encoded bytes, invalid UTF-8,
reserved method names), random query strings; headers with random names and Latin-1 values;
bodies of random bytes, invalid UTF-8, random JSON shapes and the routes' own keys with
random values, and sizes up to past the body limit. Checked on every answer: a 500 only
when an actor raised (``Quiet.boom``), never a traceback, always an ``x-request-id``, every
error in the JSON error shape, and a refused request (4xx) commits nothing and changes no
queue. ``ROOST_FUZZ_EXAMPLES`` sets the budget and draws fresh examples (``make soak``);
without it the suite runs a fixed set.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from urllib.parse import quote

import httpx
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import Actor, open_runtime

EXAMPLES = int(os.environ.get("ROOST_FUZZ_EXAMPLES", "40"))
# The suite's short form runs the same examples every time (a failure can be replayed);
# ``make soak`` sets a budget and draws fresh ones.
DERANDOMIZE = "ROOST_FUZZ_EXAMPLES" not in os.environ
BASE_URL = "http://fuzz.test"


class ActorBoom(Exception):
    """What ``Quiet`` raises on purpose: the one allowed cause of a 500."""


class Quiet(Actor):
    async def add(self, a: int = 0, b: int = 0) -> int:
        if not all(isinstance(x, int) and abs(x) < 2**60 for x in (a, b)):
            return 0
        return a + b

    async def boom(self, *args, **kwargs) -> None:
        raise ActorBoom("raised on purpose")

    async def fetch(self, request):
        if "boom" in request.path:
            raise ActorBoom("raised on purpose")
        return {"ok": True, "path": request.path}


QUEUES = [{"queue": "jobs", "binding": "JOBS", "dead_letter_queue": "jobs-dlq"}]
WEBHOOKS = [{"provider": "stripe", "queue": "jobs", "secret": "SECRET"}]

UNICODE = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
SEGMENT = st.one_of(
    UNICODE.map(lambda text: quote(text, safe="")),
    st.binary(min_size=1, max_size=6).map(lambda raw: "".join(f"%{b:02x}" for b in raw)),
    st.sampled_from(["", ".", "..", "%00", "%ff%fe", "a" * 300, "%2F", "id"]),
)


def mostly(valid: st.SearchStrategy, invalid: st.SearchStrategy) -> st.SearchStrategy:
    """``valid`` three times in four, so that requests get past routing to the handlers."""
    return st.one_of(valid, valid, valid, invalid)


NAME = mostly(st.sampled_from(["a", "b", "\u00e9t\u00e9", "x y"]), UNICODE.filter(bool)).map(
    lambda text: quote(text, safe="")
)
BINDING = mostly(st.just("Q"), st.sampled_from(["NOPE", "q"]) | SEGMENT)
QUEUE = mostly(st.sampled_from(["jobs", "jobs-dlq"]), st.just("nope") | SEGMENT)
METHOD_NAME = mostly(
    st.sampled_from(["add", "boom"]), st.sampled_from(["_private", "fetch", "queue"]) | SEGMENT
)
HEX_ID = st.text("0123456789abcdefABCDEF", min_size=60, max_size=66)
REST = st.lists(SEGMENT, max_size=3).map("/".join)
QUERY = st.one_of(
    st.just(""),
    st.sampled_from(["?limit=x", "?limit=-4", "?limit=0", "?limit=1000000", "?limit=3", "?limit=2&limit=5"]),
    st.dictionaries(SEGMENT, SEGMENT, max_size=3).map(
        lambda q: "?" + "&".join(f"{k}={v}" for k, v in q.items())
    ),
)
# (the route's own method, a path of it)
ROUTES = st.one_of(
    st.tuples(st.just("POST"), st.tuples(BINDING, NAME, REST).map(lambda p: "/actors/{}/{}/{}".format(*p))),
    st.tuples(
        st.just("GET"), st.tuples(BINDING, HEX_ID, REST).map(lambda p: "/actors/{}/id/{}/{}".format(*p))
    ),
    st.tuples(
        st.just("POST"), st.tuples(BINDING, NAME, METHOD_NAME).map(lambda p: "/rpc/{}/{}/{}".format(*p))
    ),
    st.tuples(st.just("GET"), st.just("/queues") | QUEUE.map("/queues/{}".format)),
    st.tuples(
        st.sampled_from(["POST", "GET", "DELETE"]),
        st.tuples(QUEUE, st.sampled_from(["", "/batch", "/pull", "/ack", "/nope"])).map(
            lambda p: "/queues/{}/messages{}".format(*p)
        ),
    ),
    st.tuples(
        st.just("POST"),
        st.tuples(QUEUE, st.sampled_from(["redrive", "pause", "resume"])).map(
            lambda p: "/queues/{}/{}".format(*p)
        ),
    ),
    st.tuples(st.just("GET"), SEGMENT.map("/jobs/{}/status".format)),
    st.tuples(st.just("POST"), (st.sampled_from(["stripe", "other"]) | SEGMENT).map("/webhooks/{}".format)),
    st.tuples(st.just("GET"), st.sampled_from(["/healthz", "/metrics", "/", "//", "/rpc", "/queues/"])),
    st.tuples(st.just("GET"), st.lists(SEGMENT, max_size=5).map(lambda parts: "/" + "/".join(parts))),
)
ANY_METHOD = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | UNICODE,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(UNICODE, children, max_size=4),
    max_leaves=12,
)
BODY_KEYS = st.sampled_from(
    ["args", "kwargs", "body", "content_type", "delay_seconds", "messages", "batch_size",
     "visibility_timeout_ms", "acks", "retries", "to", "ids", "lease_id", "type", "data"]
)  # fmt: skip
SMALL_JSON = st.none() | st.booleans() | st.integers(-1000, 1000) | UNICODE
ROUTE_BODIES = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "args": st.lists(SMALL_JSON, max_size=3),
            "kwargs": st.dictionaries(st.sampled_from(["a", "b", "c"]), SMALL_JSON, max_size=2),
        },
    ),
    st.fixed_dictionaries(
        {"body": JSON_VALUES},
        optional={
            "content_type": st.sampled_from(["json", "text", "bytes", "msgpack", "v8", ""]) | SMALL_JSON,
            "delay_seconds": SMALL_JSON | st.floats(-1, 100000),
        },
    ),
    st.fixed_dictionaries({"messages": st.lists(st.fixed_dictionaries({"body": SMALL_JSON}), max_size=120)}),
    st.fixed_dictionaries({}, optional={"batch_size": SMALL_JSON, "visibility_timeout_ms": SMALL_JSON}),
    st.fixed_dictionaries(
        {},
        optional={
            "acks": st.lists(st.fixed_dictionaries({"lease_id": SMALL_JSON}), max_size=3),
            "retries": st.lists(st.fixed_dictionaries({"lease_id": SMALL_JSON}), max_size=3),
        },
    ),
    st.fixed_dictionaries({}, optional={"to": SMALL_JSON, "ids": st.lists(SMALL_JSON, max_size=3)}),
).map(lambda v: json.dumps(v).encode())
BODIES = st.one_of(
    ROUTE_BODIES,
    ROUTE_BODIES,
    st.binary(max_size=64),
    st.sampled_from(
        [b"\xff\xfe\xfd", b'{"body": "\xc3\x28"}', b"\xed\xa0\x80", b'{"args": [1, 2', b"{" * 5000]
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.dictionaries(BODY_KEYS, JSON_VALUES, max_size=4).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([130_000, 300_000, 1_100_000]).map(lambda n: json.dumps({"body": "x" * n}).encode()),
)
HEADER_NAMES = st.sampled_from(
    ["content-type", "x-request-id", "stripe-signature", "accept", "content-encoding", "x-custom"]
) | st.from_regex(r"\Ax-[a-z0-9-]{1,20}\Z")
HEADER_VALUES = st.one_of(
    st.sampled_from(["application/json", "text/plain; charset=utf-8", "application/msgpack", "", "a" * 300]),
    st.binary(max_size=40).map(lambda raw: bytes(b for b in raw if b not in b"\r\n\x00")),
)
HEADERS = st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4)
REQUESTS = st.lists(
    st.tuples(ROUTES, st.booleans(), ANY_METHOD, QUERY, HEADERS, BODIES).map(
        lambda r: (r[0][0] if r[1] else r[2], r[0][1] + r[3], r[4], r[5])
    ),
    min_size=1,
    max_size=12,
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def _run(requests: list, data_dir: str) -> list[str]:
    bad: list[str] = []
    errors = _Collect()
    logging.getLogger().addHandler(errors)
    try:
        async with open_runtime(
            data_dir=data_dir, actors={"Q": Quiet}, queues=QUEUES, webhooks=WEBHOOKS, vars={"SECRET": "s"}
        ) as rt:
            transport = httpx.ASGITransport(app=rt.asgi_app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
                for method, path, headers, body in requests:
                    bad += await _check(rt, http, method, path, headers, body)
    finally:
        logging.getLogger().removeHandler(errors)
    return bad + [f"error logged: {line[:300]}" for line in errors.lines]


async def _check(
    rt, http: httpx.AsyncClient, method: str, path: str, headers: dict, body: bytes
) -> list[str]:
    where = f"{method} {path[:120]} {headers} {body[:60]!r}"
    backlogs = [(await rt.queue(name).metrics())["backlog"] for name in ("jobs", "jobs-dlq")]
    writes = rt.statistics()["committed_writes"]
    # An absolute URL: a path may start with "//", which a relative URL cannot.
    response = await http.request(method, f"{BASE_URL}{path}", content=body, headers=headers)
    text = response.text
    bad = []
    status = response.status_code
    if "Traceback" in text or 'File "' in text:
        bad.append(f"{where} -> a traceback: {text[:300]}")
    if not response.headers.get("x-request-id"):
        bad.append(f"{where} -> no x-request-id")
    if status >= 400 and method != "HEAD":
        try:
            shape = response.json()
        except ValueError:
            shape = None
        if not (isinstance(shape, dict) and {"error", "type"} <= set(shape)):
            bad.append(f"{where} -> {status} not in the error shape: {text[:200]}")
        elif status >= 500 and shape["type"] != "ActorBoom":
            bad.append(f"{where} -> {status} though no actor raised: {text[:300]}")
    if 400 <= status < 500:
        after = [(await rt.queue(name).metrics())["backlog"] for name in ("jobs", "jobs-dlq")]
        if after != backlogs and "pull" not in path:
            bad.append(f"{where} -> {status}, yet a queue changed: {backlogs} -> {after}")
        if rt.statistics()["committed_writes"] != writes:
            bad.append(f"{where} -> {status}, yet something was written")
    return bad


@settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(requests=REQUESTS)
def test_no_request_breaks_the_server(requests):
    data_dir = tempfile.mkdtemp(prefix="roost-http-fuzz-")
    try:
        bad = trio.run(_run, requests, data_dir, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    assert bad == []
