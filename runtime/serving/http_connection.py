"""One HTTP/1.1 connection of Roost's HTTP server: ``http_wire`` parses, the ASGI app answers.

``http_wire`` turns the bytes into requests (with httptools); this module frames the answers. Requests on a connection are served one after another, the app called in
the connection's own task: no task, channel or cancel scope is made per request, which is
where hypercorn spent most of a request's CPU (see ``http_server``). Pipelined requests wait,
parsed, until the ones before them are answered; the socket is read only when the current
request needs more, so what waits is at most one read (``RECEIVE_BYTES``).

While the app runs, the socket is read only when the app asks for more of the body, so a
client that goes away is noticed when a write to it fails, not before: the app's ``send``
raises ``ClientDisconnected`` and its next ``receive`` answers ``http.disconnect``. A request
already being served therefore runs to its end, which suits durable calls (their writes are
made and acknowledged whole or not at all).

What the client does wrong gets an answer in JSON and a closed connection: a malformed
request 400, a head over ``http_wire.MAX_HEAD_BYTES`` 431; a client too slow for the timeouts is closed
without one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import trio

from .http_wire import (
    BadRequest,
    Request,
    RequestParser,
    check_header,
    date_header,
    json_headers,
    response_head,
)

log = logging.getLogger("roost.http.server")

RECEIVE_BYTES = 65536
LINGER_SECONDS = 1.0
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How long a client may keep the server waiting, in seconds."""

    # From the accept, or the end of an answer, to the whole head of the next request.
    keep_alive_timeout_seconds: float = 5.0
    # For each part of a request body the app reads.
    read_timeout_seconds: float = 30.0
    # For each write of an answer.
    write_timeout_seconds: float = 30.0


class ClientDisconnected(OSError):
    """The client went away: the answer can no longer be written."""


class HttpConnection:
    """Serves the requests of one accepted stream to ``app`` until either side closes, or
    the server drains (``draining`` set, then ``drain()``)."""

    def __init__(
        self, stream: trio.SocketStream, app: Any, limits: ConnectionLimits, *, draining: trio.Event
    ) -> None:
        self.stream = stream
        self.app = app
        self.limits = limits
        self.draining = draining
        self.parsing = RequestParser()
        self.client = _address(stream.socket.getpeername())
        self.server = _address(stream.socket.getsockname())
        self._waiting: trio.CancelScope | None = None
        self._exchange: _Exchange | None = None
        self._linger = False

    def drain(self) -> None:
        """Close once the current answer is complete: at once if the connection waits for a
        request of which nothing has come; an endless answer (server-sent events) ends now."""
        if self._waiting is not None and not self.parsing.head_open:
            self._waiting.cancel()
        if self._exchange is not None:
            self._exchange.end_stream()

    async def run(self) -> None:
        try:
            while (request := await self._next_request()) is not None:
                self._exchange = _Exchange(self, request)
                await self._exchange.run()
                if not self._exchange.keeps_connection():
                    break
                self._exchange = None
                self.parsing.requests.popleft()
        except ClientDisconnected:
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(LINGER_SECONDS):
                if self._linger:
                    await self._drain_input()
                await self.stream.aclose()

    async def _next_request(self) -> Request | None:
        """The next request whose head has arrived; ``None`` when the client closed or took
        too long, sent what is not HTTP/1.1 (answered 400 or 431 first), or the server drains
        before any of the next request arrived."""
        parsing = self.parsing
        with trio.CancelScope(deadline=trio.current_time() + self.limits.keep_alive_timeout_seconds) as waiting:
            self._waiting = waiting
            try:
                while not parsing.requests:
                    if parsing.closed or (self.draining.is_set() and not parsing.head_open):
                        return None
                    await self.receive()
                return parsing.requests[0]
            except BadRequest as exc:
                await self._refuse(exc)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._waiting = None
        return None

    async def receive(self) -> None:
        """Read what the client sent (end of stream included) and parse it."""
        self.parsing.feed(await self.stream.receive_some(RECEIVE_BYTES))

    async def write(self, data: bytes) -> None:
        """Send ``data``; ``ClientDisconnected`` if the client is gone or stopped reading."""
        with trio.move_on_after(self.limits.write_timeout_seconds) as timed_out:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ClientDisconnected("the client closed the connection") from exc
        if timed_out.cancelled_caught:
            raise ClientDisconnected("the client stopped reading the answer")

    async def _refuse(self, exc: BadRequest) -> None:
        self._linger = True
        body = json.dumps({"error": str(exc), "type": "BadRequest"}).encode()
        head = response_head(exc.status, [*json_headers(body), (b"connection", b"close")])
        try:
            await self.write(head + body)
        except ClientDisconnected:
            pass

    async def _drain_input(self) -> None:
        """Close the sending side and read what the client still sends, for a moment: closing
        a socket with unread data resets it, and the reset can destroy the answer (a 400, a
        413) before the client reads it."""
        try:
            await self.stream.send_eof()
            while await self.stream.receive_some(RECEIVE_BYTES):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


