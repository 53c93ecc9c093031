"""A forwarded call, both halves: what the calling worker sends for a stub's call, how the
owner runs it on its own actor, and how the caller reads the answer.

Four kinds travel: an RPC (method and its arguments, encoded once by the caller), a fetch
(the ``Request``; the ``Response`` comes back as it is: status, headers, body), a queue
batch (a ``Transferable``: the handler's acks and retries come back with any error) and a
cron trigger's event (its cron and scheduled time).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..errors import NotOwnerError
from ..extensions import Transferable, load_object
from ..model import codec
from ..model.actor import ScheduledEvent
from ..model.host import Host
from ..model.ids import ActorId
from ..model.remote_errors import from_wire, to_wire
from ..model.request import Request, Response
from ..model.stubs import ActorStub, call_encoded


def encode_call(call: tuple) -> tuple[str, Any]:
    """(kind, body) for the ``call`` a stub describes."""
    kind = call[0]
    if kind == "rpc":
        _, method, payload = call
        return kind, [method, payload if type(payload) is bytes else codec.encode((payload, {}))]
    if kind == "fetch":
        request: Request = call[1]
        return kind, [request.method, request.path, request.query, request.headers, request.body]
    if kind == "scheduled":
        return kind, list(call[1:])
    batch: Transferable = call[1]
    return kind, list(batch.transfer_state())


def decode_reply(call: tuple, value: Any) -> Any:
    """What the stub's call returns, from the owner's answer to it; raises what it raised."""
    kind = call[0]
    if kind == "rpc":
        return codec.decode(value)
    if kind == "fetch":
        body, status, headers = value
        return Response(body, status, headers)
    if kind == "scheduled":
        return None
    outcome, error = value
    call[1].apply_transfer_outcome(outcome)
    if error is not None:
        raise from_wire(error)
    return None


async def execute(host: Host, binding: str, raw: bytes, name: str | None, kind: str, body: Any) -> Any:
    """Run a forwarded call on this worker's actor; returns the answer ``decode_reply`` reads."""
    info = host.namespaces.get(binding)
    if info is None:
        raise KeyError(f"no actor namespace bound as {binding!r} in this worker")
    if host.shards.for_prefix(info.key + raw) is None:
        # Never forwarded on: the caller's view of the owners is stale, and it retries.
        raise NotOwnerError(f"actor {binding}:{raw.hex()} is not served by this process")
    stub = ActorStub(host, info, ActorId(raw, binding, name))
    if kind == "rpc":
        method, payload = body
        return await call_encoded(stub, method, payload)
    if kind == "fetch":
        method, path, query, headers, content = body
        response = await stub.fetch(Request(method, path, query, headers, content))
        return [response.body, response.status, response.headers]
    if kind == "scheduled":
        cron, scheduled_time = body
        await stub.scheduled(ScheduledEvent(cron, scheduled_time))
        return None
    if kind == "queue":
        factory, state = body
        batch = _factory(factory)(state)
        try:
            await stub.queue(batch)
        except Exception as exc:
            return [batch.transfer_outcome(), to_wire(exc)]
        return [batch.transfer_outcome(), None]
    raise ValueError(f"unknown kind of forwarded call {kind!r}")


@cache
def _factory(path: str) -> Any:
    return load_object(path)
