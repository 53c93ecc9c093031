"""The owning half of the channel between workers: a unix socket (between a cluster's nodes,
a TCP port) on which the other workers' calls arrive, each run as an event of this worker's actor, answered when it is done (after
its writes are durable, as the output gate holds for a local caller).

A call runs in its own task with the caller's correlation id (and, when tracing is on, in a
span continuing the caller's trace). A cancel message cancels it, as if the caller had been
cancelled; a connection that closes cancels every call it carried.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any

import trio

from ..model.host import Host
from ..model.remote_errors import to_wire
from ..observability.correlation import current_correlation_id
from . import frames
from .wire import execute

log = logging.getLogger("roost.placement")

LISTEN_BACKLOG = 128

Statistics = Callable[[], dict[str, Any]]


async def serve(
    path: str,
    host: Host,
    statistics: Statistics,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer the calls of other workers on the unix socket ``path`` until cancelled."""
    with suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(LISTEN_BACKLOG)
    listener = trio.SocketListener(sock)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(answer_calls, [listener], host, statistics)
            task_status.started()
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)


async def answer_calls(
    listeners: list[trio.abc.Listener],
    host: Host,
    statistics: Statistics,
    *,
    proof: bytes | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer the calls arriving on ``listeners`` (unix or TCP) until cancelled. With
    ``proof``, a connection's first message must be ``[0, "hello", proof]``; one that
    does not send it is closed unanswered."""
    serve = partial(_serve_connection, host, statistics, proof)
    await trio.serve_listeners(serve, listeners, task_status=task_status)


async def _serve_connection(host: Host, statistics: Statistics, proof: bytes | None, stream: trio.SocketStream) -> None:
    scopes: dict[int, trio.CancelScope] = {}
    proven = proof is None
    writer = frames.FrameWriter(stream)

    async def run(call_id: int, work: Callable[[], Awaitable[Any]]) -> None:
        with trio.CancelScope() as scope:
            scopes[call_id] = scope
            try:
                reply = [call_id, True, await work()]
            except Exception as exc:
                reply = [call_id, False, to_wire(exc)]
            finally:
                del scopes[call_id]
        if not scope.cancelled_caught:
            writer.send(reply)

    async with stream, trio.open_nursery() as nursery:
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError, ValueError), _tls_refusals():
            nursery.start_soon(_write, writer, nursery.cancel_scope)
            async for message in frames.messages(stream):
                if not isinstance(message, list) or len(message) < 2:
                    log.warning("a malformed message on the channel; its connection is closed")
                    break
                call_id, kind = message[0], message[1]
                if not proven:
                    if kind == "hello" and len(message) == 3 and _proves(message[2], proof):
                        proven = True
                        continue
                    log.warning("a connection to the channel did not prove the internal token; closed")
                    break
                if kind == "cancel":
                    if call_id in scopes:
                        scopes[call_id].cancel()
                elif kind == "call":
                    nursery.start_soon(run, call_id, partial(_call, host, *message[2:]))
                elif kind == "statistics":
                    nursery.start_soon(run, call_id, partial(_statistics, statistics))
        # The caller is gone: what it asked for is cancelled, as if it had been.
        nursery.cancel_scope.cancel()


@contextmanager
def _tls_refusals() -> Iterator[None]:
    """Say why a connection failed its TLS handshake (a cluster's channel with TLS)."""
    try:
        yield
    except trio.BrokenResourceError as exc:
        if isinstance(exc.__cause__, ssl.SSLError):
            log.warning("a connection to the channel failed its TLS handshake (%s); closed", exc.__cause__)
        raise


async def _write(writer: frames.FrameWriter, connection: trio.CancelScope) -> None:
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await writer.run()
    connection.cancel()  # the caller cannot hear answers any more


async def _call(
    host: Host,
    binding: str,
    raw: bytes,
    name: str | None,
    kind: str,
    body: Any,
    correlation_id: str | None,
    traceparent: str | None,
) -> Any:
    current_correlation_id.set(correlation_id)
    if not host.tracing.enabled:
        return await execute(host, binding, raw, name, kind, body)
    with host.tracing.span(
        f"forwarded {kind} {binding}", kind="server", parent=traceparent, attributes={"roost.binding": binding}
    ):
        return await execute(host, binding, raw, name, kind, body)


async def _statistics(statistics: Statistics) -> dict[str, Any]:
    return statistics()


def _proves(given: Any, proof: bytes | None) -> bool:
    return isinstance(given, bytes) and proof is not None and hmac.compare_digest(given, proof)
