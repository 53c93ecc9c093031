"""``DirectFront``: the actor and RPC routes, and the config's ``[[routes]]``, served
straight from ASGI; every other request goes to the Quart app.

Quart's request and app contexts, hooks and response objects cost more than the actor call
they wrap: served through Quart, durable increments over ``/actors/...`` ran at about two
thirds of the rate they reach served straight from ASGI (``roost serve``, 64 connections,
1,000 actors: 1,304 against 1,919 requests/s). These routes need none of that machinery.
The direct path matches them, reads the body under the size limit and answers through the
same ``Adapter`` as Quart's views, so a response is the same either way. Whatever it does
not match exactly (another route or method, HEAD, a path with ``//`` that Quart would
redirect) goes to Quart, which answers it as before.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import trio
from werkzeug.exceptions import RequestEntityTooLarge

from ..observability.correlation import correlation_id_from_headers
from .adapter import Adapter, Handler, Incoming, wire_headers
from .errors import bad_request

# Werkzeug's converters, as regular expressions: a segment, or the rest of the path.
_CONVERTERS = {"default": "[^/]+", "path": "[^/].*?"}
_PARAMETER = re.compile(r"<(?:(\w+):)?(\w+)>")


class DirectFront:
    """An ASGI app: ``routes`` (``(methods, rule, handler)``, first match wins) served
    directly, everything else by ``quart_app``."""

    def __init__(
        self, quart_app: Any, adapter: Adapter, routes: list[tuple[list[str], str, Handler]]
    ) -> None:
        self._quart_app = quart_app
        self._adapter = adapter
        self._routes = [
            (_pattern(rule), frozenset(methods), rule, handler) for methods, rule, handler in routes
        ]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] != "HEAD" and "//" not in scope["path"]:
            for pattern, methods, rule, handler in self._routes:
                found = pattern.fullmatch(scope["path"])
                if found is not None and scope["method"] in methods:
                    await self._serve(scope, receive, send, rule, handler, found.groupdict())
                    return
        await self._quart_app(scope, receive, _uncancellable(send))

    async def _serve(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        rule: str,
        handler: Handler,
        params: dict[str, str],
    ) -> None:
        adapter = self._adapter
        adapter.rt.http_requests += 1
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
        }
        request_id = correlation_id_from_headers(headers)

        async def read_body() -> bytes:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > adapter.max_body_bytes:
                raise RequestEntityTooLarge()
            chunks, size = [], 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise bad_request("the client disconnected before the whole body arrived")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > adapter.max_body_bytes:
                    raise RequestEntityTooLarge()
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)

        incoming = Incoming(
            method=scope["method"],
            path=scope["path"],
            rule=rule,
            query=_query(scope.get("query_string", b"")),
            headers=headers,
            read_body=read_body,
        )
        response = await adapter.serve(handler, params, incoming, request_id)
        out = wire_headers(response, request_id)
        out["content-length"] = str(len(response.body))
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in out.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.body})


def _uncancellable(send: Any) -> Any:
    """``send``, shielded from the caller's cancellation.

    quart-trio cancels its request's nursery as soon as it sees the response sent or the
    client gone, and the two race: the final body can still be inside the server's ``send``
    when the cancel lands. A write cut there leaves half an answer on a kept-alive
    connection, and the server's note that the answer is complete unmade.
    """

    async def send_shielded(message: dict[str, Any]) -> None:
        with trio.CancelScope(shield=True):
            await send(message)

    return send_shielded


def _pattern(rule: str) -> re.Pattern[str]:
    """A Werkzeug URL rule (``/a/<name>/<path:rest>``) as a regular expression."""
    parts, end = [], 0
    for parameter in _PARAMETER.finditer(rule):
        converter, name = parameter[1] or "default", parameter[2]
        parts += [re.escape(rule[end : parameter.start()]), f"(?P<{name}>{_CONVERTERS[converter]})"]
        end = parameter.end()
    return re.compile("".join([*parts, re.escape(rule[end:])]))


def _query(raw: bytes) -> dict[str, str]:
    """The query string's parameters, the first value of each, as Werkzeug's ``args`` gives."""
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, errors="replace"):
        query.setdefault(key, value)
    return query
