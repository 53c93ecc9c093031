"""Calls for actors of partitions another node owns: found through the lease table, sent over
the workers' channel on TCP to the owner's advertised address.

A call waits, within ``OWNER_WAIT_SECONDS``, while its partition has no serving owner (a
take-over catching up, a hand-off) or the owner it reached answers that it does not serve the
partition (this node's view of the leases was stale), then fails with
``WorkerUnavailableError``, not delivered. Either way nothing ran: retrying is safe.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..errors import NotOwnerError, WorkerUnavailableError
from ..model.host import Host
from ..model.ids import ActorId
from ..model.remote_errors import from_wire
from ..placement.client import OWNER_WAIT_SECONDS, Peers
from ..placement.wire import decode_reply
from .options import split_address

RETRY_PAUSE_SECONDS = 0.05


class ClusterPeers(Peers):
    def __init__(
        self,
        host: Host,
        node: str,
        owner_of: Callable[[bytes], str | None],
        address_of: Callable[[str], str | None],
        proof: bytes | None = None,
        dial: Callable[[str, int], Awaitable[trio.abc.Stream]] = trio.open_tcp_stream,
    ) -> None:
        hello = None if proof is None else [0, "hello", proof]
        super().__init__(host, owner_of, self._open, lambda owner: f"node {owner}", hello)
        self._node = node
        self._address_of = address_of
        self._dial = dial  # plain TCP, or TLS (channel_tls)

    async def _open(self, node: str) -> trio.abc.Stream:
        address = self._address_of(node)
        if address is None:
            raise OSError(f"node {node} has no known address")
        return await self._dial(*split_address(address))

    async def forward(self, prefix: bytes, binding: str, actor_id: ActorId, call: tuple) -> Any:
        """Find a serving owner within ``OWNER_WAIT_SECONDS`` and run ``call`` there. The
        bound covers only the search: a call that reached its owner waits for its answer
        (under the caller's own time limits), since it may be running already."""
        message = self.call_message(binding, actor_id, call)
        deadline = trio.current_time() + OWNER_WAIT_SECONDS
        while trio.current_time() < deadline:
            owner = self._owner_of(prefix)
            if owner is None or owner == self._node:
                await trio.sleep(RETRY_PAUSE_SECONDS)  # moving, or being caught up here
                continue
            connection = None
            with trio.move_on_at(deadline):
                try:
                    connection = await self.connection(owner)
                except WorkerUnavailableError:
                    await trio.sleep(RETRY_PAUSE_SECONDS)  # unreachable: the lease may move
                    continue
            if connection is None:
                break
            ok, value = await connection.request(message)
            if ok:
                return decode_reply(call, value)
            error = from_wire(value)
            if not isinstance(error, NotOwnerError):
                raise error
            await trio.sleep(RETRY_PAUSE_SECONDS)
        raise WorkerUnavailableError(
            f"actor {binding}:{actor_id.name or actor_id.hex} has no serving owner in the cluster"
            f" (its partition is moving?); waited {OWNER_WAIT_SECONDS:g} s; the call was not delivered"
        )
