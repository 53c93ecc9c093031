"""Addressing actors: ``Namespace`` and ``ActorStub``.

A stub call copies its arguments and result through msgpack (like structured clone), waits
on the calling actor's output gate, and delivers the event to the target instance in the
caller's own task, or, when another worker process owns the actor's partition, hands the
call to the host's ``forwarder`` (``runtime.placement``), which runs it there. Creating a
stub does no I/O; the instance is built on its first event.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import trio

from ..errors import CallTimeoutError, MethodNotFoundError
from . import codec
from .actor import RESERVED_METHODS, Actor, ScheduledEvent
from .host import Host, NamespaceInfo
from .ids import ActorId
from .instance import current_instance
from .remote_errors import arrived
from .request import Request, Response, as_response


class Namespace:
    """The actors of one binding (``env.COUNTERS``, ``rt.namespace("COUNTERS")``)."""

    __slots__ = ("_host", "_info")

    def __init__(self, host: Host, info: NamespaceInfo) -> None:
        self._host = host
        self._info = info

    @property
    def binding(self) -> str:
        return self._info.binding

    def id_from_name(self, name: str) -> ActorId:
        """The id for ``name``: the same name gives the same id, across restarts too."""
        return self._info.scheme.from_name(name)

    def new_unique_id(self) -> ActorId:
        return self._info.scheme.unique()

    def id_from_string(self, hex64: str) -> ActorId:
        """Parse ``str(id)``; ``ValueError`` if not 64 hex chars or not from this namespace."""
        return self._info.scheme.from_string(hex64)

    def get(self, actor_id: ActorId) -> ActorStub:
        """A stub for ``actor_id``; ``ValueError`` if another namespace made it."""
        if not isinstance(actor_id, ActorId):
            raise TypeError(f"Namespace.get takes an ActorId, not {type(actor_id).__name__}")
        self._info.scheme.check(actor_id.raw)
        return ActorStub(self._host, self._info, actor_id)

    def get_by_name(self, name: str) -> ActorStub:
        return ActorStub(self._host, self._info, self._info.scheme.from_name(name))

    def __repr__(self) -> str:
        return f"<Namespace {self._info.binding} of {self._info.cls.__qualname__}>"


class ActorStub:
    """Calls one actor: ``await stub.method(*args, **kwargs)``, ``await stub.fetch(...)``.

    Calls made through one stub reach the actor in the order they were made. Arguments and
    results are copied (``DataCloneError`` in the caller for a value that cannot be); errors
    raised by the actor arrive as described in ``runtime.remote_errors``. A call that finds
    the actor idle and has nothing to wait for completes without yielding to trio.
    ``with_options(timeout=...)`` gives a stub whose calls have a time limit.
    """

    __slots__ = ("_host", "_info", "id", "_timeout")

    def __init__(
        self, host: Host, info: NamespaceInfo, actor_id: ActorId, timeout: float | None = None
    ) -> None:
        self._host = host
        self._info = info
        self.id = actor_id
        self._timeout = timeout

    def with_options(self, *, timeout: float | None = None) -> ActorStub:
        """A stub for the same actor whose calls give up after ``timeout`` seconds (None: no
        limit, the default): the event is cancelled at its next await, as if the caller had
        been, and the caller gets ``CallTimeoutError`` (a ``TimeoutError``). Writes the event
        made before stay. ``ValueError`` for a timeout that is not a positive number."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        return ActorStub(self._host, self._info, self.id, timeout)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        # Private and reserved names are refused by the actor, as a remote call would be.
        return partial(self._call, name)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        # Plain scalars need no copy: they go over as the tuple itself; the rest is encoded.
        payload: tuple | bytes
        if not kwargs and all(map(codec.is_plain_scalar, args)):
            payload = args
        else:
            payload = codec.encode((args, kwargs))
        return await self._deliver(partial(_invoke, method, payload), method, ("rpc", method, payload))

    async def fetch(
        self,
        request_or_path: Request | str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | str = b"",
    ) -> Response:
        """Send an HTTP request to the actor's ``fetch``; returns its ``Response``."""
        if isinstance(request_or_path, Request):
            request = _copy_request(request_or_path)
        else:
            request = _request_from_path(request_or_path, method, headers, body)
        return await self._deliver(partial(_invoke_fetch, request), "fetch", ("fetch", request))

    async def queue(self, batch: Any) -> None:
        """Deliver a queue batch to the actor's ``queue(batch)`` handler, through its gates.

        For the built-in queues: ``batch`` is handed over as it is (its messages carry fresh
        copies of their bodies), so the handler's acks and retries are seen by the caller.
        Raises what the handler raised (as any event's error arrives)."""
        label = f"queue consume {getattr(batch, 'queue', self._info.binding)}"
        await self._deliver(partial(_invoke_queue, batch), "queue", ("queue", batch), label=label)

    async def scheduled(self, event: ScheduledEvent) -> None:
        """Deliver a cron trigger's event to the actor's ``scheduled(event)`` handler, through
        its gates (``runtime.triggers``). Raises what the handler raised."""
        call = ("scheduled", event.cron, event.scheduled_time)
        label = f"scheduled {self._info.binding} {event.cron}"
        await self._deliver(partial(_invoke_scheduled, event), "scheduled", call, label=label)

    async def _deliver(
        self, handler: Any, what: str, call: tuple, *, label: str = "", observed: bool = False
    ) -> Any:
        """Run ``handler`` as an event of the actor; ``call`` says the same for a forwarder."""
        if not observed and (self._timeout is not None or self._host.tracing.enabled):
            return await self._deliver_observed(handler, what, call, label)
        caller = current_instance.get()
        if caller is not None:
            await caller.output_gate()
        host = self._host
        if host.forwarder is not None:
            prefix = self._info.key + self.id.raw
            if host.shards.for_prefix(prefix) is None:
                return await host.forwarder.forward(prefix, self._info.binding, self.id, call)
        try:
            instance = host.instance_for(self._info, self.id)
            host.statistics.events += 1
            return await instance.run(handler, max_inbox=host.max_inbox)
        except Exception as exc:
            raise arrived(exc) from None

    async def _deliver_observed(self, handler: Any, what: str, call: tuple, label: str) -> Any:
        """``_deliver`` in a span (named ``label``, or ``rpc BINDING.method``), under the
        stub's time limit."""
        binding = self._info.binding
        name = self.id.name or self.id.hex
        with self._host.tracing.span(
            label or f"rpc {binding}.{what}",
            kind="client",
            attributes={"roost.binding": binding, "roost.actor": name},
        ):
            if self._timeout is None:
                return await self._deliver(handler, what, call, observed=True)
            with trio.move_on_after(self._timeout):
                return await self._deliver(handler, what, call, observed=True)
            raise CallTimeoutError(f"{what} on actor {binding}:{name} took more than {self._timeout} s")

    def __repr__(self) -> str:
        return f"<ActorStub {self._info.binding}:{self.id.hex}>"


