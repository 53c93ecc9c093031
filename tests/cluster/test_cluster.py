"""Roost's cluster mode end to end: three real ``roost serve --cluster`` nodes on a local
3-server NATS cluster, under concurrent load through every node, while a node is killed,
paused past its lease, or a NATS server (the stream's leader) is killed.

Each test ends with the log checker: in every partition's log the epochs only go up, each
starting with its fence, and no record of an older epoch follows a newer epoch's fence.
The counts promised (docs/cluster.md, "Failure cases"): every acknowledged increment is in
the final value, and nothing beyond the calls whose outcome was unknown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from cluster_nodes import (
    LEASE_SECONDS,
    WEBHOOK_SECRET,
    Client,
    Load,
    LoadResult,
    RoostCluster,
    assert_calm_again,
    check_counts,
    free_port,
    home,
    outcome_of,
    partition_of_actor,
    rpc,
    values,
    write_app,
)
from log_checker import check_log
from serve_process import ROOST

NODES = ["a", "b", "c"]
# How long after a node's death the survivors serve all 64 partitions: the lease, the
# observers' own lease of silence, the take-overs (fence and catch-up), and slack.
TAKEOVER_TIMEOUT_SECONDS = 2 * LEASE_SECONDS + 10


def _queue_name() -> str:
    """A queue whose consumer actor (slot 0) is homed on b, not on a (where it is sent to)."""
    for n in range(1000):
        name = f"jobs{n}"
        if home(partition_of_actor(f"__CONSUMER__{name}", f"{name}#0"), NODES) == "b":
            return name
    raise AssertionError("no queue name found")


QUEUE = _queue_name()


@pytest.fixture
def nats_urls(jetstream_servers) -> list[str]:
    return jetstream_servers


@pytest.fixture
def roost(nats_urls: list[str], tmp_path: Path):
    write_app(tmp_path, QUEUE)
    cluster = RoostCluster(tmp_path, NODES, nats_urls)
    try:
        cluster.wait_settled(every_node_serves=True)
        yield cluster
    finally:
        cluster.stop()


def assert_log_fenced(nats_cluster, roost: RoostCluster) -> None:
    report = check_log(nats_cluster.urls)
    assert sum(report.records.values()) > 0, report.summary()
    assert report.violations == [], f"{report.summary()}:\n" + "\n".join(report.violations[:30]) + f"\n{roost.logs()}"


def assert_counts(roost: RoostCluster, url: str, names: list[str], result: LoadResult) -> dict[str, int]:
    found = values(url, names)
    wrong = check_counts(found, result)
    failures = "\n".join(map(str, result.failures[:20]))
    assert wrong == [], f"read through {url}: {wrong}; {result.summary()}\nnot acknowledged:\n{failures}\n{roost.logs()}"
    return found


def combine(*results: LoadResult) -> LoadResult:
    total = LoadResult()
    for r in results:
        total.acked += r.acked
        total.unknown += r.unknown
        total.not_delivered += r.not_delivered
        total.answers += r.answers
        total.acked_at += r.acked_at
    return total


def test_every_acknowledged_increment_counts_once_through_every_node(roost: RoostCluster, nats_cluster) -> None:
    names = [f"calm{n}" for n in range(30)]
    result = Load(roost, names, connections=6, per_connection=100).run()
    assert sum(result.acked.values()) == 600 and result.unknown == Counter(), f"{result.summary()}\n{roost.logs()}"
    for node in roost.live():
        assert values(node.url, names) == dict(result.acked), node.name
    assert_log_fenced(nats_cluster, roost)


def test_each_node_answers_metrics_for_itself_with_a_node_label(roost: RoostCluster) -> None:
    rpc(roost["a"].url, "COUNTERS", "metrics0", "increment")
    served = 0
    for node in roost.live():
        client = Client(node.url)
        try:
            status, body = client.call("GET", "/metrics")
        finally:
            client.close()
        text = body.decode()
        assert status == 200 and f'roost_node_up{{node="{node.name}"}} 1' in text, text[:500]
        found = re.search(rf'^roost_cluster_partitions_served{{node="{node.name}"}} (\d+)$', text, re.M)
        assert found is not None, text[:2000]
        served += int(found[1])
        assert re.search(rf'^roost_cluster_log_appends_total{{node="{node.name}"}} \d+$', text, re.M)
    assert served == 64


def test_an_idempotent_payment_runs_once_whichever_nodes_it_is_asked_through(roost: RoostCluster) -> None:
    """The toolkit on a cluster: the payment's idempotency record, its job status and the
    counter it charges live in partitions spread over the nodes; asked through every node,
    and many times at once, the charge happens once, and every node reads its status."""
    keys = [f"order-{n}" for n in range(12)]
    answers: list[object] = []

    def ask(node_url: str, key: str) -> None:
        answers.append(rpc(node_url, "PAYMENTS", f"shop-{key}", "charge", key))

    threads = [
        threading.Thread(target=ask, args=(node.url, key)) for key in keys for node in roost.live() for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == len(keys) * 6
    assert all(answer["result"] == 1 for answer in answers), answers
    assert sum(not answer["cached"] for answer in answers) == len(keys), answers
    assert values(roost["c"].url, [f"charged-{key}" for key in keys]) == {f"charged-{key}": 1 for key in keys}
    for node in roost.live():
        for key in keys:
            status = rpc(node.url, "PAYMENTS", "anyone", "status", key)
            assert (status["status"], status["progress"], status["result"]) == ("completed", 100, 1), status


def test_scheduled_jobs_asked_through_every_node_run_once_when_due(roost: RoostCluster) -> None:
    tags = [f"job-{node.name}-{n}" for node in roost.live() for n in range(3)]
    for tag in tags:
        node = roost[tag.split("-")[1]]
        rpc(node.url, "PAYMENTS", f"scheduler-of-{tag}", "schedule", tag, QUEUE, 1.0)
    seen = _wait_recorded(roost, roost["b"].url, tags)
    assert {tag: seen[tag] for tag in tags} == {tag: 1 for tag in tags}


def test_kill_9_of_a_node_mid_load_moves_its_partitions_and_loses_nothing(roost: RoostCluster, nats_cluster) -> None:
    names = [f"kill{n}" for n in range(30)]
    victim = roost["c"]
    load = Load(roost, names, connections=6, per_connection=150).start()
    assert load.halfway.wait(60), load.result.summary()
    victim.kill_9()
    killed = time.monotonic()
    result = load.join()
    roost.wait_settled(timeout=max(1.0, TAKEOVER_TIMEOUT_SECONDS - (time.monotonic() - killed)))
    print(f"node c killed: the survivors served all 64 partitions {time.monotonic() - killed:.1f} s later; {result.summary()}")
    for node in roost.live():
        assert_counts(roost, node.url, names, result)

    victim.start()  # same name, same data directory, same advertised address
    roost.wait_settled(every_node_serves=True)
    assert victim.status()["serving"], roost.logs()
    before = {node.name: assert_counts(roost, node.url, names, result) for node in roost.live()}
    assert len({json.dumps(v, sort_keys=True) for v in before.values()}) == 1, before
    # After the rejoin the cluster is calm again: each increment now counts exactly, on the
    # rejoined node's caught-up copy of the partitions it took back too.
    assert_calm_again(roost, names)
    assert_log_fenced(nats_cluster, roost)


def test_a_node_killed_and_restarted_within_its_lease_takes_its_partitions_back(roost: RoostCluster, nats_cluster) -> None:
    """Its leases still name it when it comes back: it takes them again under new epochs
    (fencing its own earlier life) and catches up from its own data directory."""
    names = [f"back{n}" for n in range(30)]
    victim = roost["c"]
    load = Load(roost, names, connections=6, per_connection=150).start()
    assert load.halfway.wait(60), load.result.summary()
    victim.kill_9()
    victim.start()
    result = load.join()
    roost.wait_settled(every_node_serves=True)
    for node in roost.live():
        assert_counts(roost, node.url, names, result)
    assert_calm_again(roost, names)
    assert_log_fenced(nats_cluster, roost)


def test_a_node_paused_past_its_lease_applies_and_acknowledges_nothing_it_lost(roost: RoostCluster, nats_cluster) -> None:
    names = [f"pause{n}" for n in range(30)]
    paused = roost["c"]
    load = Load(roost, names, connections=6, per_connection=200).start()
    assert load.halfway.wait(60), load.result.summary()
    paused.pause()
    time.sleep(2 * LEASE_SECONDS)
    paused.resume()
    result = load.join()
    roost.wait_settled(every_node_serves=True)
    assert_log_fenced(nats_cluster, roost)
    # The resumed node answers for the actors that moved away from it as the others do.
    found = {node.name: values(node.url, names) for node in roost.live()}
    assert found["c"] == found["a"] == found["b"], found
    for node in roost.live():
        assert_counts(roost, node.url, names, result)
    # The resumed node lost its partitions while paused: its log says so.
    assert "given up" in paused.process.log(), paused.logs()


def test_a_forwarded_call_longer_than_the_owner_wait_is_answered(roost: RoostCluster, nats_cluster) -> None:
    """A call that runs 6 s on its owner, sent through another node (no fault at all): the
    forwarding node's wait for a serving owner (5 s) must not cut a call that was delivered
    and ran, least of all answer that it was not delivered."""
    name = next(f"slow{n}" for n in range(1000) if home(partition_of_actor("COUNTERS", f"slow{n}"), NODES) == "a")
    answers = []
    for node in ("a", "b"):  # on its owner first, then forwarded by b
        client = Client(roost[node].url)
        try:
            status, body = client.call("POST", f"/rpc/COUNTERS/{name}/increment_slowly", {"args": [6]})
        finally:
            client.close()
        answers.append((node, status, body.decode(errors="replace"), values(roost["a"].url, [name])[name]))
    assert [(node, status, found) for node, status, _, found in answers] == [("a", 200, 1), ("b", 200, 2)], answers
    assert_log_fenced(nats_cluster, roost)


def test_the_stream_leader_of_nats_killed_under_load(roost: RoostCluster, nats_cluster) -> None:
    names = [f"nats{n}" for n in range(30)]
    load = Load(roost, names, connections=6, per_connection=250).start()
    assert load.halfway.wait(60), load.result.summary()
    leader = nats_cluster.stream_leader("ROOST")
    assert leader is not None
    server = nats_cluster.node(leader)
    nats_cluster.kill(server)
    killed = time.monotonic()
    during = load.join()
    after_kill = sum(1 for t in during.acked_at if t > killed)
    # Writes go on once the stream has a new leader (if the load ended first, a new one shows it).
    later = Load(roost, names, connections=6, per_connection=50).run()
    assert after_kill + sum(later.acked.values()) > 0, f"{during.summary()}; {later.summary()}\n{roost.logs()}"
    roost.wait_settled(timeout=60)
    total = combine(during, later)
    for node in roost.live():
        assert_counts(roost, node.url, names, total)

    nats_cluster.restart(server)
    nats_cluster.wait_for_meta_leader()
    before = values(roost["a"].url, names)
    final = Load(roost, names, connections=6, per_connection=50).run()
    assert final.unknown == Counter(), f"{final.summary()}\n{roost.logs()}"
    for node in roost.live():
        assert values(node.url, names) == {n: before[n] + final.acked[n] for n in names}, node.name
    print(f"stream leader {leader} killed: {after_kill} acks after the kill in the first load; {during.summary()}")
    assert_log_fenced(nats_cluster, roost)


def _send(url: str, count: int, start: int, sent: list[str], unknown: list[int], halfway: threading.Event | None) -> None:
    client = Client(url)
    for n in range(start, start + count):
        try:
            status, body = client.call("POST", f"/queues/{QUEUE}/messages", {"body": {"n": n}})
        except OSError:
            unknown.append(n)
            client.close()
            client = Client(url)
            continue
        if status == 202:
            sent.append(json.loads(body)["id"])
        elif outcome_of(status, body) == "unknown":
            unknown.append(n)
        if halfway is not None and n - start >= count // 2:
            halfway.set()
    client.close()


def _wait_recorded(roost: RoostCluster, url: str, ids: list[str], timeout: float = 40.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    seen: dict[str, int] = {}
    while time.monotonic() < deadline:
        seen = rpc(url, "LEDGER", "ledger", "seen")
        if all(i in seen for i in ids):
            return seen
        time.sleep(0.3)
    missing = [i for i in ids if i not in seen]
    raise AssertionError(f"{len(missing)} of {len(ids)} acknowledged messages never delivered, e.g. {missing[:5]}\n{roost.logs()}")


def test_a_queue_delivers_every_acknowledged_message_at_least_once(roost: RoostCluster, nats_cluster) -> None:
    consumer_partition = partition_of_actor(f"__CONSUMER__{QUEUE}", f"{QUEUE}#0")
    victim = roost[roost.owner_of(consumer_partition)]
    assert victim.name == "b"
    sender, reader = roost["a"], roost["c"]
    sent: list[str] = []
    unknown: list[int] = []
    _send(sender.url, 100, 0, sent, unknown, None)
    assert len(sent) == 100 and unknown == [], (len(sent), unknown)
    seen = _wait_recorded(roost, reader.url, sent)
    # On a calm cluster each message is delivered once (the promise is at least once).
    assert {i: seen[i] for i in sent} == {i: 1 for i in sent}

    halfway = threading.Event()
    sending = threading.Thread(target=_send, args=(sender.url, 300, 100, sent, unknown, halfway), daemon=True)
    sending.start()
    assert halfway.wait(60)
    victim.kill_9()
    sending.join(120)
    assert not sending.is_alive()
    roost.wait_settled(timeout=TAKEOVER_TIMEOUT_SECONDS)
    seen = _wait_recorded(roost, reader.url, sent)
    twice = {i: n for i, n in seen.items() if n > 1}
    assert len(seen) <= len(sent) + len(unknown), (len(seen), len(sent), len(unknown))
    print(f"queue {QUEUE}: {len(sent)} acknowledged, {len(unknown)} unknown, {len(twice)} delivered more than once")
    assert_log_fenced(nats_cluster, roost)


def _stripe_signature(payload: bytes, secret: str) -> str:
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), b"%d." % timestamp + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def test_a_webhook_event_received_through_every_node_is_enqueued_once(roost: RoostCluster) -> None:
    """Stripe redelivers: each event arrives through each of the three nodes, and its id
    makes it one queue message, delivered once to the consumer on another node."""
    tags = [f"wh{n}" for n in range(20)]
    for n, tag in enumerate(tags):
        payload = json.dumps({"id": f"evt_{n}", "type": "charge.succeeded", "tag": tag}).encode()
        for node in roost.live():
            client = Client(node.url)
            try:
                signed = {"stripe-signature": _stripe_signature(payload, WEBHOOK_SECRET)}
                status, body = client.call("POST", "/webhooks/stripe", payload, signed)
            finally:
                client.close()
            assert (status, json.loads(body)) == (200, {"received": True}), (node.name, body)
    forged = json.dumps({"id": "evt_forged", "tag": "forged"}).encode()
    client = Client(roost["b"].url)
    try:
        status, _ = client.call("POST", "/webhooks/stripe", forged, {"stripe-signature": "t=1,v1=00"})
    finally:
        client.close()
    assert status == 401
    seen = _wait_recorded(roost, roost["c"].url, tags)
    assert {tag: seen[tag] for tag in tags} == dict.fromkeys(tags, 1)
    assert "forged" not in seen


def test_the_cron_trigger_runs_each_slot_once_whichever_node_serves_it(roost: RoostCluster) -> None:
    """Every node arms the trigger; its actor has one owner, so each minute runs once."""
    deadline = time.monotonic() + 75  # the next minute's slot, and slack
    while not rpc(roost["a"].url, "TICKER", "ticker", "slots"):
        assert time.monotonic() < deadline, f"no slot ran within 75 s\n{roost.logs()}"
        time.sleep(0.5)
    time.sleep(2)  # a second run of the slot would land by now
    for node in roost.live():
        slots = rpc(node.url, "TICKER", "ticker", "slots")
        assert slots and set(slots.values()) == {1}, (node.name, slots)


def test_a_second_process_with_a_live_nodes_name_is_refused_and_the_node_keeps_serving(
    roost: RoostCluster, tmp_path: Path
) -> None:
    holder = roost["a"]
    done = subprocess.run(
        [
            ROOST, "serve", "--port", "0", "--config", "roost.toml",
            "--data-dir", str(tmp_path / "data-second-a"),
            "--cluster", ",".join(holder.nats_urls),
            "--node-name", "a",
            "--advertise", f"127.0.0.1:{free_port()}",
            "--lease-seconds", f"{LEASE_SECONDS:g}",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "held by a live node" in done.stderr, done.stderr
    assert holder.alive and holder.status()["serving"]
    roost.wait_settled(every_node_serves=True)


def test_a_node_stopped_with_sigterm_mid_load_hands_its_partitions_over_and_loses_nothing(
    roost: RoostCluster, nats_cluster
) -> None:
    """A rolling restart's step: the node drains, lets its leases go (so the others need not
    wait out the lease), exits 0, and comes back to take its home partitions again."""
    names = [f"term{n}" for n in range(30)]
    leaving = roost["c"]
    load = Load(roost, names, connections=6, per_connection=200).start()
    assert load.halfway.wait(60), load.result.summary()
    assert leaving.stop() == 0, leaving.logs()
    # Released at shutdown, not left to expire: within a fraction of the lease (3 s), no
    # lease names the node any more.
    deadline = time.monotonic() + LEASE_SECONDS / 2
    while "c" in roost["a"].status()["owners"].values():
        assert time.monotonic() < deadline, f"leases still name c: {roost['a'].status()['owners']}"
        time.sleep(0.05)
    result = load.join()
    roost.wait_settled(timeout=TAKEOVER_TIMEOUT_SECONDS)
    for node in roost.live():
        assert_counts(roost, node.url, names, result)
    leaving.start()
    roost.wait_settled(every_node_serves=True)
    assert_calm_again(roost, names)
    assert_log_fenced(nats_cluster, roost)
