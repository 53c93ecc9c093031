"""``POST /webhooks/{provider}``: verify the signature, enqueue the event once, answer at once.

Each provider is configured in ``roost.toml`` (``[[webhooks]]``: provider, queue, and the
name of the var holding the signing secret). A provider that redelivers an event (same
event id) gets 200 again, and the event is enqueued once: the send runs through
``execute_idempotent`` keyed by provider and event id. The answer comes once the event is
durable in the queue, which is all a provider needs to stop retrying.
"""

from __future__ import annotations

import json
from typing import Any

from runtime import Request, Response

from ..idempotency import execute_idempotent
from ..names import REGISTRY_BINDING
from .signature import verify_stripe_signature

SIGNATURE_HEADER = "stripe-signature"
DEDUP_TTL_SECONDS = 7 * 86_400  # longer than providers keep redelivering


def routes() -> list[tuple[list[str], str, Any]]:
    return [(["POST"], "/webhooks/<provider>", receive)]


async def receive(rt: Any, request: Request, provider: str) -> Response:
    hook = rt.config.webhooks.get(provider)
    if hook is None:
        return Response({"error": f"no webhook provider {provider!r}", "type": "NotFound"}, 404)
    secret = rt.env[hook.secret]
    if not verify_stripe_signature(request.body, request.headers.get(SIGNATURE_HEADER, ""), secret):
        return Response({"error": "missing or invalid signature", "type": "Unauthorized"}, 401)
    try:
        event = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        return Response({"error": f"malformed JSON body: {exc}", "type": "BadRequest"}, 400)
    event_id = event.get("id") if isinstance(event, dict) else None
    if not isinstance(event_id, str) or not event_id:
        return Response({"error": "the event has no string 'id'", "type": "BadRequest"}, 400)
    queue = rt.env[REGISTRY_BINDING].queue(hook.queue)

    async def enqueue() -> str:
        return await queue.send(event)

    await execute_idempotent(rt.env, f"webhook:{provider}:{event_id}", enqueue, DEDUP_TTL_SECONDS)
    return Response({"received": True})
