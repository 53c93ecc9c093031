"""Roost's HTTP/1.1 server (runtime/serving/http_server.py), spoken to byte by byte.

Each test serves a small ASGI app on a free loopback port and talks raw HTTP/1.1 to it over a
trio stream, so that keep-alive, pipelining, framing, refusals, timeouts and the drain are
seen exactly as a client sees them. The timeouts are real but short (fractions of a second).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from runtime.serving.http_connection import ConnectionLimits
from runtime.serving.http_server import open_listeners, serve_http

SHORT = ConnectionLimits(
    keep_alive_timeout_seconds=0.3, read_timeout_seconds=0.3, write_timeout_seconds=0.3
)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what it was asked: method, path, query and the whole body."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    answer = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope["query_string"].decode(),
            "body": body.decode(),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": answer})


class Server:
    def __init__(self, nursery: trio.Nursery, port: int, shutdown: trio.Event) -> None:
        self.nursery = nursery
        self.port = port
        self.shutdown = shutdown
        self.stopped = trio.Event()

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream("127.0.0.1", self.port)


async def start(nursery: trio.Nursery, app: Any, **options: Any) -> Server:
    listeners = await open_listeners("127.0.0.1:0")
    shutdown = trio.Event()
    server = Server(nursery, listeners[0].socket.getsockname()[1], shutdown)

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_http(app, listeners, shutdown=shutdown, task_status=task_status, **options)
        server.stopped.set()

    await nursery.start(run)
    return server


async def read_answer(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One answer: status, headers (lower-case names) and body, by content-length or chunked."""
    while b"\r\n\r\n" not in buffer:
        data = await stream.receive_some(65536)
        assert data, f"the connection closed before a whole answer; got {bytes(buffer)!r}"
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    pairs = [(name.lower(), value.strip()) for name, _, value in (line.partition(":") for line in lines)]
    headers = dict(pairs)
    assert len(headers) == len(pairs), f"a header twice in {head!r}"
    buffer[:] = rest
    if "content-length" in headers:
        size = int(headers["content-length"])
        while len(buffer) < size:
            buffer += await stream.receive_some(65536)
        body = bytes(buffer[:size])
        del buffer[:size]
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buffer:
                buffer += await stream.receive_some(65536)
            size_line, _, _ = bytes(buffer).partition(b"\r\n")
            size = int(size_line, 16)
            while len(buffer) < len(size_line) + 2 + size + 2:
                buffer += await stream.receive_some(65536)
            body += bytes(buffer[len(size_line) + 2 : len(size_line) + 2 + size])
            del buffer[: len(size_line) + 2 + size + 2]
            if size == 0:
                break
    else:
        body = b""
    return int(status_line.split()[1]), headers, body


async def closed(stream: trio.SocketStream) -> bool:
    """Whether the server closes the stream (within a second), reading past any data."""
    with trio.move_on_after(1):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def test_keeps_the_connection_for_the_next_request(nursery) -> None:
    server = await start(nursery, echo_app)
    stream, buffer = await server.connect(), bytearray()
    for n in range(3):
        await stream.send_all(f"POST /hits/{n}?x=1 HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi".encode())
        status, headers, body = await read_answer(stream, buffer)
        assert status == 200
        assert json.loads(body) == {"method": "POST", "path": f"/hits/{n}", "query": "x=1", "body": "hi"}
        assert "date" in headers and headers.get("connection") != "close"


async def test_pipelined_requests_are_answered_in_order(nursery) -> None:
    server = await start(nursery, echo_app)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"".join(f"GET /{n} HTTP/1.1\r\nhost: t\r\n\r\n".encode() for n in range(5)))
    paths = [json.loads((await read_answer(stream, buffer))[2])["path"] for _ in range(5)]
    assert paths == ["/0", "/1", "/2", "/3", "/4"]


