"""The calling half of the channel between workers: one connection to each other worker,
opened on first use (and again once it broke), carrying many calls at once.

A call waits a bounded time for its owner to be reachable (a worker being restarted), then
fails with ``WorkerUnavailableError``: it was not delivered. A call whose connection breaks
while it runs fails with ``ActorResetError``: its outcome is unknown, as when an actor is
reset. A cancelled call (a time limit, a caller that gave up) is cancelled on the owner too.
A worker that stops without dying (SIGSTOP) holds its callers until their own time limits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from contextlib import suppress
from typing import Any

import trio

from ..errors import ActorResetError, WorkerUnavailableError
from ..model.host import Host
from ..model.ids import ActorId
from ..model.remote_errors import from_wire
from ..observability.correlation import current_correlation_id
from . import frames
from .wire import decode_reply, encode_call

OWNER_WAIT_SECONDS = 5.0
RECONNECT_PAUSE_SECONDS = 0.05


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: tuple[bool, Any] | None = None


class _Connection:
    def __init__(self, peer: str, stream: trio.abc.Stream) -> None:
        self.peer = peer  # "worker 1", "node b": for messages
        self._stream = stream
        self._writer = frames.FrameWriter(stream)
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self.closed = False

    def send_first(self, message: list[Any]) -> None:
        """Queue ``message`` before any call (it has no answer)."""
        self._writer.send(message)

    async def request(self, message: list[Any]) -> tuple[bool, Any]:
        """Send ``message`` and wait for its answer: (ok, value)."""
        if self.closed:
            raise WorkerUnavailableError(f"the connection to {self.peer} closed; the call was not sent")
        self._next_id += 1
        call_id = self._next_id
        pending = self._pending[call_id] = _Pending()
        try:
            self._writer.send([call_id, *message])
            await pending.done.wait()
        except trio.Cancelled:
            if not self.closed and pending.reply is None:
                self._writer.send([call_id, "cancel"])
            raise
        finally:
            del self._pending[call_id]
        if pending.reply is None:
            raise ActorResetError(
                f"{self.peer} stopped while the call was in progress; its outcome is unknown"
            )
        return pending.reply

    async def run(self) -> None:
        """Send the requests and read the answers until the connection breaks."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write)
                await self._read()
                nursery.cancel_scope.cancel()
        finally:
            await self.close()

    async def _read(self) -> None:
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError, ValueError):
            async for call_id, ok, value in frames.messages(self._stream):
                pending = self._pending.get(call_id)
                if pending is not None:
                    pending.reply = (ok, value)
                    pending.done.set()

    async def _write(self) -> None:
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self._writer.run()
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for pending in self._pending.values():
            pending.done.set()
        with trio.CancelScope(shield=True):
            await self._stream.aclose()


Connect = Callable[[Any], Awaitable[trio.abc.Stream]]


def _worker(owner: Any) -> str:
    return f"worker {owner}"


class Peers:
    """This process's connections to the other owners (workers, or a cluster's nodes);
    the host's ``Forwarder``. ``owner_of`` names the owner of an actor's prefix, ``connect``
    opens a stream to an owner, ``describe`` names one in messages."""

    def __init__(
        self,
        host: Host,
        owner_of: Callable[[bytes], Any],
        connect: Connect,
        describe: Callable[[Any], str] = _worker,
        hello: list[Any] | None = None,
    ) -> None:
        self._host = host
        self._hello = hello  # the first message of every connection (a cluster's proof)
        self._owner_of = owner_of
        self._connect = connect
        self._describe = describe
        self._connections: dict[Hashable, _Connection] = {}
        self._connecting: dict[Hashable, trio.Lock] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the connections' reader tasks until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def forward(self, prefix: bytes, binding: str, actor_id: ActorId, call: tuple) -> Any:
        """Run ``call`` (as a stub describes it) on the owner of ``prefix``."""
        message = self.call_message(binding, actor_id, call)
        ok, value = await self.request(self._owner_of(prefix), message)
        if not ok:
            raise from_wire(value)
        return decode_reply(call, value)

    def call_message(self, binding: str, actor_id: ActorId, call: tuple) -> list[Any]:
        kind, body = encode_call(call)
        return [
            "call",
            binding,
            actor_id.raw,
            actor_id.name,
            kind,
            body,
            current_correlation_id.get(),
            self._host.tracing.current_traceparent(),
        ]

    async def request(self, owner: Any, message: list[Any]) -> tuple[bool, Any]:
        """Send ``message`` to ``owner`` and return its answer (ok, value)."""
        connection = await self.connection(owner)
        return await connection.request(message)

    async def connection(self, worker: Any) -> _Connection:
        """The open connection to ``worker``, opened (waiting a bounded time) if need be."""
        found = self._connections.get(worker)
        if found is not None and not found.closed:
            return found
        deadline = trio.current_time() + OWNER_WAIT_SECONDS
        with trio.move_on_at(deadline):
            async with self._connecting.setdefault(worker, trio.Lock()):
                found = self._connections.get(worker)
                if found is not None and not found.closed:
                    return found
                while True:
                    try:
                        stream = await self._connect(worker)
                        break
                    except OSError:
                        await trio.sleep(RECONNECT_PAUSE_SECONDS)
                connection = self._connections[worker] = _Connection(self._describe(worker), stream)
                if self._hello is not None:
                    connection.send_first(self._hello)
                assert self._nursery is not None, "Peers.run is not running"
                self._nursery.start_soon(connection.run)
                return connection
        raise WorkerUnavailableError(
            f"{self._describe(worker)}, the owner of this actor, is not running (restarting?);"
            f" waited {OWNER_WAIT_SECONDS:g} s; the call was not delivered"
        )
