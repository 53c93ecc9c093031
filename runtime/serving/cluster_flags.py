"""The flags of ``roost serve --cluster`` and the ``[cluster]`` table they override: both
become one ``ClusterOptions`` (docs/cluster.md, "Running a cluster")."""

from __future__ import annotations

import argparse
from typing import Any

from ..cluster.channel_tls import ChannelTls
from ..cluster.options import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_RENEW_SECONDS,
    DEFAULT_REPLICAS,
    DEFAULT_SNAPSHOT_EVERY,
    ClusterOptions,
    Timing,
)
from ..config.model import ClusterTable

_TLS_PARTS = (("cert", "this node's certificate"), ("key", "its private key"), ("ca", "the CA that signs the nodes'"))


def add_cluster_flags(serve: argparse.ArgumentParser) -> None:
    cluster = serve.add_argument_group("cluster (docs/cluster.md; each flag wins over its [cluster] key)")
    cluster.add_argument("--cluster", metavar="URLS", help="join a cluster: NATS servers, nats://HOST:PORT[,...]")
    cluster.add_argument("--node-name", help="this node's name, unique in the cluster")
    cluster.add_argument("--advertise", metavar="HOST:PORT", help="where the other nodes reach this one")
    cluster.add_argument(
        "--cluster-listen", metavar="HOST:PORT", help="where to listen for them (default: --advertise)"
    )
    cluster.add_argument(
        "--lease-seconds", type=float,
        help=f"a partition whose lease is not renewed for this long is taken over (default: {DEFAULT_LEASE_SECONDS:g})",
    )  # fmt: skip
    for part, what in _TLS_PARTS:
        cluster.add_argument(
            f"--cluster-tls-{part}", metavar="PEM", help=f"mutual TLS between nodes: {what} (all three, or none)"
        )
    cluster.add_argument(
        "--replicas", type=int,
        help=f"replicas of the log and buckets in NATS; 3 survive one NATS server lost (default: {DEFAULT_REPLICAS})",
    )  # fmt: skip
    cluster.add_argument(
        "--snapshot-every", metavar="RECORDS", type=int,
        help=f"snapshot a partition and trim its log after this many records (default: {DEFAULT_SNAPSHOT_EVERY})",
    )  # fmt: skip


def cluster_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, table: ClusterTable | None
) -> ClusterOptions | None:
    """The node's options from the flags over ``[cluster]``; None without either's NATS URLs.
    Bad values exit 2 through ``parser.error``, or raise ``ConfigError``."""
    table = table or ClusterTable()

    def given(flag: str, key: str | None = None) -> Any:
        value = getattr(args, flag)
        return value if value is not None else getattr(table, key or flag)

    urls = tuple(u.strip() for u in args.cluster.split(",") if u.strip()) if args.cluster else table.nats
    node_flags = [f for f in ("node_name", "advertise", "cluster_listen") if getattr(args, f)]
    if urls is None:
        if node_flags:
            parser.error(f"--{node_flags[0].replace('_', '-')} needs --cluster (or [cluster] nats)")
        return None
    node_name, advertise = given("node_name"), given("advertise")
    if not node_name or not advertise:
        parser.error("--cluster needs --node-name and --advertise (or [cluster] node_name and advertise)")
    tls_files = tuple(given(f"cluster_tls_{part}", f"tls_{part}") for part, _ in _TLS_PARTS)
    if any(tls_files) and not all(tls_files):
        parser.error("TLS between nodes needs all of --cluster-tls-cert, --cluster-tls-key and --cluster-tls-ca")
    lease = given("lease_seconds")
    lease = DEFAULT_LEASE_SECONDS if lease is None else float(lease)
    replicas, snapshot_every = given("replicas"), given("snapshot_every")
    options = ClusterOptions(
        nats=urls,
        node_name=node_name,
        advertise=advertise,
        listen=given("cluster_listen", "listen"),
        timing=Timing(lease_seconds=lease, renew_seconds=min(DEFAULT_RENEW_SECONDS, lease / 4)),
        replicas=DEFAULT_REPLICAS if replicas is None else replicas,
        snapshot_every=DEFAULT_SNAPSHOT_EVERY if snapshot_every is None else snapshot_every,
        tls=ChannelTls(*tls_files) if all(tls_files) else None,
    )
    options.check()
    return options
