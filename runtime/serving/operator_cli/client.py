"""``ServerClient``: the operator's commands speak JSON over HTTP to a running ``roost serve``.

Stdlib only (``http.client``), one connection per call. Two errors, one per exit code:

    ServerRefused (Exception)       the server answered with an error status (exit 1)
    ServerUnreachable (OSError)     no answer: refused, unresolvable, timed out (exit 2)

Nothing here knows the actors: only paths and JSON.
"""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, quote, urlencode, urlsplit

DEFAULT_URL = "http://127.0.0.1:8787"
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_ERROR_CHARS = 300  # of a body that is not Roost's JSON error, as shown
_NOT_JSON = object()


class ServerRefused(Exception):
    """The server answered ``status`` with ``message`` (its JSON ``error``)."""

    def __init__(self, status: int, message: str, type_name: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.type_name = type_name


class ServerUnreachable(OSError):
    """No HTTP answer from the server at ``url``."""


def path(*segments: str) -> str:
    """An absolute path of ``segments``, each quoted whole (a ``/`` in a name stays in it)."""
    return "".join("/" + quote(segment, safe="") for segment in segments)


def check_url(url: str) -> SplitResult:
    """``url`` split; ``ValueError`` unless it is ``http(s)://HOST[:PORT][/PREFIX]``."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        raise ValueError(f"the server URL has a bad port: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"the server URL must be http(s)://HOST[:PORT], not {url!r}")
    return parts


@dataclass(frozen=True, slots=True)
class ServerClient:
    """Calls the server at ``url``, with ``token`` as its internal token if given."""

    url: str
    token: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    def call(
        self,
        method: str,
        route: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """The JSON answer to ``method route`` (None for an empty one). Raises
        ``ServerRefused`` for a 4xx or 5xx, ``ServerUnreachable`` if no answer came."""
        parts = check_url(self.url)
        target = parts.path.rstrip("/") + route + (f"?{urlencode(query)}" if query else "")
        headers = {"accept": "application/json", "user-agent": "roost-cli"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = kind(parts.hostname, parts.port, timeout=self.timeout_seconds)
        try:
            connection.request(method, target, body=data, headers=headers)
            answer = connection.getresponse()
            raw = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnreachable(f"cannot reach the server at {self.url}: {_describe(exc)}") from None
        finally:
            connection.close()
        return _decode(answer.status, raw)


def _decode(status: int, raw: bytes) -> Any:
    try:
        payload = json.loads(raw) if raw.strip() else None
    except ValueError:
        payload = _NOT_JSON
    if status >= 400:
        if isinstance(payload, dict) and isinstance(payload.get("error"), str):
            raise ServerRefused(status, payload["error"], str(payload.get("type", "")))
        text = " ".join(raw.decode("utf-8", "replace").split())[:MAX_ERROR_CHARS]
        raise ServerRefused(status, f"the server answered {status}" + (f": {text}" if text else ""))
    if payload is _NOT_JSON:
        raise ServerRefused(status, f"the server answered {status} with a body that is not JSON")
    return payload


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is `roost serve` running there?)"
    if isinstance(exc, socket.gaierror):
        return "cannot resolve the host name"
    if isinstance(exc, TimeoutError):
        return "no answer in time (see --timeout)"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return str(exc) or type(exc).__name__