class _Exchange:
    """One request and its answer: the scope, ``receive`` and ``send`` of one app call."""

    def __init__(self, connection: HttpConnection, request: Request) -> None:
        self._connection = connection
        self._request = request
        self._head_only = request.method == b"HEAD"
        self._continue_sent = False
        self._body_ended = False  # the app was told the body's end
        self._start: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._framing: str | None = None  # once the head is sent: "length", "chunked", "close", "none"
        self._remaining = 0  # of a declared content-length
        self._keep_alive = request.keep_alive
        self._complete = trio.Event()
        self._disconnected = False
        self._scope = trio.CancelScope()

    def end_stream(self) -> None:
        """Cancel the app if its answer is a stream; an answer of known length finishes."""
        if self._framing in ("chunked", "close"):
            self._scope.cancel()

    def keeps_connection(self) -> bool:
        """Whether the next request may follow on this connection: the answer is whole and
        said so, and so is the request (a body the app did not read counts if it all came)."""
        connection = self._connection
        if not self._request.complete:
            connection._linger = True  # the rest of the body is on its way: read it, then close
            return False
        return (
            self._complete.is_set()
            and self._keep_alive
            and not self._disconnected
            and not connection.draining.is_set()
        )

    async def run(self) -> None:
        try:
            with self._scope:
                await self._connection.app(self._asgi_scope(), self._receive, self._send)
        except ClientDisconnected:
            self._disconnected = True
        except Exception:
            if self._disconnected:
                return  # the app failed on the closed connection (an exception group, say)
            log.exception("the app raised serving %s", self._describe())
            if self._framing is None:  # no head went out yet: the client can still be told
                await self._answer_error("the app raised an error")
            else:
                self._keep_alive = False  # half an answer went out: the connection is spoilt
            return
        if self._disconnected or self._complete.is_set():
            return
        if self._start is None:
            log.error("the app sent no answer to %s", self._describe())
            await self._answer_error("the app sent no answer")
        else:
            # An endless answer the drain ended, or an app that stopped short: end it.
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def _describe(self) -> str:
        return f"{self._request.method.decode()} {self._request.target.decode('ascii', 'replace')}"

    def _asgi_scope(self) -> dict[str, Any]:
        request = self._request
        raw_path, _, query = request.target.partition(b"?")
        if raw_path.startswith((b"http://", b"https://")):  # the absolute form proxies send
            raw_path = b"/" + raw_path.split(b"/", 3)[3] if raw_path.count(b"/") >= 3 else b"/"
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.http_version,
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii", "replace")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": request.headers,
            "client": self._connection.client,
            "server": self._connection.server,
        }

    async def _receive(self) -> dict[str, Any]:
        request, connection = self._request, self._connection
        while not request.body and not request.complete and not self._disconnected:
            if request.expects_continue and not self._continue_sent:
                self._continue_sent = True
                await connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if connection.parsing.closed:
                return self._gone()
            with trio.move_on_after(connection.limits.read_timeout_seconds):
                try:
                    await connection.receive()
                    continue
                except (trio.BrokenResourceError, trio.ClosedResourceError, BadRequest):
                    pass
            return self._gone()
        if request.body:
            part = request.body.popleft()
            more = bool(request.body) or not request.complete
            self._body_ended = not more
            return {"type": "http.request", "body": part, "more_body": more}
        if not self._disconnected and not self._body_ended:
            self._body_ended = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # Nothing more will come from the client: the end of the exchange is what is left.
        await self._complete.wait()
        return {"type": "http.disconnect"}

    def _gone(self) -> dict[str, Any]:
        self._disconnected = True
        self._complete.set()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if self._disconnected:
            raise ClientDisconnected("the client closed the connection")
        kind = message["type"]
        if kind == "http.response.start":
            if self._start is not None:
                raise RuntimeError("http.response.start sent twice")
            self._start = (message["status"], list(message.get("headers", ())))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if self._start is None:
            raise RuntimeError("http.response.body sent before http.response.start")
        if self._complete.is_set():
            return
        body, more = message.get("body", b""), message.get("more_body", False)
        out = b"" if self._framing is not None else self._responseresponse_head(body, more)
        out += self._frame(body, more)
        try:
            await self._connection.write(out)
        except ClientDisconnected:
            self._gone()
            raise
        if not more:
            self._complete.set()
        elif self._connection.draining.is_set():
            self.end_stream()

    def _responseresponse_head(self, first: bytes, more: bool) -> bytes:
        """The status line and headers, choosing how the body is framed."""
        status, app_headers = self._start  # type: ignore[misc]
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        for name, value in app_headers:
            name, value = bytes(name).lower(), bytes(value)
            check_header(name, value)
            if name == b"content-length":
                length = int(value)
                continue
            if name == b"transfer-encoding":
                continue  # the framing is the server's to choose
            if name == b"connection" and value.lower() == b"close":
                self._keep_alive = False
                continue
            headers.append((name, value))
        if status < 200 or status in _NO_BODY_STATUSES:
            self._framing = "none"
            length = None
        elif length is not None:
            self._framing, self._remaining = "length", length
        elif not more:
            self._framing, length = "length", len(first)
            self._remaining = length
        elif self._request.http_version == "1.1":
            self._framing = "chunked"
            headers.append((b"transfer-encoding", b"chunked"))
        else:
            self._framing, self._keep_alive = "close", False
        if length is not None:
            headers.append((b"content-length", str(length).encode()))
        headers.append((b"date", date_header()))
        if self._connection.draining.is_set() or not self._request.complete:
            # Draining, or answering before the body came (a 413): this answer is the last.
            self._keep_alive = False
        if not self._keep_alive:
            headers.append((b"connection", b"close"))
        elif self._request.http_version == "1.0":
            headers.append((b"connection", b"keep-alive"))
        return response_head(status, headers)

    def _frame(self, body: bytes, more: bool) -> bytes:
        """``body`` as the chosen framing sends it (nothing of it for HEAD)."""
        if self._head_only or self._framing == "none":
            return b""
        if self._framing == "chunked":
            chunk = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            return chunk if more else chunk + b"0\r\n\r\n"
        if self._framing == "length":
            fitting = body[: self._remaining]
            self._remaining -= len(body)
            if self._remaining < 0 or (not more and self._remaining > 0):
                # Not the length it declared: the connection cannot carry another answer.
                self._keep_alive = False
                log.error("the answer to %s is not the content-length it declared", self._describe())
            return fitting
        return body

    async def _answer_error(self, what: str) -> None:
        body = json.dumps({"error": what, "type": "InternalError"}).encode()
        self._start = (500, json_headers(body))
        try:
            await self._send({"type": "http.response.body", "body": body})
        except ClientDisconnected:
            pass


def _address(address: Any) -> tuple[str, int] | None:
    return (address[0], address[1]) if isinstance(address, tuple) else None
