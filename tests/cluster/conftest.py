"""Fixtures of the NATS layer's tests: one local 3-node nats-server cluster per session.

Starting a cluster takes a few seconds, deleting the stream and the two buckets a few
milliseconds, so every test gets the same cluster with a clean state (``jetstream_servers``):
every server running and not paused, the stream ``ROOST``, the buckets ``roost_leases`` and
``roost_nodes`` and the object store ``roost_snapshots`` deleted (``open_jetstream`` creates
them again). A test that kills, pauses or
restarts a server leaves the repair to that fixture. Not collected without nats-py, skipped
without a nats-server binary (a Roost without the cluster extra).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from runtime.cluster.local_nats import Cluster, nats_server_binary, open_cluster

try:
    import nats
    import nats.js.errors
except ImportError:  # Roost without the cluster extra: nothing here can run
    collect_ignore_glob = ["test_*.py"]

HEALTHY_TIMEOUT_SECONDS = 30.0


@pytest.fixture(scope="session")
def nats_cluster():
    try:
        nats_server_binary()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    with open_cluster(3) as cluster:
        yield cluster


def _heal(cluster: Cluster) -> None:
    for node in cluster.nodes:
        cluster.resume(node)
        if not node.running:
            cluster.restart(node)
    cluster.wait_until_healthy(HEALTHY_TIMEOUT_SECONDS)


async def _delete_all(urls: list[str]) -> None:
    nc = await nats.connect(servers=urls, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)
        deadline = time.monotonic() + HEALTHY_TIMEOUT_SECONDS
        for name in ("ROOST", "KV_roost_leases", "KV_roost_nodes", "OBJ_roost_snapshots", "ROOST_SMALL"):
            while True:
                try:
                    await js.delete_stream(name)
                    break
                except nats.js.errors.NotFoundError:
                    break
                except (nats.errors.Error, nats.js.errors.Error):
                    # just after a restart the meta group may not answer yet
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.1)
    finally:
        await nc.close()


@pytest.fixture
def jetstream_servers(nats_cluster) -> list[str]:
    """The cluster's client URLs, with every server up and no Roost stream or bucket."""
    _heal(nats_cluster)
    asyncio.run(_delete_all(nats_cluster.urls))
    return nats_cluster.all_urls
