"""A node of a Roost cluster: ``open_cluster_runtime`` opens the runtime of ``roost serve
--cluster``, with the node's LMDB environment as the local copy of the partitions it owns,
every commit appended to the replicated log first, ownership by leases, and calls for other
nodes' actors forwarded to them over TCP. docs/cluster.md is the design.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any

import trio

from .. import system
from ..config import Config
from ..durability.env import Environment
from ..durability.committer import Committer
from ..durability.partitions import DEFAULT_PARTITIONS, partition_of, read_layout
from ..durability.shards import Shard
from ..errors import ActorError, ConfigError
from ..model.host import Host
from ..placement.server import Statistics, answer_calls
from .channel_tls import TlsDialer, TlsListener
from .forwarding import ClusterPeers
from .jetstream import STREAM, ClusterError, JetStream, open_jetstream
from .options import ClusterOptions, shown, split_address
from .ownership import Ownership
from .replication import Replicator
from .shards import LOG_KEY, NODE_KEY, ClusterShards
from .snapshot_store import SnapshotStore
from .snapshots import Snapshots

log = logging.getLogger("roost.cluster")

STATISTICS_TIMEOUT_SECONDS = 2.0


class ClusterPlacement:
    """What the runtime asks of its placement (as ``runtime.placement.Placement`` between
    workers), for a cluster's node."""

    metric_label = "node"
    # Partitions move between nodes while they run: every node arms the cron triggers,
    # through whichever node serves each one.
    partitions_move = True

    def __init__(self, jetstream: JetStream, options: ClusterOptions, proof: bytes | None = None) -> None:
        self.jetstream = jetstream
        self.options = options
        self._proof = proof  # what a node shows another's channel: from the internal token
        self.node = options.node_name
        self.shards: ClusterShards | None = None
        self.ownership: Ownership | None = None
        self._peers: ClusterPeers | None = None
        self._replicator: Replicator | None = None
        self.snapshots: Snapshots | None = None
        tls = options.tls  # contexts made now: a bad file stops the node before it joins
        self._tls_server = None if tls is None else tls.server_context()
        self._dial = trio.open_tcp_stream if tls is None else TlsDialer(tls.client_context()).open

    async def open_shards(self, data_dir: str, *, map_size_bytes: int, max_map_size_bytes: int) -> ClusterShards:
        def open_it() -> ClusterShards:
            if read_layout(data_dir) is not None:
                raise ConfigError(
                    f"{data_dir!r} is laid out for --workers; a cluster node needs a data directory of its own"
                )
            env = Environment(data_dir, map_size_bytes=map_size_bytes, max_map_size_bytes=max_map_size_bytes)
            try:
                _claim(env, self.node, self.jetstream.log_incarnation)
            except BaseException:
                env.close()
                raise
            return ClusterShards(Shard(0, env, Committer(env)), DEFAULT_PARTITIONS)

        self.shards = await trio.to_thread.run_sync(open_it)
        return self.shards

    def attach(self, host: Host, rescan_alarms: Any) -> None:
        shards = self.shards
        assert shards is not None, "open_shards() first"
        store = SnapshotStore(self.jetstream, self.options.nats_timeout_seconds)
        self.snapshots = Snapshots(store, self.jetstream, shards, self.options.snapshot_every)
        self.ownership = Ownership(
            self.jetstream,
            self.node,
            self.options.advertise,
            shards,
            host,
            rescan_alarms,
            self.snapshots,
            self.options.timing,
        )
        self._replicator = Replicator(self.jetstream, self.node, shards, self.ownership.owned, self.ownership.give_up)
        shards.shard.committer.replicator = self._replicator

    def forwarder(self, host: Host) -> ClusterPeers:
        self._peers = ClusterPeers(host, self.node, self._owner_of_prefix, self._address_of, self._proof, self._dial)
        return self._peers

    def _owner_of_prefix(self, prefix: bytes) -> str | None:
        assert self.ownership is not None
        return self.ownership.owner_of(partition_of(prefix, DEFAULT_PARTITIONS))

    def _address_of(self, node: str) -> str | None:
        assert self.ownership is not None
        return self.ownership.membership.live_nodes().get(node)

    async def serve(
        self, host: Host, statistics: Statistics, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Join the cluster, answer other nodes' calls, and own partitions, until cancelled."""
        assert self._peers is not None and self.ownership is not None
        listen_host, port = split_address(self.options.listen or self.options.advertise)
        try:
            listeners = await trio.open_tcp_listeners(port, host=listen_host)
        except OSError as exc:
            raise ConfigError(
                f"node {self.node}: cannot listen for other nodes on {listen_host}:{port}: {exc}"
            ) from None
        if self._tls_server is not None:
            listeners = [TlsListener(listener, self._tls_server) for listener in listeners]
        async with trio.open_nursery() as nursery:
            await nursery.start(self._peers.run)
            answering = partial(
                answer_calls, listeners, host, self.statistics_with_cluster(statistics), proof=self._proof
            )
            await nursery.start(answering)
            try:
                await self.ownership.membership.join()
            except ClusterError as exc:
                raise ConfigError(f"node {self.node} cannot join the cluster: {exc}") from None
            await nursery.start(self.ownership.run)
            log.info(
                "node %s joined the cluster (NATS %s; peers reach it at %s). NATS must run JetStream"
                " with sync_interval: always, or an acknowledged write can be lost",
                self.node,
                shown(self.options.nats),
                self.options.advertise,
                extra={"event": "cluster.joined", "node": self.node},
            )
            task_status.started()

    def statistics_with_cluster(self, statistics: Statistics) -> Statistics:
        def both() -> dict[str, Any]:
            return {**statistics(), **self.cluster_statistics()}

        return both

    def cluster_statistics(self) -> dict[str, Any]:
        ownership, shards, replicator, snapshots = self.ownership, self.shards, self._replicator, self.snapshots
        assert ownership is not None and shards is not None and replicator is not None and snapshots is not None
        return {
            "cluster_partitions_served": len(shards.served),
            "cluster_takeovers": ownership.statistics["takeovers"],
            "cluster_hand_offs": ownership.statistics["hand_offs"],
            "cluster_partitions_lost": ownership.statistics["lost"],
            "cluster_records_replayed": ownership.statistics["records_replayed"],
            "cluster_log_appends": self.jetstream.statistics.get("appends", 0),
            "cluster_append_rounds": replicator.statistics.rounds,
            "cluster_append_seconds_total": replicator.statistics.seconds_total,
            "cluster_snapshots_taken": snapshots.statistics["snapshots_taken"],
            "cluster_snapshots_loaded": snapshots.statistics["snapshots_loaded"],
            "cluster_snapshot_bytes": snapshots.statistics["snapshot_bytes"],
        }

    def status(self) -> dict[str, Any]:
        """This node's view: live nodes, the owner of each partition, what it serves."""
        ownership, shards = self.ownership, self.shards
        assert ownership is not None and shards is not None
        return {
            "node": self.node,
            "nodes": ownership.membership.live_nodes(),
            "serving": shards.served,
            "owners": {str(p): ownership.owner_of(p) for p in range(shards.partitions)},
        }

    async def statistics(self, own: dict[str, Any]) -> dict[str, dict[str, Any] | None]:
        """This node's statistics only: each node answers ``/metrics`` for itself."""
        return {self.node: {**own, **self.cluster_statistics()}}

    async def release_all(self) -> None:
        if self.ownership is not None:
            with trio.move_on_after(self.options.nats_timeout_seconds * 2), suppress(ActorError):
                await self.ownership.release_all()


def channel_proof(config: Config) -> bytes | None:
    """What the nodes show each other on their channel: an HMAC of ``[http] internal_token``
    (None when no token is set: the channel is then open, as the internal routes are)."""
    name = config.http.internal_token
    if name is None:
        return None
    return hmac.new(config.vars[name].encode(), b"roost cluster channel", hashlib.sha256).digest()


def _claim(env: Environment, node: str, incarnation: str) -> None:
    """Mark the environment as this node's copy of this log; refuse one of a single-node
    Roost (its data is in no log), of another node, or of an earlier stream of the name."""
    found = env.get_meta(NODE_KEY)
    if found is None:
        if env.holds_actor_data():
            raise ConfigError(
                f"{env.path!r} holds the data of a single-node Roost, which is in no cluster's log;"
                " give the node an empty data directory"
            )
    elif found.decode() != node:
        raise ConfigError(f"{env.path!r} is the data directory of node {found.decode()!r}, not {node!r}")
    log_found = env.get_meta(LOG_KEY)
    if log_found is not None and log_found.decode() != incarnation:
        raise ConfigError(
            f"{env.path!r} is a copy of an earlier stream {STREAM} (deleted and created again since),"
            " whose positions mean nothing in the new one; give the node an empty data directory"
        )
    env.apply_batch([], meta={NODE_KEY: node.encode(), LOG_KEY: incarnation.encode()})


@asynccontextmanager
async def open_cluster_runtime(
    config: Config, options: ClusterOptions, **runtime_options: Any
) -> AsyncIterator[system.Runtime]:
    """The runtime of one cluster node; leaves its leases free when it closes."""
    options.check()
    async with _joined_jetstream(options) as jetstream:
        placement = ClusterPlacement(jetstream, options, channel_proof(config))
        async with system.open_worker_runtime(config, placement, **runtime_options) as rt:
            yield rt
        await placement.release_all()


@asynccontextmanager
async def _joined_jetstream(options: ClusterOptions) -> AsyncIterator[JetStream]:
    """The connection to NATS; what stops a node from starting is a ``ConfigError``."""
    connecting = open_jetstream(
        list(options.nats),
        timeout_seconds=options.nats_timeout_seconds,
        replicas=options.replicas,
        name=options.node_name,
    )
    try:
        jetstream = await connecting.__aenter__()
    except ClusterError as exc:
        where = shown(options.nats)
        raise ConfigError(f"node {options.node_name} cannot reach the cluster at {where}: {exc}") from None
    try:
        yield jetstream
    except BaseException as exc:
        if not await connecting.__aexit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        await connecting.__aexit__(None, None, None)
