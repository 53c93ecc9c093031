"""``[http] internal_token``: the internal routes answer only a request with the bearer token."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from actors import Queue
from runtime import Actor, Request, open_runtime
from runtime.config import parse_config, secret_values
from runtime.errors import ConfigError

TOKEN = "internal-9f8e7d6c5b4a"
WEBHOOK_SECRET = "whsec_test"


class Counter(Actor):
    async def increment(self) -> int:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return n

    async def fetch(self, request: Request) -> dict:
        return {"n": await self.increment()}


class Sink(Actor):
    async def queue(self, batch) -> None:
        pass


def config(**http: str) -> dict:
    return {
        "vars": {"ADMIN_KEY": TOKEN, "WEBHOOK_SECRET": WEBHOOK_SECRET},
        "http": http,
        "durable_objects": {"bindings": [{"name": "COUNTERS", "class_name": Counter}]},
        "queues": {"producers": [{"queue": "jobs", "binding": "JOBS"}]},
        "webhooks": [{"provider": "stripe", "queue": "jobs", "secret": "WEBHOOK_SECRET"}],
        "routes": [{"path": "/shop", "binding": "COUNTERS", "name": "front"}],
    }


@pytest.fixture
async def guarded(data_dir):
    async with open_runtime(config(internal_token="ADMIN_KEY"), data_dir=data_dir) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            http.rt = rt
            yield http


BEARER = {"authorization": f"Bearer {TOKEN}"}
INTERNAL = [
    ("POST", "/actors/COUNTERS/alice/"),
    ("GET", "/actors/COUNTERS/alice"),
    ("POST", "/rpc/COUNTERS/alice/increment"),
    ("POST", "/queues/jobs/messages"),
    ("DELETE", "/queues/jobs/messages"),
    ("POST", "/queues/jobs/pause"),
    ("GET", "/queues"),
    ("GET", "/jobs/j-1/status"),
    ("GET", "/metrics"),
    ("POST", "http://roost.test//rpc/COUNTERS/alice/increment"),  # Werkzeug merges slashes
    ("POST", "/queues/"),
]


@pytest.mark.parametrize(("method", "path"), INTERNAL)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"{TOKEN}"],
)
async def test_internal_routes_refuse_a_missing_or_wrong_token_and_change_nothing(
    guarded, method, path, authorization
):
    headers = {"x-request-id": "req-401"}
    if authorization is not None:
        headers["authorization"] = authorization
    response = await guarded.request(method, path, headers=headers, json={"body": 1})
    assert response.status_code == 401, response.text
    assert response.json() == {
        "error": "this route needs Authorization: Bearer <internal_token>",
        "type": "Unauthorized",
    }
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["x-request-id"] == "req-401"
    assert await guarded.rt.namespace("COUNTERS").get_by_name("alice").increment() == 1
    metrics = await guarded.rt.queue("jobs").metrics()
    assert metrics["backlog"] == 0


async def test_the_right_token_opens_every_internal_route(guarded):
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = await guarded.post(
            "/rpc/COUNTERS/alice/increment", headers={"authorization": f"{scheme} {TOKEN}"}
        )
        assert response.status_code == 200 and "result" in response.json()
    assert (await guarded.post("/actors/COUNTERS/alice/", headers=BEARER)).json() == {"n": 4}
    sent = await guarded.post("/queues/jobs/messages", headers=BEARER, json={"body": {"x": 1}})
    assert sent.status_code == 202
    assert (await guarded.get("/queues/jobs", headers=BEARER)).json()["backlog"] == 1
    assert (await guarded.get("/jobs/nope/status", headers=BEARER)).status_code == 404
    scrape = await guarded.get("/metrics", headers=BEARER)
    assert scrape.status_code == 200 and "roost_" in scrape.text


async def test_healthz_configured_routes_and_webhooks_stay_public(guarded):
    assert (await guarded.get("/healthz")).json() == {"status": "ok"}
    assert (await guarded.get("/shop")).json() == {"n": 1}
    assert (await guarded.get("/shop/cart")).json() == {"n": 2}
    event = json.dumps({"id": "evt_1", "type": "charge.refunded"}).encode()
    stamp = int(time.time())
    signature = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + event, hashlib.sha256)
    hook = await guarded.post(
        "/webhooks/stripe",
        content=event,
        headers={"stripe-signature": f"t={stamp},v1={signature.hexdigest()}"},
    )
    assert hook.status_code == 200 and hook.json() == {"received": True}
    unsigned = await guarded.post("/webhooks/stripe", content=event)
    assert unsigned.status_code == 401  # a webhook verifies its own signature
    assert (await guarded.rt.queue("jobs").metrics())["backlog"] == 1


async def test_without_a_token_the_internal_routes_stay_open(data_dir):
    async with open_runtime(config(), data_dir=data_dir) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            assert (await http.post("/rpc/COUNTERS/a/increment")).json() == {"result": 1}


async def test_a_queue_handle_in_python_needs_no_token(guarded):
    queue: Queue = guarded.rt.queue("jobs")
    await queue.send({"from": "python"})
    assert (await queue.metrics())["backlog"] == 1


@pytest.mark.parametrize(
    ("http", "vars", "message"),
    [
        ({"internal_token": "MISSING"}, {}, "[http] key 'internal_token': no var named 'MISSING'"),
        ({"internal_token": "ADMIN_KEY"}, {"ADMIN_KEY": "  "}, "var 'ADMIN_KEY' is empty"),
        ({"internal_token": 5}, {}, "key 'internal_token': expected a string"),
        ({"internal_token": "not a name"}, {}, "is not a valid binding name"),
        ({"token": "ADMIN_KEY"}, {}, "[http] unknown key 'token'"),
    ],
)
def test_a_bad_internal_token_setting_is_a_config_error(http, vars, message):
    with pytest.raises(ConfigError) as refused:
        parse_config({"http": http, "vars": vars}, source="roost.toml")
    assert message in str(refused.value) and "roost.toml" in str(refused.value)


def test_the_token_is_a_secret_whatever_its_var_is_called():
    parsed = parse_config({"http": {"internal_token": "ADMIN_KEY"}, "vars": {"ADMIN_KEY": TOKEN}})
    assert TOKEN in secret_values(parsed)


# -- protected mode: `roost serve` off loopback ------------------------------------------

ROOST = str(Path(sys.executable).with_name("roost"))
SERVE_CONFIG = """
[vars]
ADMIN_KEY = "from-the-file"
[[durable_objects.bindings]]
name = "COUNTERS"
class_name = "runtime:Actor"
"""


def _serve(tmp_path: Path, config: str, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "roost.toml").write_text(config)
    return subprocess.Popen(
        [ROOST, "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), *args],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )


def _serves(process: subprocess.Popen[str]) -> bool:
    """Whether the server came up (then it is stopped), or exited first."""
    for line in process.stderr:
        if "serving on" in line:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
            return True
    process.wait(timeout=30)
    return False


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "example.org"])
def test_serving_off_loopback_without_a_token_is_refused(tmp_path, host):
    process = _serve(tmp_path, SERVE_CONFIG, "--host", host)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 2
    lines = errors.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in errors
    assert "internal_token" in lines[0] and "--allow-open-internal-routes" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before anything opened


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_stays_open_without_a_token(tmp_path, host):
    assert _serves(_serve(tmp_path, SERVE_CONFIG, "--host", host))


def test_off_loopback_serves_with_a_token_or_the_flag(tmp_path):
    guarded = SERVE_CONFIG + '[http]\ninternal_token = "ADMIN_KEY"\n'
    assert _serves(_serve(tmp_path, guarded, "--host", "0.0.0.0"))
    assert _serves(_serve(tmp_path, SERVE_CONFIG, "--host", "0.0.0.0", "--allow-open-internal-routes"))


def test_a_served_token_guards_the_routes_and_never_reaches_the_log(tmp_path):
    guarded = SERVE_CONFIG + '[http]\ninternal_token = "ADMIN_KEY"\n'
    process = _serve(tmp_path, guarded, "--log-level", "debug")
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "serving on" in line:
            url = line.split("serving on ")[1].split()[0]
            break
    try:
        assert httpx.get(url + "/metrics").status_code == 401
        scrape = httpx.get(url + "/metrics", headers={"authorization": "Bearer from-the-file"})
        assert scrape.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "from-the-file" not in "".join(seen) + rest
    # 13 characters: the start warns that such a token can be guessed, without showing it.
    assert "the value of ADMIN_KEY has 13 characters" in "".join(seen)
