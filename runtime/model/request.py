"""HTTP values handed to and returned by ``Actor.fetch``: plain data, no I/O.

``Request`` is what an actor receives; ``Response`` what it returns. A dict or list body is
JSON, a str body UTF-8 text. Header names are lowercase. A route handler's response may
instead stream its body (``chunks``, e.g. server-sent events); what an actor's ``fetch``
returns crosses a stub as status, headers and a whole body, so a fetch never streams.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import Any

JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Request:
    method: str = "GET"
    path: str = "/"
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON; ``ValueError`` if it is not JSON."""
        return json.loads(self.body)

    def text(self) -> str:
        """The body decoded as UTF-8; ``ValueError`` if it is not."""
        return self.body.decode("utf-8")


class Response:
    """An HTTP response. ``body`` may be bytes, str (text) or a dict/list (sent as JSON).

    ``chunks``, given instead of a body, is an async iterable of bytes sent as it produces
    them, after the status and headers (chunked, so the length is unknown). The HTTP layer
    closes it when the client goes away or the server drains: it is cancelled at its await,
    and its ``finally`` runs. Only the routes of the HTTP layer send one.
    """

    __slots__ = ("body", "status", "headers", "chunks")

    def __init__(
        self,
        body: bytes | str | dict | list = b"",
        status: int = 200,
        headers: dict[str, str] | None = None,
        *,
        chunks: AsyncIterable[bytes] | None = None,
    ) -> None:
        header_map = {k.lower(): v for k, v in (headers or {}).items()}
        if isinstance(body, (dict, list)):
            body = json.dumps(body, separators=(",", ":")).encode()
            header_map.setdefault("content-type", JSON_CONTENT_TYPE)
        elif isinstance(body, str):
            body = body.encode("utf-8")
            header_map.setdefault("content-type", TEXT_CONTENT_TYPE)
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif not isinstance(body, bytes):
            raise TypeError(f"Response body must be bytes, str, dict or list, not {type(body).__name__}")
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"Response status must be an int in 100..599, got {status!r}")
        if chunks is not None and (body or not hasattr(chunks, "__aiter__")):
            raise TypeError("Response chunks must be an async iterable of bytes, given instead of a body")
        self.body: bytes = body
        self.status: int = status
        self.headers: dict[str, str] = header_map
        self.chunks: AsyncIterable[bytes] | None = chunks

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8")

    def __repr__(self) -> str:
        if self.chunks is not None:
            return f"<Response {self.status} streamed>"
        return f"<Response {self.status} {len(self.body)} bytes>"


def as_response(value: Any) -> Response:
    """What ``fetch`` returned, as a ``Response`` (a dict, list or str is converted)."""
    if isinstance(value, Response):
        return value
    if isinstance(value, (dict, list, str, bytes)):
        return Response(value)
    raise TypeError(f"fetch must return a Response, dict, list, str or bytes, not {type(value).__name__}")