async def test_a_chunked_body_arrives_whole(nursery) -> None:
    server = await start(nursery, echo_app)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(
        b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    assert json.loads((await read_answer(stream, buffer))[2])["body"] == "hello world"


async def test_expect_100_continue_is_answered_before_the_body_is_sent(nursery) -> None:
    server = await start(nursery, echo_app)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n")
    interim = await stream.receive_some(65536)
    assert interim.startswith(b"HTTP/1.1 100 ")
    await stream.send_all(b"data")
    status, _, body = await read_answer(stream, buffer)
    assert (status, json.loads(body)["body"]) == (200, "data")


async def test_the_path_is_percent_decoded_and_the_absolute_form_understood(nursery) -> None:
    server = await start(nursery, echo_app)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"GET /a%20b/%C3%A9 HTTP/1.1\r\nhost: t\r\n\r\n")
    assert json.loads((await read_answer(stream, buffer))[2])["path"] == "/a b/\u00e9"
    await stream.send_all(b"GET http://t:80/over/there?q=1 HTTP/1.1\r\nhost: t\r\n\r\n")
    answer = json.loads((await read_answer(stream, buffer))[2])
    assert (answer["path"], answer["query"]) == ("/over/there", "q=1")


async def test_head_gets_the_headers_without_the_body(nursery) -> None:
    server = await start(nursery, echo_app)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"HEAD / HTTP/1.1\r\nhost: t\r\n\r\nGET /after HTTP/1.1\r\nhost: t\r\n\r\n")
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive_some(65536)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length:" in head.lower()
    # The next answer follows the head at once: no body was sent for HEAD.
    buffer[:] = rest
    assert json.loads((await read_answer(stream, buffer))[2])["path"] == "/after"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without host
        # 16 KiB of a head arrived without its end (h11's limit)
        (b"GET / HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "no-host", "head-too-large"],
)
async def test_a_malformed_request_is_refused_in_json_and_the_connection_closed(
    nursery, request_bytes: bytes, status: int
) -> None:
    server = await start(nursery, echo_app)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(request_bytes)
    answered, headers, body = await read_answer(stream, buffer)
    assert answered == status
    assert json.loads(body)["type"] == "BadRequest"
    assert headers["connection"] == "close"
    assert await closed(stream)


async def test_an_app_that_raises_answers_500_and_the_connection_goes_on(nursery) -> None:
    async def app(scope, receive, send) -> None:
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await echo_app(scope, receive, send)

    server = await start(nursery, app)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"GET /boom HTTP/1.1\r\nhost: t\r\n\r\n")
    status, _, body = await read_answer(stream, buffer)
    assert status == 500 and json.loads(body)["type"] == "InternalError"
    await stream.send_all(b"GET /fine HTTP/1.1\r\nhost: t\r\n\r\n")
    assert (await read_answer(stream, buffer))[0] == 200


async def test_an_app_that_answers_nothing_answers_500(nursery) -> None:
    async def silent(scope, receive, send) -> None:
        return None

    server = await start(nursery, silent)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
    assert (await read_answer(stream, buffer))[0] == 500


async def test_http_1_0_closes_after_the_answer(nursery) -> None:
    server = await start(nursery, echo_app)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"GET / HTTP/1.0\r\n\r\n")
    assert (await read_answer(stream, buffer))[0] == 200
    assert await closed(stream)


async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(nursery) -> None:
    server = await start(nursery, echo_app, limits=SHORT)
    stream = await server.connect()
    assert await closed(stream)


async def test_a_request_head_trickling_in_is_cut_at_the_keep_alive_timeout(nursery) -> None:
    server = await start(nursery, echo_app, limits=SHORT)
    stream = await server.connect()
    cut = False
    with trio.move_on_after(2):
        try:
            for byte in b"GET / HTTP/1.1\r\nhost: t\r\nx-slow: " + b"a" * 100:
                await stream.send_all(bytes([byte]))
                await trio.sleep(0.05)
        except trio.BrokenResourceError:
            cut = True
    assert cut or await closed(stream)


