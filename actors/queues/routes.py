"""The HTTP routes of the queues (API.md section 6), as handlers of the runtime's HTTP layer."""

from __future__ import annotations

import base64
import json
from typing import Any

from runtime import Request, Response

from ..errors import QueueLimitError
from ..names import REGISTRY_BINDING
from .message_codec import check_delay
from .queue import Queue
from .telemetry import record_pull


def routes() -> list[tuple[list[str], str, Any]]:
    return [
        (["GET"], "/queues", list_queues),
        (["GET"], "/queues/<name>", queue_metrics),
        (["POST"], "/queues/<name>/messages", send),
        (["POST"], "/queues/<name>/messages/batch", send_batch),
        (["GET"], "/queues/<name>/messages", peek),
        (["DELETE"], "/queues/<name>/messages", purge),
        (["POST"], "/queues/<name>/pause", pause),
        (["POST"], "/queues/<name>/resume", resume),
        (["POST"], "/queues/<name>/messages/pull", pull),
        (["POST"], "/queues/<name>/messages/ack", ack),
        (["POST"], "/queues/<name>/redrive", redrive),
    ]


def _queue(rt: Any, name: str) -> Queue:
    return rt.env[REGISTRY_BINDING].queue(name)


def _json(request: Request) -> Any:
    try:
        return json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise QueueLimitError(f"malformed JSON body: {exc}") from None


def _object(request: Request, allowed: set[str]) -> dict[str, Any]:
    payload = _json(request)
    if not isinstance(payload, dict):
        raise QueueLimitError("the body must be a JSON object")
    unknown = set(payload) - allowed
    if unknown:
        raise QueueLimitError(f"unknown keys {sorted(unknown)}; expected some of {sorted(allowed)}")
    return payload


def _http_body(message: dict[str, Any]) -> tuple[Any, str]:
    """An HTTP message's body as the producer API takes it: bytes arrive base64-encoded."""
    content_type = message.get("content_type", "json")
    body = message.get("body")
    if content_type == "bytes":
        if not isinstance(body, str):
            raise QueueLimitError("a bytes body is sent over HTTP as a base64 string")
        try:
            body = base64.b64decode(body, validate=True)
        except ValueError:
            raise QueueLimitError("a bytes body must be valid base64") from None
    return body, content_type


async def list_queues(rt: Any, request: Request) -> Response:
    registry = rt.env[REGISTRY_BINDING]
    return Response({"queues": [await registry.queue(name).metrics() for name in registry.names]})


async def queue_metrics(rt: Any, request: Request, name: str) -> Response:
    return Response(await _queue(rt, name).metrics())


async def send(rt: Any, request: Request, name: str) -> Response:
    queue = _queue(rt, name)
    payload = _object(request, {"body", "content_type", "delay_seconds"})
    if "body" not in payload:
        raise QueueLimitError("the body must have a 'body' key")
    body, content_type = _http_body(payload)
    message_id = await queue.send(
        body, content_type=content_type, delay_seconds=payload.get("delay_seconds", 0)
    )
    return Response({"id": message_id}, 202)


async def send_batch(rt: Any, request: Request, name: str) -> Response:
    queue = _queue(rt, name)
    payload = _object(request, {"messages", "delay_seconds"})
    messages = payload.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise QueueLimitError("'messages' must be a list of objects")
    converted = []
    for message in messages:
        body, content_type = _http_body(message)
        converted.append({**message, "body": body, "content_type": content_type})
    ids = await queue.send_batch(converted, delay_seconds=payload.get("delay_seconds", 0))
    return Response({"ids": ids}, 202)


def _wire(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as JSON: a json body as its value, text as a string, bytes and
    msgpack bodies as base64 of their bytes; the timestamp in milliseconds."""
    raw, content_type = message["body"], message["content_type"]
    if content_type == "json":
        body = json.loads(raw)
    elif content_type == "text":
        body = raw.decode("utf-8")
    else:
        body = base64.b64encode(raw).decode()
    wire = {k: v for k, v in message.items() if k not in ("body", "timestamp")}
    return {**wire, "body": body, "timestamp_ms": int(message["timestamp"] * 1000)}


async def peek(rt: Any, request: Request, name: str) -> Response:
    _queue(rt, name)
    try:
        limit = int(request.query.get("limit", "10"))
    except ValueError:
        raise QueueLimitError("limit must be an integer") from None
    messages = await rt.env[REGISTRY_BINDING].actor(name).peek(limit)
    return Response({"messages": [_peeked(m) for m in messages]})


def _peeked(message: dict[str, Any]) -> dict[str, Any]:
    """A peeked message as JSON: as ``_wire``, its next attempt in milliseconds (or null)."""
    wire = _wire(message)
    at = wire.pop("next_attempt_at")
    return {**wire, "next_attempt_at_ms": None if at is None else int(at * 1000)}


async def pull(rt: Any, request: Request, name: str) -> Response:
    _queue(rt, name)
    payload = _object(request, {"batch_size", "visibility_timeout_ms"}) if request.body.strip() else {}
    timeout_ms = payload.get("visibility_timeout_ms", 30_000)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)):
        raise QueueLimitError("visibility_timeout_ms must be a number")
    registry = rt.env[REGISTRY_BINDING]
    leased = await registry.actor(name).pull(payload.get("batch_size", 5), timeout_ms / 1000)
    record_pull(registry.tracing, name, leased)
    return Response({"messages": [_wire(m) for m in leased]})


async def ack(rt: Any, request: Request, name: str) -> Response:
    _queue(rt, name)
    payload = _object(request, {"acks", "retries"})
    acks, retries = payload.get("acks", []), payload.get("retries", [])
    if not isinstance(acks, list) or not all(
        isinstance(a, dict) and isinstance(a.get("lease_id"), str) for a in acks
    ):
        raise QueueLimitError("'acks' must be a list of {\"lease_id\": str}")
    if not isinstance(retries, list) or not all(
        isinstance(r, dict) and isinstance(r.get("lease_id"), str) for r in retries
    ):
        raise QueueLimitError('\'retries\' must be a list of {"lease_id": str, "delay_seconds"?: number}')
    retry_pairs = [
        [r["lease_id"], None if r.get("delay_seconds") is None else check_delay(r["delay_seconds"])]
        for r in retries
    ]
    applied = (
        await rt.env[REGISTRY_BINDING].actor(name).settle_leases([a["lease_id"] for a in acks], retry_pairs)
    )
    return Response(applied)


async def redrive(rt: Any, request: Request, name: str) -> Response:
    queue = _queue(rt, name)
    payload = _object(request, {"to", "ids"}) if request.body.strip() else {}
    return Response({"moved": await queue.redrive(to=payload.get("to"), ids=payload.get("ids"))})


async def purge(rt: Any, request: Request, name: str) -> Response:
    return Response({"purged": await _queue(rt, name).purge()})


async def pause(rt: Any, request: Request, name: str) -> Response:
    await _queue(rt, name).pause()
    return Response({"paused": True})


async def resume(rt: Any, request: Request, name: str) -> Response:
    await _queue(rt, name).resume()
    return Response({"paused": False})
