"""The bytes of HTTP/1.1 for Roost's HTTP server: requests parsed, answer heads written.

httptools (llhttp, the parser of Node.js, in C) turns what a client sends into ``Request``s,
queued as they arrive (pipelined ones too), each with its body in parts. Answers are framed
by ``http_connection``; their heads are written here, with every header the app gave checked
so that none can carry another (CR, LF or NUL).
"""

from __future__ import annotations

import re
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

import httptools

MAX_HEAD_BYTES = 32 * 1024
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_FORBIDDEN = re.compile(rb"[\x00\r\n]")


class BadRequest(Exception):
    """What the client sent cannot be served; the connection answers ``status`` and closes."""

    def __init__(self, status: int, what: str) -> None:
        super().__init__(what)
        self.status = status


@dataclass(slots=True)
class Request:
    """A request as the parser delivers it: the head, then the body in parts."""

    method: bytes
    target: bytes
    http_version: str
    headers: list[tuple[bytes, bytes]]
    keep_alive: bool
    expects_continue: bool
    body: deque[bytes] = field(default_factory=deque)
    complete: bool = False  # the whole body has arrived


class RequestParser:
    """httptools' callbacks: fills a queue of requests as bytes arrive."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.requests: deque[Request] = deque()
        self.closed = False  # end of stream, or a protocol switch (nothing more is HTTP/1.1)
        self.head_open = False  # a request's head has begun to arrive, and is not whole yet
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0

    def feed(self, data: bytes) -> None:
        """Parse ``data``; ``BadRequest`` if it is not HTTP/1.1 or the head is too large."""
        if not data:
            self.closed = True
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.closed = True  # the request before the switch is served; nothing after it
        except httptools.HttpParserCallbackError as exc:
            raise exc.__context__ if isinstance(exc.__context__, BadRequest) else BadRequest(400, str(exc))
        except httptools.HttpParserError as exc:
            raise BadRequest(400, f"malformed request: {exc}") from None
        if self.head_open:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                raise BadRequest(431, f"the request head is over {MAX_HEAD_BYTES} bytes")

    def on_message_begin(self) -> None:
        self._target, self._headers, self.head_open, self._head_bytes = b"", [], True, 0

    def on_url(self, part: bytes) -> None:
        self._target += part

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.head_open = False
        parser, headers = self.parser, self._headers
        version = parser.get_http_version()
        names = {name for name, _ in headers}
        if version == "1.1" and b"host" not in names:
            raise BadRequest(400, "malformed request: an HTTP/1.1 request without a host header")
        expects = b"expect" in names and any(
            name == b"expect" and value.lower() == b"100-continue" for name, value in headers
        )
        self.requests.append(
            Request(parser.get_method(), self._target, version, headers, parser.should_keep_alive(), expects)
        )

    def on_body(self, part: bytes) -> None:
        self.requests[-1].body.append(part)

    def on_message_complete(self) -> None:
        self.requests[-1].complete = True


def response_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines.append(b"\r\n")
    return b"".join(lines)


def json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


class _DateHeader:
    """The ``date`` header's value, formatted once a second."""

    second = -1
    value = b""


def date_header() -> bytes:
    now = int(time.time())
    if now != _DateHeader.second:
        _DateHeader.second, _DateHeader.value = now, formatdate(now, usegmt=True).encode()
    return _DateHeader.value


def check_header(name: bytes, value: bytes) -> None:
    """``ValueError`` unless ``name`` is a token and ``value`` holds no CR, LF or NUL."""
    if not _HEADER_NAME.fullmatch(name) or _HEADER_VALUE_FORBIDDEN.search(value):
        raise ValueError(f"invalid response header {name!r}: {value!r}")
