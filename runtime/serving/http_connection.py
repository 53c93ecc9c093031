"""One HTTP/1.1 connection of Roost's HTTP server: h11 parses, the ASGI app answers.

Requests on a connection are served one after another, the app called in the connection's own
task: no task, channel or cancel scope is made per request, which is where hypercorn spent
most of a request's CPU (see ``http_server``). A pipelined request waits in h11's buffer until
the one before it is answered.

While the app runs, the socket is read only when the app asks for more of the body, so a
client that goes away is noticed when a write to it fails, not before: the app's ``send``
raises ``ClientDisconnected`` and its next ``receive`` answers ``http.disconnect``. A request
already being served therefore runs to its end, which suits durable calls (their writes are
made and acknowledged whole or not at all).

What the client does wrong gets an answer and a closed connection: a malformed request 400, a
head over h11's size limit 431; a client too slow within the timeouts is closed silently.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import h11
import trio

log = logging.getLogger("roost.http.server")

RECEIVE_BYTES = 65536
LINGER_SECONDS = 1.0
_ASGI = {"version": "3.0", "spec_version": "2.3"}
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


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
        self.h11 = h11.Connection(h11.SERVER)
        self.client = _address(stream.socket.getpeername())
        self.server = _address(stream.socket.getsockname())
        self._waiting: trio.CancelScope | None = None
        self._exchange: _Exchange | None = None

    def drain(self) -> None:
        """Close once the current answer is complete: now, if the connection waits for a
        request; an endless answer (server-sent events) is ended now."""
        if self._waiting is not None and not self.h11.trailing_data[0]:
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
                self.h11.start_next_cycle()
        except ClientDisconnected:
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(LINGER_SECONDS):
                if self.h11.their_state in (h11.SEND_BODY, h11.ERROR):
                    await self._linger()
                await self.stream.aclose()

    async def _linger(self) -> None:
        """Close the sending side and read what the client still sends, for a moment: closing
        a socket with unread data resets it, and the reset can destroy the answer (a 400, a
        413) before the client reads it."""
        try:
            await self.stream.send_eof()
            while await self.stream.receive_some(RECEIVE_BYTES):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _next_request(self) -> h11.Request | None:
        """The next request's head; ``None`` when the client closed or took too long, sent
        what is not HTTP/1.1 (answered 400 or 431 first), or the server drains before any
        of the next request arrived."""
        with trio.CancelScope(
            deadline=trio.current_time() + self.limits.keep_alive_timeout_seconds
        ) as waiting:
            self._waiting = waiting
            if self.draining.is_set():
                return None
            try:
                while True:
                    event = self.h11.next_event()
                    if isinstance(event, h11.Request):
                        return event
                    if event is not h11.NEED_DATA:
                        return None  # ConnectionClosed
                    await self.receive()
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._waiting = None
        return None

    async def receive(self) -> None:
        """Read what the client sent into h11 (end of stream included)."""
        self.h11.receive_data(await self.stream.receive_some(RECEIVE_BYTES))

    async def write(self, *events: Any) -> None:
        """Send ``events`` in one write; ``ClientDisconnected`` if the client is gone or
        stopped reading."""
        data = b"".join(self.h11.send(event) or b"" for event in events)
        with trio.move_on_after(self.limits.write_timeout_seconds) as timed_out:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ClientDisconnected("the client closed the connection") from exc
        if timed_out.cancelled_caught:
            raise ClientDisconnected("the client stopped reading the answer")

    async def _refuse(self, exc: h11.RemoteProtocolError) -> None:
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        status = exc.error_status_hint
        what = "the request head is too large" if status == 431 else f"malformed request: {exc}"
        body = json.dumps({"error": what, "type": "BadRequest"}).encode()
        headers = [*_json_headers(body), (b"connection", b"close")]
        try:
            await self.write(response_head(status, headers), h11.Data(data=body), h11.EndOfMessage())
        except ClientDisconnected:
            pass


class _Exchange:
    """One request and its answer: the scope, ``receive`` and ``send`` of one app call."""

    def __init__(self, connection: HttpConnection, request: h11.Request) -> None:
        self._connection = connection
        self._request = request
        self._head_only = request.method == b"HEAD"
        self._body_read = False
        self._continue_sent = False
        self._start: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._streaming = False
        self._complete = trio.Event()
        self._disconnected = False
        self._scope = trio.CancelScope()

    def end_stream(self) -> None:
        """Cancel the app if its answer has no end; another answer finishes."""
        if self._streaming:
            self._scope.cancel()

    def keeps_connection(self) -> bool:
        """Whether the next request may follow on this connection: the answer is whole, and
        so is the request (a body the app did not read counts if it has all arrived)."""
        h11_state = self._connection.h11
        if not self._complete.is_set() or self._disconnected or self._connection.draining.is_set():
            return False
        try:
            while h11_state.their_state is h11.SEND_BODY:
                if h11_state.next_event() is h11.NEED_DATA:
                    return False  # the rest of an unread body has yet to come: not worth it
        except h11.RemoteProtocolError:
            return False
        return h11_state.our_state is h11.DONE and h11_state.their_state is h11.DONE

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
            if self._start is None:
                await self._answer_error("the app raised an error")
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
            "http_version": request.http_version.decode(),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii", "replace")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
            "client": self._connection.client,
            "server": self._connection.server,
        }

    async def _receive(self) -> dict[str, Any]:
        if self._body_read or self._disconnected:
            # Nothing more will come from the client: the end of the exchange is what is left.
            await self._complete.wait()
            return {"type": "http.disconnect"}
        connection = self._connection
        if connection.h11.they_are_waiting_for_100_continue and not self._continue_sent:
            self._continue_sent = True
            await connection.write(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            try:
                event = connection.h11.next_event()
            except h11.RemoteProtocolError:
                return self._gone()
            if isinstance(event, h11.Data):
                return {"type": "http.request", "body": bytes(event.data), "more_body": True}
            if isinstance(event, h11.EndOfMessage):
                self._body_read = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if event is not h11.NEED_DATA:
                return self._gone()  # closed halfway through the body
            with trio.move_on_after(connection.limits.read_timeout_seconds):
                try:
                    await connection.receive()
                    continue
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            return self._gone()

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
            self._start = (message["status"], [(bytes(k), bytes(v)) for k, v in message.get("headers", ())])
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if self._start is None:
            raise RuntimeError("http.response.body sent before http.response.start")
        if self._complete.is_set():
            return
        body, more = message.get("body", b""), message.get("more_body", False)
        events: list[Any] = []
        if not self._streaming:
            events.append(self._response_head())
            self._streaming = more
        if body and not self._head_only:
            events.append(h11.Data(data=body))
        if not more:
            events.append(h11.EndOfMessage())
        try:
            await self._connection.write(*events)
        except ClientDisconnected:
            self._gone()
            raise
        if not more:
            self._complete.set()
        elif self._connection.draining.is_set():
            self.end_stream()

    def _response_head(self) -> h11.Response:
        status, headers = self._start  # type: ignore[misc]
        headers.append((b"date", _date_header()))
        if self._connection.draining.is_set():
            headers.append((b"connection", b"close"))
        return response_head(status, headers)

    async def _answer_error(self, what: str) -> None:
        body = json.dumps({"error": what, "type": "InternalError"}).encode()
        self._start = (500, _json_headers(body))
        try:
            await self._send({"type": "http.response.body", "body": body})
        except ClientDisconnected:
            pass


def response_head(status: int, headers: list[tuple[bytes, bytes]]) -> h11.Response:
    return h11.Response(status_code=status, headers=headers, reason=_REASONS.get(status, b""))


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


class _DateHeader:
    """The ``date`` header's value, formatted once a second."""

    second = -1
    value = b""


def _date_header() -> bytes:
    now = int(time.time())
    if now != _DateHeader.second:
        _DateHeader.second, _DateHeader.value = now, formatdate(now, usegmt=True).encode()
    return _DateHeader.value


def _address(address: Any) -> tuple[str, int] | None:
    return (address[0], address[1]) if isinstance(address, tuple) else None
