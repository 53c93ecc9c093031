"""Which nodes are alive: this node's key in the KV bucket ``roost_nodes``, claimed at start
and rewritten every renewal, and the other nodes' keys as this node's watch sees them.

A node is live to an observer while its key got a new revision within the lease. The key
holds the node's advertised address, its pid, a beat counter and the incarnation of its
process, which tells this process's own writes (a retry whose first answer was lost) from
another process's claiming the same name.
"""

from __future__ import annotations

import os
import time
import uuid

import msgpack
import trio

from .jetstream import NODES, ClusterError, Conflict, JetStream, NatsUnavailable
from .options import Timing

# How long a starting node watches a key of its name for signs of a live holder.
NAME_CHECK_RENEWALS = 2.5


class NodeNameInUse(ClusterError):
    """Another live node holds this node's name."""


class Membership:
    def __init__(self, jetstream: JetStream, node: str, advertise: str, timing: Timing) -> None:
        self.jetstream = jetstream
        self.node = node
        self.advertise = advertise
        self.timing = timing
        self._revision = 0
        self._beats = 0
        self._incarnation = uuid.uuid4().hex
        # Since when this node's own writes to the buckets have been succeeding (None: failing).
        self.writes_ok_since: float | None = None
        self._live_since: dict[str, float] = {}

    async def join(self) -> None:
        """Claim this node's name; ``NodeNameInUse`` if a live node has it."""
        found = await self.jetstream.kv_get(NODES, self.node)
        if found is None or found.value is None:
            self._revision = await self.jetstream.kv_create(NODES, self.node, self._value())
        else:
            # A holder that is alive rewrites its key every renewal: watch for that.
            await trio.sleep(self.timing.renew_seconds * NAME_CHECK_RENEWALS)
            latest = await self.jetstream.kv_get(NODES, self.node)
            revision = 0 if latest is None else latest.revision
            if revision != found.revision:
                holder = unpack_value(latest.value) if latest is not None and latest.value else {}
                raise NodeNameInUse(
                    f"node name {self.node!r} is held by a live node (at {holder.get('advertise', '?')});"
                    " give this node another --node-name"
                )
            self._revision = await self.jetstream.kv_update(NODES, self.node, self._value(), revision=revision)
        self.writes_ok_since = time.monotonic()

    async def beat(self) -> None:
        """Rewrite this node's key; ``NodeNameInUse`` if another process took the name."""
        try:
            self._revision = await self.jetstream.kv_update(NODES, self.node, self._value(), revision=self._revision)
        except NatsUnavailable:
            self.writes_ok_since = None
            return
        except Conflict:
            # Our own write may have landed with its answer lost (a retry then conflicts).
            found = await self.jetstream.kv_get(NODES, self.node)
            holder = unpack_value(found.value) if found is not None and found.value else {}
            if holder.get("incarnation") != self._incarnation:
                raise NodeNameInUse(
                    f"node name {self.node!r} was taken over by another process ({holder or 'deleted'});"
                    " this node stops"
                ) from None
            self._revision = found.revision
        if self.writes_ok_since is None:
            self.writes_ok_since = time.monotonic()

    def _value(self) -> bytes:
        self._beats += 1
        return pack_value(
            {"advertise": self.advertise, "pid": os.getpid(), "incarnation": self._incarnation, "beat": self._beats}
        )

    def live_nodes(self) -> dict[str, str]:
        """Live nodes (this one included) and their advertised addresses."""
        now = time.monotonic()
        live = {self.node: self.advertise}
        for name, entry in self.jetstream.entries(NODES).items():
            if entry.value is not None and now - entry.seen_at < self.timing.lease_seconds:
                live[name] = unpack_value(entry.value).get("advertise", "")
        for name in live:
            self._live_since.setdefault(name, now)
        for name in list(self._live_since):
            if name not in live:
                del self._live_since[name]
        return live

    def live_for(self, node: str, now: float) -> float:
        """How long ``node`` has been live without a break, as of the last ``live_nodes()``."""
        return now - self._live_since.get(node, now)


def pack_value(value: dict) -> bytes:
    """A KV value of the cluster's buckets: a msgpack map."""
    return msgpack.packb(value, use_bin_type=True)


def unpack_value(value: bytes) -> dict:
    """A KV value as a dict; an unreadable one as an empty dict."""
    try:
        found = msgpack.unpackb(value, raw=False)
    except (ValueError, msgpack.UnpackException):
        return {}
    return found if isinstance(found, dict) else {}
