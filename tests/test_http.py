"""The HTTP front through the ASGI app (API.md section 6)."""

from __future__ import annotations

import json

import httpx
import pytest

from runtime import Actor, Request, Response, open_runtime
from runtime.testing import evict, run_in_actor


class Shop(Actor):
    async def fetch(self, request: Request) -> Response | dict | str:
        if request.path == "/echo":
            return Response(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "header": request.headers.get("x-custom"),
                    "body": request.text(),
                    "name": self.id.name,
                    "correlation_id": self.ctx.correlation_id,
                },
                status=201,
                headers={"x-from-actor": "yes"},
            )
        if request.path == "/text":
            return "plain text"
        if request.path == "/boom":
            raise LookupError("fetch went wrong")
        if request.path == "/":
            return {"root": True}
        return Response({"error": "no such page"}, 404)

    async def add(self, a: int, b: int = 0) -> int:
        return a + b

    async def blob(self) -> dict:
        return {"bytes": b"\x00\xff", "when": await self.storage.get("when")}

    async def fail(self, message: str) -> None:
        raise ValueError(message)

    async def correlation(self) -> str | None:
        return self.ctx.correlation_id


@pytest.fixture
async def client(data_dir):
    async with open_runtime(data_dir=data_dir, actors={"SHOP": Shop}) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            http.rt = rt
            yield http


def assert_error(response: httpx.Response, status: int, type_name: str, fragment: str = "") -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "type"}
    assert body["type"] == type_name
    assert fragment in body["error"]
    assert "Traceback" not in response.text
    assert response.headers["x-request-id"]


async def test_fetch_by_name_passes_the_request_and_returns_the_response(client):
    response = await client.post(
        "/actors/SHOP/alice/echo?x=1&y=two",
        content=b"hello",
        headers={"x-custom": "c", "x-request-id": "req-1"},
    )
    assert response.status_code == 201
    assert response.headers["x-from-actor"] == "yes"
    assert response.headers["x-request-id"] == "req-1"
    assert response.json() == {
        "method": "POST",
        "path": "/echo",
        "query": {"x": "1", "y": "two"},
        "header": "c",
        "body": "hello",
        "name": "alice",
        "correlation_id": "req-1",
    }


async def test_fetch_root_paths_and_conversions(client):
    assert (await client.get("/actors/SHOP/alice")).json() == {"root": True}
    assert (await client.get("/actors/SHOP/alice/")).json() == {"root": True}
    text = await client.get("/actors/SHOP/alice/text")
    assert text.text == "plain text" and text.headers["content-type"].startswith("text/plain")
    assert (await client.get("/actors/SHOP/alice/missing")).status_code == 404


async def test_fetch_by_id(client):
    ns = client.rt.namespace("SHOP")
    actor_id = ns.id_from_name("bob")
    response = await client.get(f"/actors/SHOP/id/{actor_id.hex}/echo")
    assert response.json()["name"] is None  # an id alone does not carry the name

    async def store_something(actor):
        await actor.storage.put("k", 1)

    await run_in_actor(ns.get_by_name("bob"), store_something)
    await evict(ns.get_by_name("bob"))
    response = await client.get(f"/actors/SHOP/id/{actor_id.hex}/echo")
    assert response.json()["name"] == "bob"  # the name is stored with the actor's data
    assert_error(await client.get("/actors/SHOP/id/" + "0" * 64 + "/echo"), 404, "NotFound", "not made by")


async def test_rpc_calls_a_method_with_args_and_kwargs(client):
    response = await client.post("/rpc/SHOP/alice/add", json={"args": [2], "kwargs": {"b": 3}})
    assert response.status_code == 200 and response.json() == {"result": 5}
    assert (await client.post("/rpc/SHOP/alice/add", json={"args": [7]})).json() == {"result": 7}


async def test_rpc_results_with_bytes_and_datetimes_become_json(client):
    response = await client.post("/rpc/SHOP/alice/blob")
    assert response.json() == {"result": {"bytes": "AP8=", "when": None}}


async def test_request_id_is_made_when_missing_and_becomes_the_correlation_id(client):
    response = await client.post("/rpc/SHOP/alice/correlation")
    request_id = response.headers["x-request-id"]
    assert len(request_id) >= 16
    assert response.json() == {"result": request_id}
    given = await client.post("/rpc/SHOP/alice/correlation", headers={"x-request-id": "abc-123"})
    assert given.json() == {"result": "abc-123"} and given.headers["x-request-id"] == "abc-123"


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "type_name", "fragment"),
    [
        ("/rpc/SHOP/a/add", {"content": b"{not json"}, 400, "BadRequest", "malformed JSON"),
        ("/rpc/SHOP/a/add", {"content": b"\xff\xfe"}, 400, "BadRequest", "malformed JSON"),
        ("/rpc/SHOP/a/add", {"json": [1, 2]}, 400, "BadRequest", "JSON object"),
        ("/rpc/SHOP/a/add", {"json": {"args": 1}}, 400, "BadRequest", "must be a list"),
        ("/rpc/SHOP/a/add", {"json": {"argz": []}}, 400, "BadRequest", "unknown keys"),
        ("/rpc/SHOP/a/add", {"json": {"args": [1, 2, 3, 4]}}, 500, "TypeError", "positional"),
        ("/rpc/SHOP/a/nope", {}, 404, "MethodNotFoundError", "nope"),
        ("/rpc/SHOP/a/_private", {}, 404, "MethodNotFoundError", "_private"),
        ("/rpc/SHOP/a/fetch", {}, 404, "MethodNotFoundError", "fetch"),
        ("/rpc/NOPE/a/add", {}, 404, "NotFound", "NOPE"),
        ("/rpc/SHOP/a/fail", {"json": {"args": ["bad thing"]}}, 500, "ValueError", "bad thing"),
        ("/actors/SHOP/a/boom", {}, 500, "LookupError", "fetch went wrong"),
        ("/nowhere", {}, 404, "NotFound", "no route"),
    ],
)
async def test_errors_are_json_with_the_right_status(client, path, kwargs, status, type_name, fragment):
    assert_error(await client.post(path, **kwargs), status, type_name, fragment)


async def test_wrong_method_is_405(client):
    assert_error(await client.get("/rpc/SHOP/a/add"), 405, "MethodNotAllowed", "GET")


async def test_body_over_the_limit_is_413_and_changes_nothing(client):
    too_big = json.dumps({"args": ["x" * (1024 * 1024)]}).encode()
    assert_error(await client.post("/rpc/SHOP/a/add", content=too_big), 413, "RequestEntityTooLarge", "limit")
    assert client.rt.statistics()["events"] == 0


async def test_value_that_cannot_be_copied_is_400(client):
    # A JSON integer beyond 64 bits cannot be copied to the actor: 400, nothing delivered.
    response = await client.post("/rpc/SHOP/a/add", json={"args": [2**70]})
    assert_error(response, 400, "DataCloneError", "")
    assert client.rt.statistics()["events"] == 0


async def test_healthz_and_metrics(client):
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    await client.post("/rpc/SHOP/a/add", json={"args": [1]})
    metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in (
        "roost_live_actors 1",
        "roost_events_delivered_total 1",
        "roost_commits_total",
        'roost_commit_seconds_bucket{le="+Inf"}',
        "roost_writes_per_commit",
        "roost_http_requests_total",
    ):
        assert name in text
