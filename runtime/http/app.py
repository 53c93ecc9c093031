"""``create_app(rt)``: the ASGI app behind ``rt.asgi_app``.

A quart-trio app serves every route; in front of it, ``DirectFront`` serves the actor and
RPC routes and the configured ones straight from ASGI (see ``direct``). Both hand each
request to one ``Adapter`` (see ``adapter``), so a route answers the same through either.
With ``[http] internal_token`` set, ``InternalRoutesGuard`` stands in front of both.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Response as QuartResponse
from quart import g, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from ..extensions import MetricFamily
from ..model.request import Request, Response
from ..observability.correlation import REQUEST_ID_HEADER, correlation_id_from_headers
from . import actor_routes, metrics
from .adapter import Adapter, Handler, Incoming, body_stream, wire_headers
from .direct import DirectFront
from .errors import error_response
from .guard import InternalRoutesGuard

log = logging.getLogger("roost.http")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024

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
) -> Any:
    """The ASGI app of ``rt``: the core routes, then ``routes`` (those of the extensions);
    ``/metrics`` adds what each of ``metrics`` (the extensions') returns at each scrape."""
    adapter = Adapter(rt, max_body_bytes)
    app = QuartTrio("roost")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False

    def add(methods: list[str], rule: str, handler: Handler) -> None:
        async def view(**params: str) -> QuartResponse:
            response = await adapter.serve(handler, params, _incoming(), g.request_id)
            return _to_quart(response, g.request_id)

        app.add_url_rule(rule, f"{rule} {methods}", view, methods=methods)

    core = actor_routes.routes(ALL_METHODS)
    configured = actor_routes.configured_routes(rt.config.routes, ALL_METHODS)
    for methods, rule, handler in [*_core_routes(adapter, metrics), *core, *routes, *configured]:
        add(methods, rule, handler)

    @app.before_request
    async def assign_request_id() -> None:
        adapter.rt.http_requests += 1
        g.request_id = correlation_id_from_headers(request.headers)

    @app.after_request
    async def add_request_id(response: QuartResponse) -> QuartResponse:
        response.headers[REQUEST_ID_HEADER] = getattr(g, "request_id", "")
        return response

    @app.errorhandler(HTTPException)
    async def http_exception(exc: HTTPException) -> QuartResponse:
        # Routing errors (404, 405) answer in the same JSON shape; the adapter answers a 413.
        return _to_quart(adapter.refusal(exc, request.method, request.path), getattr(g, "request_id", ""))

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> QuartResponse:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _to_quart(error_response(exc), getattr(g, "request_id", ""))

    # Configured paths are plain and never start with Roost's own prefixes; the longest first
    # is the route Quart's router would pick among overlapping ones.
    configured_first = sorted(configured, key=lambda route: -len(route[1].removesuffix("/<path:rest>")))
    front = DirectFront(app, adapter, [*core, *configured_first])
    token_var = rt.config.http.internal_token
    return front if token_var is None else InternalRoutesGuard(front, rt.config.vars[token_var])


def _core_routes(adapter: Adapter, metric_sources: list[MetricSource]) -> list[Route]:
    async def healthz(rt: Any, req: Request) -> Response:
        if rt.closing:
            return Response({"status": "shutting down"}, 503)
        return Response({"status": "ok"})

    async def prometheus(rt: Any, req: Request) -> Response:
        stats = rt.statistics()
        workers = None if rt.placement is None else await rt.placement.statistics(stats)
        families = [family for source in metric_sources for family in await source()]
        text = metrics.render(stats, families, workers, getattr(rt.placement, "metric_label", "worker"))
        return Response(text, headers={"content-type": metrics.CONTENT_TYPE})

    async def cluster(rt: Any, req: Request) -> Response:
        status = getattr(rt.placement, "status", None)
        if status is None:
            return Response({"error": "this server is not a cluster node (roost serve --cluster)"}, 404)
        return Response(status())

    return [(["GET"], "/healthz", healthz), (["GET"], "/metrics", prometheus), (["GET"], "/cluster", cluster)]


def _incoming() -> Incoming:
    """Quart's current request, for the adapter."""

    async def read_body() -> bytes:
        body = await request.get_data(cache=False)
        return body if isinstance(body, bytes) else body.encode()

    return Incoming(
        method=request.method,
        path=request.path,
        rule=request.url_rule.rule if request.url_rule is not None else request.path,
        query={k: request.args.get(k, "") for k in request.args},
        headers={k.lower(): v for k, v in request.headers.items()},
        read_body=read_body,
    )


def _to_quart(response: Response, request_id: str) -> QuartResponse:
    headers = wire_headers(response, request_id)
    if response.chunks is None:
        return QuartResponse(response.body, status=response.status, headers=headers)
    streamed = QuartResponse(body_stream(response, request_id), status=response.status, headers=headers)
    # A stream lasts as long as its producer: Quart's RESPONSE_TIMEOUT (60 s) would cut it.
    streamed.timeout = None
    return streamed
