"""Routes to actors: ``/actors/...`` to ``fetch`` and ``POST /rpc/...`` to any RPC method."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from ..errors import MethodNotFoundError
from ..model.actor import RESERVED_METHODS
from ..model.request import Request, Response
from ..model.stubs import ActorStub, Namespace
from .errors import bad_request, not_found


def routes(all_methods: list[str]) -> list[tuple[list[str], str, Any]]:
    return [
        (all_methods, "/actors/<binding>/id/<hex_id>", fetch_by_id),
        (all_methods, "/actors/<binding>/id/<hex_id>/", fetch_by_id),
        (all_methods, "/actors/<binding>/id/<hex_id>/<path:rest>", fetch_by_id),
        (all_methods, "/actors/<binding>/<name>", fetch_by_name),
        (all_methods, "/actors/<binding>/<name>/", fetch_by_name),
        (all_methods, "/actors/<binding>/<name>/<path:rest>", fetch_by_name),
        (["POST"], "/rpc/<binding>/<name>/<method>", rpc),
    ]


def namespace(rt: Any, binding: str) -> Namespace:
    namespaces = rt.namespaces
    if binding not in namespaces or binding.startswith("__"):
        raise not_found(f"no actor binding {binding!r}")
    return namespaces[binding]


def configured_routes(config_routes: list[Any], all_methods: list[str]) -> list[tuple[list[str], str, Any]]:
    """The ``[[routes]]`` of the config: a path and everything below it, to one actor's fetch."""
    out = []
    for route in config_routes:

        async def forward(rt: Any, request: Request, rest: str = "", route: Any = route) -> Response:
            return await namespace(rt, route.binding).get_by_name(route.name).fetch(request)

        out += [(all_methods, route.path, forward), (all_methods, route.path + "/<path:rest>", forward)]
    return out


async def fetch_by_name(rt: Any, request: Request, binding: str, name: str, rest: str = "") -> Response:
    return await _fetch(namespace(rt, binding).get_by_name(name), request, rest)


async def fetch_by_id(rt: Any, request: Request, binding: str, hex_id: str, rest: str = "") -> Response:
    ns = namespace(rt, binding)
    try:
        actor_id = ns.id_from_string(hex_id)
    except ValueError as exc:
        raise not_found(str(exc)) from None
    return await _fetch(ns.get(actor_id), request, rest)


async def _fetch(stub: ActorStub, request: Request, rest: str) -> Response:
    forwarded = Request(request.method, "/" + rest, request.query, request.headers, request.body)
    return await stub.fetch(forwarded)


async def rpc(rt: Any, request: Request, binding: str, name: str, method: str) -> Response:
    stub = namespace(rt, binding).get_by_name(name)
    if method in RESERVED_METHODS or method.startswith("_"):
        raise MethodNotFoundError(f"{method!r} is not an RPC method")
    payload = json_body(request, default={})
    if not isinstance(payload, dict):
        raise bad_request('RPC body must be a JSON object {"args"?: [...], "kwargs"?: {...}}')
    unknown = set(payload) - {"args", "kwargs"}
    if unknown:
        raise bad_request(f"unknown keys in RPC body: {sorted(unknown)}")
    args, kwargs = payload.get("args", []), payload.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise bad_request("RPC 'args' must be a list and 'kwargs' an object")
    result = await getattr(stub, method)(*args, **kwargs)
    return Response({"result": to_json(result)})


def json_body(request: Request, *, default: Any) -> Any:
    """The request body parsed as JSON (``default`` if empty); 400 if it is not JSON."""
    if not request.body.strip():
        return default
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"malformed JSON body: {exc}") from None


def to_json(value: Any) -> Any:
    """An RPC result as JSON: bytes become base64 strings, datetimes ISO 8601 strings."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    return value
