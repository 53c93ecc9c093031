"""``Adapter``: what every route goes through, whichever front received the request.

Two fronts share it: the Quart app (every route) and the direct path (the actor, RPC and
configured routes, straight from ASGI: see ``direct``). Either hands over the request as
``Incoming`` with its request id (the request's own ``x-request-id``, the trace id of its
``traceparent``, or a new one). The adapter makes that id the correlation id of the events
the request causes, reads the body under the size limit, runs the handler in a span and
under the runtime's request timeout (504 past it), and turns whatever the handler returned
or raised into a ``Response``. Handlers, core and extension ones alike, are
``async handler(rt, request, **params) -> Response | dict | list``.

A streamed response (``Response.chunks``) is produced after the handler returned: the
request timeout bounds the handler, not the stream, which lasts until its producer ends or
is cancelled (the client went away, the server drains). Its chunks are produced with the
request's correlation id, as the handler ran. Only Quart's front streams (extension routes);
the direct path's responses come from actors' ``fetch``, whole.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio
from werkzeug.exceptions import HTTPException

from ..errors import CallTimeoutError
from ..model.request import Request, Response, as_response
from ..observability.correlation import REQUEST_ID_HEADER, TRACEPARENT_HEADER, current_correlation_id
from .errors import HttpError, error_response

log = logging.getLogger("roost.http")

Handler = Callable[..., Awaitable[Any]]
# What a bytes body is sent as when its response names no content type.
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request as a front received it. ``read_body`` raises ``RequestEntityTooLarge`` past
    the size limit."""

    method: str
    path: str
    rule: str  # the matched route's rule, which names the span
    query: dict[str, str]
    headers: dict[str, str]  # names lowercase
    read_body: Callable[[], Awaitable[bytes]]


class Adapter:
    def __init__(self, rt: Any, max_body_bytes: int) -> None:
        self.rt = rt
        self.max_body_bytes = max_body_bytes

    async def serve(
        self, handler: Handler, params: dict[str, str], incoming: Incoming, request_id: str
    ) -> Response:
        token = current_correlation_id.set(request_id)
        try:
            with self.rt.tracing.span(
                f"HTTP {incoming.method} {incoming.rule}",
                kind="server",
                parent=incoming.headers.get(TRACEPARENT_HEADER),
                attributes={
                    "http.request.method": incoming.method,
                    "url.path": incoming.path,
                    "http.route": incoming.rule,
                },
            ) as span:
                response = await self._respond(handler, params, incoming)
                self.rt.tracing.record_http_status(span, response.status)
        finally:
            current_correlation_id.reset(token)
        return response

    async def _respond(self, handler: Handler, params: dict[str, str], incoming: Incoming) -> Response:
        """What ``handler`` returned, or the error response for what it raised (a 504 past the
        runtime's request timeout, a 413 for a body over the limit)."""
        timeout = self.rt.request_timeout_seconds
        try:
            with trio.move_on_after(timeout) as scope:
                request = Request(
                    method=incoming.method,
                    path=incoming.path,
                    query=incoming.query,
                    headers=incoming.headers,
                    body=await incoming.read_body(),
                )
                response = as_response(await handler(self.rt, request, **params))
            if scope.cancelled_caught:
                raise CallTimeoutError(f"{incoming.method} {incoming.path} took more than {timeout} s")
            return response
        except HTTPException as exc:
            return self.refusal(exc, incoming.method, incoming.path)
        except Exception as exc:
            response = error_response(exc)
            if (
                response.status == 500
                and not getattr(exc, "remote", False)
                and not isinstance(exc, HttpError)
            ):
                log.exception("error in %s %s", incoming.method, incoming.path)
            return response

    def refusal(self, exc: HTTPException, method: str, path: str) -> Response:
        """A routing or protocol error (404, 405, 413) in the JSON shape of every error."""
        name = type(exc).__name__
        message = {
            404: f"no route for {method} {path}",
            405: f"{method} is not allowed on {path}",
            413: f"request body over the limit of {self.max_body_bytes} bytes",
        }.get(exc.code or 0, exc.description or name)
        return Response({"error": message, "type": name}, exc.code or 500)


async def body_stream(response: Response, request_id: str) -> AsyncIterator[bytes]:
    """The chunks of a streamed ``response``, each produced with ``request_id`` as the
    correlation id. Closing this closes the response's own iterator too."""
    assert response.chunks is not None
    iterator = aiter(response.chunks)
    try:
        while True:
            token = current_correlation_id.set(request_id)
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            finally:
                current_correlation_id.reset(token)
            yield chunk
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def wire_headers(response: Response, request_id: str) -> dict[str, str]:
    """The headers a response goes out with: its own, a content type, and the request id."""
    headers = dict(response.headers)
    headers.setdefault("content-type", DEFAULT_CONTENT_TYPE)
    headers[REQUEST_ID_HEADER] = request_id
    return headers
