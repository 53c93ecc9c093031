"""``InternalRoutesGuard``: the internal routes answer only a request with the bearer token.

The internal routes reach every actor method and every queue operation, as a Durable
Object's own stub would; on Cloudflare only a Worker's routes face the Internet. With
``[http] internal_token`` set, a request whose first path segment is one of
``INTERNAL_SEGMENTS`` must carry ``Authorization: Bearer <token>``, or it is answered 401
before it is routed: nothing runs, nothing changes, its body is never read. The health
check, the config's ``[[routes]]`` and the webhooks (which verify their own signatures)
stay public. The guard sits in front of both fronts, so no path reaches a route around it.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from ..observability.correlation import correlation_id_from_headers

# The first path segment of every internal route (API.md section 8). Empty segments are
# skipped, as Werkzeug merges repeated slashes before it routes.
INTERNAL_SEGMENTS = frozenset({"actors", "rpc", "queues", "jobs", "metrics", "dashboard"})


class InternalRoutesGuard:
    """An ASGI app: ``app`` behind the bearer token ``token`` for the internal routes."""

    def __init__(self, app: Any, token: str) -> None:
        self._app = app
        self._expected = f"bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _is_internal(scope["path"]) and not self._authorized(scope):
            await _refuse(scope, send)
            return
        await self._app(scope, receive, send)

    def _authorized(self, scope: dict[str, Any]) -> bool:
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                # The scheme is case-insensitive (RFC 7235); the token is compared in constant time.
                scheme, _, credentials = value.partition(b" ")
                return hmac.compare_digest(scheme.lower() + b" " + credentials.strip(), self._expected)
        return False


def _is_internal(path: str) -> bool:
    first = next((segment for segment in path.split("/") if segment), "")
    return first in INTERNAL_SEGMENTS


async def _refuse(scope: dict[str, Any], send: Any) -> None:
    headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
    body = json.dumps(
        {"error": "this route needs Authorization: Bearer <internal_token>", "type": "Unauthorized"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="roost"'),
                (b"x-request-id", correlation_id_from_headers(headers).encode("latin-1")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