async def test_a_client_gone_halfway_through_the_body_is_a_disconnect_to_the_app(nursery) -> None:
    received: list[dict[str, Any]] = []
    done = trio.Event()

    async def app(scope, receive, send) -> None:
        while (message := await receive())["type"] != "http.disconnect":
            received.append(message)
        done.set()

    server = await start(nursery, app)
    stream = await server.connect()
    await stream.send_all(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nonly part")
    await trio.sleep(0.05)
    await stream.aclose()
    with trio.fail_after(2):
        await done.wait()
    assert b"".join(message["body"] for message in received) == b"only part"


async def test_a_streamed_answer_is_chunked_and_the_drain_ends_it_cleanly(nursery) -> None:
    cancelled = trio.Event()

    async def events(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        try:
            for n in range(1000):
                await send({"type": "http.response.body", "body": f"data: {n}\n\n".encode(), "more_body": True})
                await trio.sleep(0.01)
        finally:
            cancelled.set()

    server = await start(nursery, events)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"GET /events HTTP/1.1\r\nhost: t\r\n\r\n")
    while b"data: 2" not in buffer:
        buffer += await stream.receive_some(65536)
    assert b"transfer-encoding: chunked" in bytes(buffer).lower()
    server.shutdown.set()
    with trio.fail_after(2):
        await cancelled.wait()
        await server.stopped.wait()
    # The answer ends with the last chunk (a clean end, not a cut), then the server closes.
    while not bytes(buffer).endswith(b"0\r\n\r\n"):
        data = await stream.receive_some(65536)
        assert data, f"closed before the last chunk: {bytes(buffer)[-60:]!r}"
        buffer += data
    assert await closed(stream)


async def test_the_drain_closes_idle_connections_and_lets_answers_finish(nursery) -> None:
    release = trio.Event()
    started = trio.Event()

    async def slow(scope, receive, send) -> None:
        if scope["path"] == "/slow":
            started.set()
            await release.wait()
        await echo_app(scope, receive, send)

    server = await start(nursery, slow)
    idle = await server.connect()
    busy, buffer = await server.connect(), bytearray()
    await idle.send_all(b"GET /first HTTP/1.1\r\nhost: t\r\n\r\n")
    assert (await read_answer(idle, bytearray()))[0] == 200
    await busy.send_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
    await started.wait()
    server.shutdown.set()
    assert await closed(idle)
    # Not accepting any more.
    with pytest.raises(OSError):
        await server.connect()
    assert not server.stopped.is_set()
    release.set()
    status, headers, _ = await read_answer(busy, buffer)
    assert (status, headers["connection"]) == (200, "close")
    with trio.fail_after(2):
        await server.stopped.wait()


async def test_an_answer_past_the_graceful_timeout_is_cut(nursery) -> None:
    async def stuck(scope, receive, send) -> None:
        await trio.sleep_forever()

    server = await start(nursery, stuck, graceful_timeout=0.2)
    stream = await server.connect()
    await stream.send_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
    await trio.sleep(0.05)
    server.shutdown.set()
    with trio.fail_after(2):
        await server.stopped.wait()
    assert await closed(stream)


async def test_a_port_in_use_is_a_config_error() -> None:
    from runtime.errors import ConfigError

    listeners = await open_listeners("127.0.0.1:0")
    port = listeners[0].socket.getsockname()[1]
    with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
        await open_listeners(f"127.0.0.1:{port}")
    await listeners[0].aclose()


async def test_a_header_that_would_inject_another_is_refused_with_500(nursery) -> None:
    async def injecting(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1\r\nset-cookie: evil=1")]})
        await send({"type": "http.response.body", "body": b"no"})

    server = await start(nursery, injecting)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
    status, headers, _ = await read_answer(stream, buffer)
    assert status == 500 and "set-cookie" not in headers


async def test_http_1_0_keep_alive_is_kept_when_asked(nursery) -> None:
    server = await start(nursery, echo_app)
    stream, buffer = await server.connect(), bytearray()
    for _ in range(2):
        await stream.send_all(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        status, headers, _ = await read_answer(stream, buffer)
        assert (status, headers["connection"]) == (200, "keep-alive")


async def test_an_answer_shorter_than_its_content_length_closes_the_connection(nursery) -> None:
    async def short(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345"})

    server = await start(nursery, short)
    stream = await server.connect()
    await stream.send_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
    assert await closed(stream)


async def test_an_answer_given_before_the_body_is_read_reaches_the_client(nursery) -> None:
    async def refuse_large(scope, receive, send) -> None:
        body = b'{"error": "too large", "type": "PayloadTooLarge"}'
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    server = await start(nursery, refuse_large)
    stream, buffer = await server.connect(), bytearray()
    await stream.send_all(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 10000000\r\n\r\n" + b"x" * 200_000)
    status, headers, _ = await read_answer(stream, buffer)
    assert (status, headers["connection"]) == (413, "close")
    await stream.send_eof()  # the client stops sending: the server, reading the rest, closes
    assert await closed(stream)
