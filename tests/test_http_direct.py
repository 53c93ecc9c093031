"""The direct path answers the actor and RPC routes exactly as the Quart app does.

Each request goes once through ``rt.asgi_app`` (where the direct path serves these routes)
and once through the Quart app behind it, which serves every route; the two answers must be
the same, byte for byte, but for the headers the ASGI server adds.
"""

from __future__ import annotations

import httpx
import pytest

from runtime import Actor, Request, Response, open_runtime


class Echo(Actor):
    """Answers with what it received, so that two identical requests get identical answers."""

    async def fetch(self, request: Request) -> Response:
        if request.path == "/bytes":
            return Response(b"\x00\x01raw")
        if request.path == "/text":
            return Response("plain", 201, headers={"X-Kind": "text"})
        if request.path == "/raise":
            raise RuntimeError("fetch failed")
        return Response(
            {
                "actor": self.id.name,
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "headers": {k: v for k, v in request.headers.items() if k.startswith("x-")},
                "body": request.body.decode("utf-8", "replace"),
            }
        )

    async def echo(self, *args: object, **kwargs: object) -> dict:
        return {"args": list(args), "kwargs": kwargs}

    async def fail(self) -> None:
        raise ValueError("bad value")

    async def _private(self) -> None:
        raise AssertionError("never called")


CONFIG = {
    "durable_objects": {"bindings": [{"name": "ECHO", "class_name": f"{__name__}:Echo"}]},
    "routes": [
        {"path": "/shop", "binding": "ECHO", "name": "front"},
        {"path": "/shop/orders", "binding": "ECHO", "name": "orders"},
    ],
}
HEX_ID = "0" * 64
DIRECT = [
    ("GET", "/actors/ECHO/a", {}, b""),
    ("GET", "/actors/ECHO/a/", {}, b""),
    ("GET", "/actors/ECHO/a/some/deep/path?x=1&y=&x=2&z=%C3%A9+b&w=%ZZ", {}, b""),
    ("POST", "/actors/ECHO/a/post", {"x-custom": "yes", "content-type": "text/plain"}, b"hello \xc3\xa9"),
    ("PUT", "/actors/ECHO/a/put", {}, b"{}"),
    ("DELETE", "/actors/ECHO/a/x", {}, b""),
    ("OPTIONS", "/actors/ECHO/a/x", {}, b""),
    ("PATCH", "/actors/ECHO/a/%E2%9C%93", {}, b""),
    ("GET", "/actors/ECHO/a/bytes", {}, b""),
    ("GET", "/actors/ECHO/a/text", {}, b""),
    ("GET", "/actors/ECHO/a/raise", {}, b""),
    ("GET", "/actors/ECHO/id/" + HEX_ID + "/x", {}, b""),
    ("GET", "/actors/ECHO/id/not-hex/x", {}, b""),
    ("GET", "/actors/ECHO/id", {}, b""),
    ("GET", "/actors/NOPE/a/x", {}, b""),
    ("GET", "/actors/__QUEUES/a/x", {}, b""),
    ("POST", "/rpc/ECHO/a/echo", {}, b'{"args": [1, "two"], "kwargs": {"k": [3]}}'),
    ("POST", "/rpc/ECHO/a/echo", {}, b""),
    ("POST", "/rpc/ECHO/a/echo", {}, b"{not json"),
    ("POST", "/rpc/ECHO/a/echo", {}, b'{"args": 1}'),
    ("POST", "/rpc/ECHO/a/echo", {}, b'{"other": 1}'),
    ("POST", "/rpc/ECHO/a/fail", {}, b""),
    ("POST", "/rpc/ECHO/a/_private", {}, b""),
    ("POST", "/rpc/ECHO/a/missing", {}, b""),
    ("POST", "/rpc/ECHO/a/echo", {}, b'{"args": ["' + b"x" * 2_000_000 + b'"]}'),
    # [[routes]] of the config: /shop and /shop/orders, each with what lies below it.
    ("GET", "/shop", {}, b""),
    ("GET", "/shop/x/y?q=1", {}, b""),
    ("GET", "/shop/orders", {}, b""),
    ("POST", "/shop/orders/7", {}, b"{}"),
    ("GET", "/shop/ordersX", {}, b""),
    ("GET", "/shop/orders/", {}, b""),
]
# Not the direct path's: Quart answers these through either.
TO_QUART = [
    ("GET", "/rpc/ECHO/a/echo", {}, b""),
    ("POST", "/rpc/ECHO/a/echo/", {}, b""),
    ("GET", "/actors/ECHO/a//x", {}, b""),
    ("HEAD", "/actors/ECHO/a/x", {}, b""),
    ("GET", "/nowhere", {}, b""),
    ("GET", "/shop/", {}, b""),
]


REQUESTS = [(*request, True) for request in DIRECT] + [(*request, False) for request in TO_QUART]


@pytest.mark.parametrize(("method", "url", "headers", "body", "direct"), REQUESTS)
async def test_the_direct_path_answers_as_quart_does(
    data_dir, autojump_clock, method, url, headers, body, direct
):
    async with open_runtime(CONFIG, data_dir=data_dir) as rt:
        front = rt.asgi_app
        # The Quart app behind the direct path serves every route itself.
        quart_app, reached_quart = front._quart_app, []

        async def quart_counted(scope, receive, send):
            reached_quart.append(scope["path"])
            await quart_app(scope, receive, send)

        front._quart_app = quart_counted
        answers = []
        for app in (front, quart_app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
                response = await http.request(
                    method, url, headers={"x-request-id": "req-1", **headers}, content=body
                )
            answers.append((response.status_code, sorted(response.headers.items()), response.content))
    assert answers[0] == answers[1]
    assert reached_quart == ([] if direct else [url.partition("?")[0]])


async def test_each_path_counts_its_requests_once(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, actors={"ECHO": Echo}) as rt:
        transport = httpx.ASGITransport(app=rt.asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://roost.test") as http:
            await http.get("/actors/ECHO/a/x")  # the direct path
            await http.get("/healthz")  # Quart
            metrics = (await http.get("/metrics")).text
    assert "roost_http_requests_total 3" in metrics.splitlines()


class Counter(Actor):
    async def fetch(self, request: Request) -> Response:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return Response({"n": n})

    async def value(self) -> int:
        return await self.storage.get("n", 0)


async def test_a_request_whose_client_goes_away_after_its_body_still_runs(data_dir, autojump_clock):
    async with open_runtime(data_dir=data_dir, actors={"COUNT": Counter}) as rt:
        messages = [{"type": "http.request", "body": b"", "more_body": False}, {"type": "http.disconnect"}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            pass  # the connection is gone: the server drops what is sent

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/actors/COUNT/a/x",
            "query_string": b"",
            "headers": [],
        }
        await rt.asgi_app(scope, receive, send)
        assert await rt.namespace("COUNT").get_by_name("a").value() == 1
