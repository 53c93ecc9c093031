"""``InternalRoutesGuard``: the internal routes answer only a request with the bearer token.

The internal routes reach every actor method and every queue operation, as a Durable
Object's own stub would; on Cloudflare only a Worker's routes face the Internet. With
``[http] internal_token`` set, a request whose first path segment is one of
``INTERNAL_SEGMENTS`` must carry ``Authorization: Bearer <token>``, or it is answered 401
before it is routed: nothing runs, nothing changes, its body is never read. The health
check, the config's ``[[routes]]`` and the webhooks (which verify their own signatures)
stay public. The guard sits in front of both fronts, so no path reaches a route around it.

The dashboard's pages (``/dashboard...``) also take the session cookie that a browser gets
from its login form: ``POST /dashboard/login`` with the token, answered here, sets an
HttpOnly, SameSite=Strict cookie holding an HMAC of the token (never the token itself), and
``GET /dashboard/login`` (the form) is the one dashboard page open to everyone. The cookie
opens only ``/dashboard`` paths and the job status events that the job page listens to
(``GET /jobs/{id}/events``); every other internal route still needs the bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any
from urllib.parse import parse_qs

from ..observability.correlation import correlation_id_from_headers

# The first path segment of every internal route (API.md section 8). Empty segments are
# skipped, as Werkzeug merges repeated slashes before it routes.
INTERNAL_SEGMENTS = frozenset({"actors", "rpc", "queues", "jobs", "metrics", "dashboard", "cluster"})
SESSION_COOKIE = "roost_session"
LOGIN_PATH = ("dashboard", "login")
LOGOUT_PATH = ("dashboard", "logout")
MAX_LOGIN_FORM_BYTES = 4096
# What the session cookie holds: an HMAC of the token under this label, so a copied cookie
# opens the dashboard but never reveals the token the other internal routes take.
_SESSION_LABEL = b"roost dashboard session v1"


class InternalRoutesGuard:
    """An ASGI app: ``app`` behind the bearer token ``token`` for the internal routes."""

    def __init__(self, app: Any, token: str) -> None:
        self._app = app
        self._token = token.encode()
        self._expected = f"bearer {token}".encode()
        self._session = hmac.new(self._token, _SESSION_LABEL, hashlib.sha256).hexdigest().encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not _is_internal(scope["path"]):
            await self._app(scope, receive, send)
            return
        segments, method = _segments(scope["path"]), scope["method"]
        if segments == LOGIN_PATH and method == "POST":
            await self._login(scope, receive, send)
        elif segments == LOGOUT_PATH and method == "POST":
            await _redirect(scope, send, "/dashboard/login", _session_cookie(scope, "", max_age=0))
        elif (
            segments == LOGIN_PATH
            or self._authorized(scope)
            or (_session_opens(segments, method) and self._has_session(scope))
        ):
            await self._app(scope, receive, send)
        elif segments[0] == "dashboard" and "text/html" in _header(scope, b"accept"):
            # A browser refused gets a page that leads to the login form.
            await _refuse_page(scope, send, "Log in with the internal token to see the dashboard.")
        else:
            await _refuse(scope, send)

    async def _login(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Check the form's token; right, set the session cookie and go to the overview."""
        body = await _read_body(receive, MAX_LOGIN_FORM_BYTES)
        try:
            given = parse_qs(body.decode("utf-8")).get("token", [""])[0].encode() if body else b""
        except UnicodeDecodeError:
            given = b""
        if not hmac.compare_digest(given, self._token):
            await _refuse_page(scope, send, "That is not the internal token.")
            return
        await _redirect(scope, send, "/dashboard", _session_cookie(scope, self._session.decode()))

    def _has_session(self, scope: dict[str, Any]) -> bool:
        for part in _header(scope, b"cookie").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE:
                return hmac.compare_digest(value.encode("latin-1"), self._session)
        return False

    def _authorized(self, scope: dict[str, Any]) -> bool:
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
                scheme, _, credentials = value.partition(b" ")
                return hmac.compare_digest(scheme.lower() + b" " + credentials.strip(), self._expected)
        return False


def _session_opens(segments: tuple[str, ...], method: str) -> bool:
    """What the session cookie opens: the dashboard, and the job status events its job page
    listens to (``GET /jobs/{id}/events``)."""
    if segments[0] == "dashboard":
        return True
    return method == "GET" and len(segments) == 3 and segments[0] == "jobs" and segments[2] == "events"


def _segments(path: str) -> tuple[str, ...]:
    return tuple(segment for segment in path.split("/") if segment) or ("",)


def _is_internal(path: str) -> bool:
    return _segments(path)[0] in INTERNAL_SEGMENTS


def _header(scope: dict[str, Any], name: bytes) -> str:
    """Every value of header ``name``, joined as one (cookies: with ``;``)."""
    values = [v.decode("latin-1") for n, v in scope["headers"] if n.lower() == name]
    return ("; " if name == b"cookie" else ", ").join(values)


async def _read_body(receive: Any, limit: int) -> bytes:
    """The request body, cut at ``limit`` bytes (a longer one is no login form)."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        body += message.get("body", b"")
        if len(body) > limit:
            return b""
        if not message.get("more_body", False):
            return body


def _session_cookie(scope: dict[str, Any], value: str, *, max_age: int | None = None) -> str:
    attributes = "; Path=/; HttpOnly; SameSite=Strict"
    if scope.get("scheme") == "https":
        attributes += "; Secure"
    if max_age is not None:
        attributes += f"; Max-Age={max_age}"
    return f"{SESSION_COOKIE}={value}{attributes}"


def _request_id(scope: dict[str, Any]) -> bytes:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    return correlation_id_from_headers(headers).encode("latin-1")


async def _redirect(scope: dict[str, Any], send: Any, location: str, cookie: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode()),
                (b"set-cookie", cookie.encode("latin-1")),
                (b"cache-control", b"no-store"),
                (b"content-length", b"0"),
                (b"x-request-id", _request_id(scope)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _refuse_page(scope: dict[str, Any], send: Any, message: str) -> None:
    """A 401 for a browser: ``message`` (fixed text, never the request's) and the way in."""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Log in · Roost</title>'
        '<meta http-equiv="refresh" content="3; url=/dashboard/login"></head><body>'
        f'<p id="error">{message}</p><p><a href="/dashboard/login" id="login-link">Log in</a></p>'
        "</body></html>"
    ).encode()
    await _unauthorized(scope, send, body, b"text/html; charset=utf-8", (b"cache-control", b"no-store"))


async def _refuse(scope: dict[str, Any], send: Any) -> None:
    body = json.dumps(
        {"error": "this route needs Authorization: Bearer <internal_token>", "type": "Unauthorized"}
    ).encode()
    await _unauthorized(scope, send, body, b"application/json")


async def _unauthorized(
    scope: dict[str, Any], send: Any, body: bytes, content_type: bytes, *extra: tuple[bytes, bytes]
) -> None:
    """Answer 401 with ``body``, the bearer challenge and the request id."""
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *extra,
        (b"www-authenticate", b'Bearer realm="roost"'),
        (b"x-request-id", _request_id(scope)),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