_method_cache: dict[tuple[type, str], Any] = {}


def rpc_method(cls: type[Actor], name: str) -> Any:
    """The function behind an RPC-callable method, or ``MethodNotFoundError``."""
    key = (cls, name)
    found = _method_cache.get(key)
    if found is not None:
        return found
    function = getattr(cls, name, None) if isinstance(name, str) else None
    if (
        function is None
        or name.startswith("_")
        or name in RESERVED_METHODS
        or not inspect.iscoroutinefunction(function)
    ):
        raise MethodNotFoundError(f"{cls.__qualname__} has no RPC method {name!r}")
    _method_cache[key] = function
    return function


async def _invoke(method: str, payload: tuple | bytes, actor: Actor) -> Any:
    """Run an RPC method; returns the copy of its result the caller receives."""
    return codec.copy(await _run_method(method, payload, actor))


async def _invoke_encoded(method: str, payload: bytes, actor: Actor) -> bytes:
    """Run an RPC method; returns its result encoded, for a caller in another process."""
    return codec.encode(await _run_method(method, payload, actor))


async def _run_method(method: str, payload: tuple | bytes, actor: Actor) -> Any:
    function = rpc_method(type(actor), method)
    if type(payload) is tuple:
        return await function(actor, *payload)
    args, kwargs = codec.decode(payload)
    return await function(actor, *args, **kwargs)


async def call_encoded(stub: ActorStub, method: str, payload: bytes) -> bytes:
    """Call ``method`` with encoded ``(args, kwargs)`` on an actor this process owns; returns
    the encoded result (the owner's half of a forwarded call)."""
    return await stub._deliver(partial(_invoke_encoded, method, payload), method, ("rpc", method, payload))


async def _invoke_queue(batch: Any, actor: Actor) -> None:
    handler = getattr(type(actor), "queue", None)
    if handler is None or not inspect.iscoroutinefunction(handler):
        raise MethodNotFoundError(f"{type(actor).__qualname__} has no async queue(batch) handler")
    await handler(actor, batch)


async def _invoke_scheduled(event: ScheduledEvent, actor: Actor) -> None:
    handler = getattr(type(actor), "scheduled", None)
    if handler is None or not inspect.iscoroutinefunction(handler):
        raise MethodNotFoundError(f"{type(actor).__qualname__} has no async scheduled(event) handler")
    await handler(actor, event)


async def _invoke_fetch(request: Request, actor: Actor) -> Response:
    response = as_response(await actor.fetch(request))
    return Response(response.body, response.status, dict(response.headers))


def _copy_request(request: Request) -> Request:
    return Request(request.method, request.path, dict(request.query), dict(request.headers), request.body)


def _request_from_path(path: str, method: str, headers: dict[str, str] | None, body: bytes | str) -> Request:
    parts = urlsplit(path)
    return Request(
        method=method.upper(),
        path=parts.path or "/",
        query=dict(parse_qsl(parts.query, keep_blank_values=True)),
        headers={k.lower(): v for k, v in (headers or {}).items()},
        body=body.encode() if isinstance(body, str) else bytes(body),
    )
