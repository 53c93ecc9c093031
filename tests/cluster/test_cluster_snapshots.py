"""Snapshots on a running cluster: three nodes that snapshot each partition every 10 records
trim their logs under load; a node killed with ``kill -9`` mid-load, whose data directory is
then lost, comes back empty and catches up from the snapshots; a node paused past its lease
while it snapshots and trims neither applies nor acknowledges what it lost; every
acknowledged increment is counted, through every node."""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
from cluster_nodes import (
    LEASE_SECONDS,
    Client,
    Load,
    RoostCluster,
    RoostNode,
    assert_calm_again,
    check_counts,
    values,
    write_app,
)
from log_checker import check_log

NODES = ["a", "b", "c"]
SNAPSHOT_EVERY = 10
WAIT_SECONDS = 30.0


@pytest.fixture
def roost(jetstream_servers: list[str], tmp_path: Path):
    write_app(tmp_path, "jobs")
    cluster = RoostCluster(tmp_path, NODES, jetstream_servers, ("--snapshot-every", str(SNAPSHOT_EVERY)))
    try:
        cluster.wait_settled(every_node_serves=True)
        yield cluster
    finally:
        cluster.stop()


def metric(node: RoostNode, name: str) -> float:
    client = Client(node.url)
    try:
        status, body = client.call("GET", "/metrics")
    finally:
        client.close()
    assert status == 200, body[:300]
    found = re.search(rf'^{name}{{node="{node.name}"}} (\S+)$', body.decode(), re.M)
    assert found is not None, f"{name} not in {node.name}'s /metrics"
    return float(found[1])


def total(roost: RoostCluster, name: str) -> float:
    return sum(metric(node, name) for node in roost.live())


def wait_for(what: str, predicate, roost: RoostCluster) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {WAIT_SECONDS} s\n{roost.logs()}"
        time.sleep(0.3)


def test_a_node_back_with_an_empty_data_directory_catches_up_from_the_snapshots(roost: RoostCluster, nats_cluster):
    names = [f"snap{n}" for n in range(60)]
    calm = Load(roost, names, connections=6, per_connection=200).run()
    assert calm.unknown == Counter() and calm.not_delivered == Counter(), f"{calm.summary()}\n{roost.logs()}"
    wait_for("snapshots taken", lambda: total(roost, "roost_cluster_snapshots_taken_total") >= 10, roost)
    report = check_log(nats_cluster.urls, trimmed=True)
    assert report.violations == [], "\n".join(report.violations[:30])
    appended = total(roost, "roost_cluster_log_appends_total")
    assert 0 < sum(report.records.values()) < appended, (report.summary(), appended)

    victim = roost["c"]
    load = Load(roost, names, connections=6, per_connection=150).start()
    assert load.halfway.wait(60), load.result.summary()
    victim.kill_9()
    shutil.rmtree(victim.data_dir)  # its disk lost with it
    result = load.join()
    roost.wait_settled()
    victim.start()
    roost.wait_settled(every_node_serves=True)
    assert metric(victim, "roost_cluster_snapshots_loaded_total") > 0, roost.logs()

    acked = calm.acked + result.acked
    for node in roost.live():
        found = values(node.url, names)
        wrong = check_counts({n: found[n] - calm.acked[n] for n in names}, result)
        assert wrong == [], f"read through node {node.name}: {wrong}; {result.summary()}\n{roost.logs()}"
    before = assert_calm_again(roost, names)
    assert all(before[n] >= acked[n] for n in names)
    report = check_log(nats_cluster.urls, trimmed=True)
    assert report.violations == [], "\n".join(report.violations[:30])


def test_a_node_paused_past_its_lease_while_it_trims_loses_nothing_acknowledged(roost: RoostCluster, nats_cluster):
    names = [f"trim{n}" for n in range(60)]
    paused = roost["c"]
    load = Load(roost, names, connections=6, per_connection=1000).start()
    wait_for("snapshots under load", lambda: metric(paused, "roost_cluster_snapshots_taken_total") >= 3, roost)
    paused.pause()  # with snapshots of its own taken, and more due
    assert not load.done.is_set(), "the load ended before the pause"
    time.sleep(2 * LEASE_SECONDS)
    paused.resume()
    result = load.join()
    roost.wait_settled(every_node_serves=True)
    found = {node.name: values(node.url, names) for node in roost.live()}
    assert found["a"] == found["b"] == found["c"], found
    wrong = check_counts(found["a"], result)
    assert wrong == [], f"{wrong}; {result.summary()}\n{roost.logs()}"
    assert "given up" in paused.process.log(), paused.logs()
    report = check_log(nats_cluster.urls, trimmed=True)
    assert report.violations == [], "\n".join(report.violations[:30])
