"""``create_app(rt)``: the quart-trio app behind ``rt.asgi_app``.

Every route goes through one adapter: it assigns the request id (the request's own
``x-request-id``, the trace id of its ``traceparent``, or a new one) and makes it the
correlation id of the events it causes, reads the body under the size limit, turns the
Quart request into a ``runtime.Request``, runs the handler in a span and under the
runtime's request timeout (504 past it), and turns whatever the handler returned or raised
into a response. Handlers, core and extension ones alike, are
``async handler(rt, request, **params) -> Response | dict | list``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from quart import Response as QuartResponse
from quart import g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..correlation import (
    REQUEST_ID_HEADER,
    TRACEPARENT_HEADER,
    correlation_id_from_headers,
    current_correlation_id,
)
from ..errors import CallTimeoutError
from ..extensions import MetricFamily
from ..request import Request, Response, as_response
from . import actor_routes, metrics
from .errors import HttpError, error_response

log = logging.getLogger("roost.http")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024

Handler = Callable[..., Awaitable[Any]]
MetricSource = Callable[[], Awaitable[list[MetricFamily]]]
# (HTTP methods, URL rule in Quart's syntax, handler)
Route = tuple[list[str], str, Handler]
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_app(
    rt: Any,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    routes: list[Route] = (),
    metrics: list[MetricSource] = (),
) -> QuartTrio:
    """The ASGI app of ``rt``: the core routes, then ``routes`` (those of the extensions);
    ``/metrics`` adds what each of ``metrics`` (the extensions') returns at each scrape."""
    app = QuartTrio("roost")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    counter = {"requests": 0}

    def add(methods: list[str], rule: str, handler: Handler) -> None:
        async def view(**params: str) -> QuartResponse:
            return await _serve(rt, handler, params)

        app.add_url_rule(rule, f"{rule} {methods}", view, methods=methods)

    configured = actor_routes.configured_routes(rt.config.routes, ALL_METHODS)
    for methods, rule, handler in [*_core_routes(counter, metrics), *routes, *configured]:
        add(methods, rule, handler)

    @app.before_request
    async def assign_request_id() -> None:
        counter["requests"] += 1
        g.request_id = correlation_id_from_headers(request.headers)

    @app.after_request
    async def add_request_id(response: QuartResponse) -> QuartResponse:
        response.headers[REQUEST_ID_HEADER] = getattr(g, "request_id", "")
        return response

    @app.errorhandler(HTTPException)
    async def http_exception(exc: HTTPException) -> QuartResponse:
        # Routing and protocol errors (404, 405, 413) answer in the same JSON shape.
        name = type(exc).__name__
        message = {
            404: f"no route for {request.method} {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: f"request body over the limit of {max_body_bytes} bytes",
        }.get(exc.code or 0, exc.description or name)
        return _to_quart(Response({"error": message, "type": name}, exc.code or 500))

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> QuartResponse:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _to_quart(error_response(exc))

    return app


def _core_routes(counter: dict[str, int], metric_sources: list[MetricSource]) -> list[Route]:
    async def healthz(rt: Any, req: Request) -> Response:
        if rt.closing:
            return Response({"status": "shutting down"}, 503)
        return Response({"status": "ok"})

    async def prometheus(rt: Any, req: Request) -> Response:
        stats = dict(rt.statistics(), http_requests=counter["requests"])
        families = [family for source in metric_sources for family in await source()]
        return Response(metrics.render(stats, families), headers={"content-type": metrics.CONTENT_TYPE})

    return [
        (["GET"], "/healthz", healthz),
        (["GET"], "/metrics", prometheus),
        *actor_routes.routes(ALL_METHODS),
    ]


async def _serve(rt: Any, handler: Handler, params: dict[str, str]) -> QuartResponse:
    token = current_correlation_id.set(g.request_id)
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    refused: HTTPException | None = None
    try:
        with rt.tracing.span(
            f"HTTP {request.method} {rule}",
            kind="server",
            parent=request.headers.get(TRACEPARENT_HEADER),
            attributes={"http.request.method": request.method, "url.path": request.path, "http.route": rule},
        ) as span:
            try:
                response = await _respond(rt, handler, params)
            except HTTPException as exc:
                # Answered by the app's handler (a body over the limit: 413); raised again
                # outside the span, which would take any exception for a server error.
                refused = exc
                rt.tracing.record_http_status(span, exc.code or 500)
            else:
                rt.tracing.record_http_status(span, response.status)
    finally:
        current_correlation_id.reset(token)
    if refused is not None:
        raise refused
    return _to_quart(response)


async def _respond(rt: Any, handler: Handler, params: dict[str, str]) -> Response:
    """What ``handler`` returned, or the error response for what it raised (a 504 past the
    runtime's request timeout)."""
    timeout = rt.request_timeout_seconds
    try:
        with trio.move_on_after(timeout) as scope:
            body = await request.get_data(cache=False)
            req = Request(
                method=request.method,
                path=request.path,
                query={k: request.args.get(k, "") for k in request.args},
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body if isinstance(body, bytes) else body.encode(),
            )
            response = as_response(await handler(rt, req, **params))
        if scope.cancelled_caught:
            raise CallTimeoutError(f"{request.method} {request.path} took more than {timeout} s")
        return response
    except HTTPException:
        raise
    except Exception as exc:
        response = error_response(exc)
        if response.status == 500 and not getattr(exc, "remote", False) and not isinstance(exc, HttpError):
            log.exception("error in %s %s", request.method, request.path)
        return response


def _to_quart(response: Response) -> QuartResponse:
    return QuartResponse(response.body, status=response.status, headers=response.headers)
