"""``python -m benchmarks.cluster.http_bench``: HTTP durable increments on one ``roost serve``
against a 3-node ``roost serve --cluster`` on this machine, and what a commit's append costs.

1. one node: ``roost serve`` (one process, LMDB fsync), wrk over 1,000 actors (the HTTP
   benchmark's script and count check, benchmarks/wrk.py);
2. three nodes and three nats-server (runtime.cluster.local_nats) on loopback, once settled
   (64 partitions served, each once, on its home node): one wrk per node at the same time, the
   connections split over them, each over its own third of the 1,000 actors, rates summed (as
   a load balancer in front of the nodes would spread clients: every node parses HTTP and
   forwards the 2/3 of its calls another node owns); then one wrk against one node, where that
   node parses all the HTTP;
3. the append a commit adds: the nodes' /metrics (appends, commits, LMDB commit latency), and
   appends of 2 KiB records through runtime.cluster.jetstream beside LMDB synced commits;
4. CPU per request of the nodes and of the nats-servers (/proc/PID/stat), and what they
   imply for separate machines.

Prints the JSON and a table, writes benchmarks/results/cluster-http.json. About a minute;
``--quick`` about 30 s. Needs wrk (``bash benchmarks/install_wrk.sh``), nats-py and the
nats-server binary beside the interpreter: the repo's .venv has both (``.[test,otel,cluster]``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import lmdb
import trio

from runtime.cluster.jetstream import open_jetstream
from runtime.cluster.local_nats import Cluster, open_cluster

from .. import wrk
from ..figures import BenchmarkResult
from ..http_wrk import add_run_figures
from ..latency import summarize
from ..machine import machine_info
from ..report import build_document, render_table, summary, write_document
from ..roost_server import RoostServer
from .cluster_nodes_bench import (
    ClusterNode,
    Cpu,
    children_cpu_seconds,
    commit_deltas,
    group_cpu_seconds,
    scrape,
    scrape_all,
    wait_settled,
)

RESULTS = Path(__file__).resolve().parents[1] / "results" / "cluster-http.json"
NODE_NAMES = ("a", "b", "c")
RECORD_BYTES = 2048
PARALLEL_PARTITIONS = 16
# Subjects no node writes to (partitions are 0-63): the direct appends never fence a node.
FIRST_BENCH_PARTITION = 100
LMDB_PUTS_PER_COMMIT = 16  # about what a 2 KiB record carries (16 writes of ~100 B)
LMDB_KEYS = 1000
LMDB_VALUE = b"v" * 100


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """Sizes and durations of one run; ``quick()`` is the smoke run."""

    seconds: float = 10.0  # each wrk run
    connections: int = 64
    actors: int = 1000
    append_seconds: float = 3.0  # each direct append measurement
    lmdb_seconds: float = 2.0

    @classmethod
    def quick(cls) -> HttpSettings:
        return cls(seconds=3.0, append_seconds=1.0, lmdb_seconds=0.5)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- 1. one node --------------------------------------------------------------------------


def measure_single(directory: Path, settings: HttpSettings) -> tuple[BenchmarkResult, dict[str, Any]]:
    result = BenchmarkResult(
        "single",
        f"1 node: roost serve (LMDB fsync), wrk {settings.connections} connections, {settings.actors:,} actors",
    )
    server = RoostServer(directory / "single", 1)
    pid = server.process.process.pid
    try:
        before = scrape(server.counters.port), group_cpu_seconds(pid), children_cpu_seconds(), _load()
        run = wrk.run_increments(
            server.counters, actors=settings.actors, connections=settings.connections, seconds=settings.seconds
        )
        after = scrape(server.counters.port), group_cpu_seconds(pid), children_cpu_seconds(), _load()
    finally:
        exit_code = server.stop()
    result.check(exit_code == 0, f"roost serve exited {exit_code} after SIGTERM")
    add_run_figures(result, "", "", run)
    cpu = Cpu({"single": after[1] - before[1]}, {}, after[2] - before[2])
    commits = commit_deltas(before[0], after[0])
    facts = {"requests": run.requests, "rate": run.requests_per_second, "cpu": cpu, "commits": commits}
    _add_cpu_and_commit_figures(result, facts)
    result.details["cpu_us_per_request"] = cpu.per_request_us(run.requests)
    result.details["commits"] = commits
    result.details["load_average"] = {"before": before[3], "after": after[3]}
    return result, facts


# --- 2. three nodes -----------------------------------------------------------------------


def _actor_sets(actors: int, parts: int) -> list[int]:
    """``actors`` split over ``parts`` wrk runs as evenly as can be."""
    return [actors // parts + (i < actors % parts) for i in range(parts)]


def _drive_spread(nodes: list[ClusterNode], settings: HttpSettings) -> tuple[wrk.WrkRun, list[wrk.WrkRun]]:
    """One wrk per node at once, each with its share of the connections and its own actors
    (``ac0``.., ``bc0``..: no two wrk runs contend for one actor), each set read back through
    its own node; and the runs merged into one, the count checked over the whole."""
    connections = _actor_sets(settings.connections, len(nodes))
    actors = _actor_sets(settings.actors, len(nodes))
    prefix = nodes[0].counters.increment_path.partition("{name}")[0]
    suffix = nodes[0].counters.increment_path.partition("{name}")[2]
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        futures = [
            pool.submit(
                wrk.drive, node.port, prefix + node.name, suffix, actors=n, connections=c, seconds=settings.seconds
            )
            for node, c, n in zip(nodes, connections, actors)
        ]
        runs = [future.result() for future in futures]
    for node, run, n in zip(nodes, runs, actors):
        try:
            run.counted = wrk.read_back(node.counters, [f"{node.name}c{i}" for i in range(n)])
        except (OSError, ValueError) as exc:
            run.problems.append(f"node {node.name}'s counters could not be read back: {exc}")
    statuses: dict[int, int] = {}
    for run in runs:
        for status, count in run.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    requests = sum(run.requests for run in runs)
    merged = wrk.WrkRun(
        connections=sum(run.connections for run in runs),
        # the mean length, so that requests / seconds is the sum of the runs' rates
        seconds=requests / sum(run.requests_per_second for run in runs),
        requests=requests,
        statuses=statuses,
        errors={key: sum(run.errors[key] for run in runs) for key in runs[0].errors},
        # percentiles cannot be merged: the highest of the runs'
        latency_ms={key: max(run.latency_ms[key] for run in runs) for key in ("p50", "p99", "max")}
        | {"mean": sum(run.latency_ms["mean"] * run.requests for run in runs) / max(requests, 1)},
        summary_non_2xx=sum(run.summary_non_2xx for run in runs),
        counted=None if any(run.counted is None for run in runs) else sum(run.counted or 0 for run in runs),
        problems=[f"wrk on node {node.name}: {p}" for node, run in zip(nodes, runs) for p in run.problems],
    )
    for node, run in zip(nodes, runs):
        if run.count_ok is False:
            merged.problems.append(
                f"node {node.name}'s counters sum to {run.counted}, but {run.acknowledged} increments"
                f" were answered 2xx and at most {run.in_doubt} more were in doubt"
            )
    return merged, runs


def _cluster_cpu(nodes: list[ClusterNode], cluster: Cluster) -> _Reading:
    return (
        {node.name: node.cpu_seconds() for node in nodes},
        {server.name: server.cpu_seconds() for server in cluster.nodes},
        children_cpu_seconds(),
    )


_Reading = tuple[dict[str, float], dict[str, float], float]  # nodes, nats-servers, wrk


def _cpu_between(before: _Reading, after: _Reading) -> Cpu:
    return Cpu(
        {name: after[0][name] - before[0][name] for name in before[0]},
        {name: after[1][name] - before[1][name] for name in before[1]},
        after[2] - before[2],
    )


def measure_cluster(
    directory: Path, settings: HttpSettings, cluster: Cluster
) -> tuple[BenchmarkResult, dict[str, Any], dict[str, Any] | None]:
    result = BenchmarkResult(
        "cluster",
        f"3 nodes (--cluster, NATS R3 sync always), one wrk per node, {settings.connections} connections in all,"
        f" {settings.actors:,} actors",
    )
    nodes = [ClusterNode(directory / f"node-{name}", name, cluster.urls) for name in NODE_NAMES]
    one_node: dict[str, Any] | None = None
    try:
        for node in nodes:
            node.wait_healthy()
        settle_seconds, statuses = wait_settled(nodes)
        result.details["settle_seconds"] = round(settle_seconds, 2)
        result.details["served"] = {s["node"]: len(s["serving"]) for s in statuses}
        load_before = _load()
        cpu_before, metrics_before = _cluster_cpu(nodes, cluster), scrape_all(nodes)
        merged, runs = _drive_spread(nodes, settings)
        cpu_after, metrics_after = _cluster_cpu(nodes, cluster), scrape_all(nodes)
        load_after = _load()
        one_node = _measure_one_node(nodes[0], settings, cluster, nodes)
    finally:
        exit_codes = {node.name: node.stop() for node in nodes}
    for name, code in exit_codes.items():
        result.check(code == 0, f"node {name} exited {code} after SIGTERM")
    add_run_figures(result, "", "3 wrk: ", merged)
    result.figures[1:3] = [
        replace(figure, label=figure.label + " (highest of 3)") for figure in result.figures[1:3]
    ]
    cpu = _cpu_between(cpu_before, cpu_after)
    commits = commit_deltas(metrics_before, metrics_after)
    facts = {"requests": merged.requests, "rate": merged.requests_per_second, "cpu": cpu, "commits": commits}
    _add_cpu_and_commit_figures(result, facts)
    result.details["per_node_wrk"] = {node.name: run.as_json() for node, run in zip(nodes, runs)}
    result.details["cpu_us_per_request"] = cpu.per_request_us(merged.requests)
    result.details["commits"] = commits
    result.details["load_average"] = {"before": load_before, "after": load_after}
    return result, facts, one_node


def _measure_one_node(
    node: ClusterNode, settings: HttpSettings, cluster: Cluster, nodes: list[ClusterNode]
) -> dict[str, Any]:
    """wrk against node ``node`` only: 2/3 of its requests are forwarded to their owners."""
    before, metrics_before = _cluster_cpu(nodes, cluster), scrape_all(nodes)
    run = wrk.run_increments(
        node.counters, actors=settings.actors, connections=settings.connections, seconds=settings.seconds
    )
    after, metrics_after = _cluster_cpu(nodes, cluster), scrape_all(nodes)
    cpu = _cpu_between(before, after)
    return {"run": run, "cpu": cpu, "commits": commit_deltas(metrics_before, metrics_after), "load": _load()}


def one_node_result(found: dict[str, Any] | None, settings: HttpSettings) -> BenchmarkResult:
    result = BenchmarkResult(
        "cluster-one-wrk",
        f"3 nodes, one wrk against node a only, {settings.connections} connections, {settings.actors:,} actors",
    )
    run = None if found is None else found["run"]
    add_run_figures(result, "", "", run)
    if found is not None:
        facts = {
            "requests": run.requests,
            "rate": run.requests_per_second,
            "cpu": found["cpu"],
            "commits": found["commits"],
        }
        _add_cpu_and_commit_figures(result, facts)
        result.details["cpu_us_per_request"] = found["cpu"].per_request_us(run.requests)
        result.details["commits"] = found["commits"]
        result.details["load_average_after"] = found["load"]
    return result


def _add_cpu_and_commit_figures(result: BenchmarkResult, facts: dict[str, Any]) -> None:
    cpu: Cpu = facts["cpu"]
    per = cpu.per_request_us(facts["requests"])
    commits = facts["commits"]
    result.add("cpu_nodes_us", "  roost CPU per request (all nodes)", per["nodes_total"], "µs")
    if cpu.nats:
        result.add("cpu_nats_us", "  nats-server CPU per request (all 3)", per["nats_total"], "µs")
    result.add("cpu_wrk_us", "  wrk CPU per request", per["wrk"], "µs")
    n = commits["commits"]
    rate = n / (facts["requests"] / facts["rate"]) if n else None
    result.add("commits_per_second", "  group commits/s (all nodes)", rate, "commits/s")
    result.add("requests_per_commit", "  actors per group commit", commits["actors"] / n if n else None, "actors")
    if commits["log_appends"]:
        appends = commits["log_appends"] / n
        result.add("appends_per_commit", "  log appends per group commit (partitions)", appends, "appends")
    mean_ms = commits["commit_seconds_sum"] / n * 1000 if n else None
    result.add("lmdb_commit_mean_ms", "  LMDB commit mean (roost_commit_seconds)", mean_ms, "ms")


# --- 3. the append, directly --------------------------------------------------------------


async def _append_loops(urls: list[str], seconds: float) -> dict[str, Any]:
    """Sequential appends to one subject, then rounds of 16 at once (one ``append_all``, as
    a node's group commit does); each expects the subject's last sequence."""
    payload = os.urandom(RECORD_BYTES)
    run = uuid.uuid4().hex[:8]
    out: dict[str, Any] = {}
    async with open_jetstream(urls, timeout_seconds=2.0, replicas=3, name="http-bench") as js:
        for label, width in (("sequential", 1), ("parallel", PARALLEL_PARTITIONS)):
            partitions = [FIRST_BENCH_PARTITION + (0 if width == 1 else 1 + i) for i in range(width)]
            last = {p: await js.last_sequence(p) for p in partitions}
            durations: list[float] = []
            cpu_start = time.process_time()
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                n = len(durations)
                appends = [(p, payload, last[p], f"bench:{run}:{p}:{n}") for p in partitions]
                t = time.perf_counter()
                outcomes = await js.append_all(appends)
                durations.append(time.perf_counter() - t)
                for p, outcome in zip(partitions, outcomes):
                    if not isinstance(outcome, int):
                        raise RuntimeError(f"append to partition {p} failed: {outcome!r}")
                    last[p] = outcome
            elapsed = time.perf_counter() - started
            out[label] = {
                "rounds": len(durations),
                "appends_per_second": len(durations) * width / elapsed,
                "latency": summarize(durations),
                "client_cpu_us_per_append": (time.process_time() - cpu_start) * 1e6 / (len(durations) * width),
            }
    return out


def measure_appends(cluster: Cluster, settings: HttpSettings) -> tuple[BenchmarkResult, dict[str, Any]]:
    result = BenchmarkResult(
        "append", f"what a commit adds: {RECORD_BYTES // 1024} KiB appends (expected last sequence) vs LMDB"
    )
    nats_before = cluster.cpu_seconds()
    found = trio.run(_append_loops, cluster.urls, settings.append_seconds)
    nats_seconds = cluster.cpu_seconds() - nats_before
    total_appends = found["sequential"]["rounds"] + found["parallel"]["rounds"] * PARALLEL_PARTITIONS
    for name, row in found.items():
        width = 1 if name == "sequential" else PARALLEL_PARTITIONS
        what = "1 partition, one at a time" if width == 1 else f"{width} partitions at once (one append_all)"
        result.add(f"{name}.rate", f"append, {what}", row["appends_per_second"], "appends/s")
        result.add(f"{name}.p50", "  round p50", row["latency"].p50_ms, "ms")
        result.add(f"{name}.p99", "  round p99", row["latency"].p99_ms, "ms")
        client = row["client_cpu_us_per_append"]
        result.add(f"{name}.client_cpu", "  client CPU per append (trio + asyncio thread)", client, "µs")
        result.details[name] = {**row, "latency": asdict(row["latency"])}
    nats_us = nats_seconds * 1e6 / total_appends
    result.add("nats_cpu", "  nats-server CPU per append (all 3, both loops)", nats_us, "µs")
    lmdb_latency = _lmdb_commits(settings.lmdb_seconds)
    what = f"LMDB synced commit, {LMDB_PUTS_PER_COMMIT} puts scattered, one at a time"
    result.add("lmdb.rate", what, 1000 / lmdb_latency.mean_ms, "commits/s")
    result.add("lmdb.p50", "  commit p50", lmdb_latency.p50_ms, "ms")
    result.add("lmdb.p99", "  commit p99", lmdb_latency.p99_ms, "ms")
    result.details["lmdb"] = asdict(lmdb_latency)
    return result, {"append": found, "lmdb": lmdb_latency, "nats_cpu_us_per_append": nats_us}


def _lmdb_commits(seconds: float) -> Any:
    """Synced LMDB commits as the runtime opens LMDB (sync, metasync, no writemap), each of
    ``LMDB_PUTS_PER_COMMIT`` puts scattered over ``LMDB_KEYS`` keys; their latency summary."""
    with TemporaryDirectory(prefix="roost-lmdb-", dir=RESULTS.parent) as directory:
        env = lmdb.open(directory, map_size=1 << 30, sync=True, metasync=True, writemap=False)
        keys = [os.urandom(40) for _ in range(LMDB_KEYS)]
        picker = random.Random(0)
        try:
            with env.begin(write=True) as txn:
                for key in keys:
                    txn.put(key, LMDB_VALUE)
            durations: list[float] = []
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                chosen = picker.sample(keys, LMDB_PUTS_PER_COMMIT)
                started = time.perf_counter()
                with env.begin(write=True) as txn:
                    for key in chosen:
                        txn.put(key, LMDB_VALUE)
                durations.append(time.perf_counter() - started)
        finally:
            env.close()
    return summarize(durations)


# --- 4. the projection --------------------------------------------------------------------


def scale_out(single: dict[str, Any], spread: dict[str, Any], appends: dict[str, Any]) -> BenchmarkResult:
    """Ratios measured side by side, and what the CPU per request implies on separate machines."""
    result = BenchmarkResult("scale-out", "ratios and a projection to separate machines (from the figures above)")
    ratio = spread["rate"] / single["rate"]
    result.add("ratio", "3 nodes (3 wrk) / 1 node, requests/s, on this 2-core machine", ratio, "x")
    single_cpu = sum(single["cpu"].nodes.values()) * 1e6 / single["requests"]
    nodes_cpu = sum(spread["cpu"].nodes.values()) * 1e6 / spread["requests"]
    nats = {name: s * 1e6 / spread["requests"] for name, s in spread["cpu"].nats.items()}
    result.add("cpu_ratio", "roost CPU per request, cluster / single", nodes_cpu / single_cpu, "x")
    # A node is one event loop: its Python work is bound by one core, whatever the machine.
    per_node_cap = len(NODE_NAMES) * 1e6 / nodes_cpu
    busiest = max(nats.values())
    nats_cap = 2 * 1e6 / busiest  # the busiest server (the stream's leader) on 2 cores of its own
    commits = spread["commits"]
    result.add("single_core_cap", "1 node, 1 core of roost work: requests/s bound", 1e6 / single_cpu, "req/s")
    result.add("nodes_cap", "3 nodes on 3 machines, 1 core each of roost work: bound", per_node_cap, "req/s")
    result.add("nats_cap", "nats-servers on 3 machines of 2 cores: bound of the busiest", nats_cap, "req/s")
    sequential = appends["append"]["sequential"]["latency"].p50_ms
    lmdb_ms = commits["commit_seconds_sum"] / commits["commits"] * 1000 if commits["commits"] else 0.0
    actors_per_commit = commits["actors"] / commits["commits"] if commits["commits"] else 0.0
    # A node replicates one batch at a time: a commit costs an append round plus its LMDB apply.
    cycle_ms = sequential + lmdb_ms
    pipeline_cap = len(NODE_NAMES) * actors_per_commit * 1000 / cycle_ms if cycle_ms else None
    what = "3 nodes, one batch in flight each: bound at this batch size"
    result.add("pipeline_cap", what, pipeline_cap, "req/s")
    appends_per_request = commits["log_appends"] / spread["requests"]
    # The client's CPU of the direct measurement: a round of one append costs the bridge hop
    # and one publish; each further append of a round (append_all, as a group commit does)
    # costs the marginal part. A node pays a round per commit and the marginal per append.
    rows = appends["append"]
    round_us = rows["sequential"]["client_cpu_us_per_append"]
    parallel_round_us = rows["parallel"]["client_cpu_us_per_append"] * PARALLEL_PARTITIONS
    marginal_us = max((parallel_round_us - round_us) / (PARALLEL_PARTITIONS - 1), 0.0)
    further = commits["log_appends"] - commits["commits"]
    client_us = (commits["commits"] * round_us + further * marginal_us) / spread["requests"]
    result.add("appends_per_request", "log appends per request (3 wrk run)", appends_per_request, "appends")
    what = "  their NATS client CPU per request (from the direct figures)"
    result.add("append_client_us", what, client_us, "µs")
    result.details.update(
        nodes_cpu_us_per_request=round(nodes_cpu, 1),
        single_cpu_us_per_request=round(single_cpu, 1),
        nats_cpu_us_per_request=nats,
    )
    result.notes.append(
        f"On separate machines each node's event loop gets a core to itself: at {nodes_cpu:.0f} µs of roost CPU"
        f" per request (single node: {single_cpu:.0f} µs; of the extra, ~{client_us:.0f} µs is the NATS client's"
        f" {appends_per_request:.2f} appends per request, the rest mostly forwarding: 2/3 of the requests cross"
        f" to their owner), three nodes would bound at ~{per_node_cap:,.0f} req/s, against"
        f" ~{1e6 / single_cpu:,.0f} for one node. The nats-servers cost {sum(nats.values()):.0f} µs per"
        f" request in all, {busiest:.0f} µs on the busiest (one stream, one Raft leader for every"
        f" partition): ~{nats_cap:,.0f} req/s"
        f" on 2 cores of its own, so NATS is not the first limit. With one batch in flight per node, a commit"
        f" of ~{actors_per_commit:.0f} actors waits an append round (p50 {sequential:.1f} ms on loopback, more"
        f" across machines) plus its LMDB fsync ({lmdb_ms:.1f} ms): ~{pipeline_cap or 0:,.0f} req/s for"
        f" three nodes"
        f" at this batch size; batches grow with load, so this bounds latency more than throughput."
    )
    return result


# --- the run ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.cluster.http_bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="3 s wrk runs, 1 s appends: a smoke run")
    parser.add_argument("--seconds", type=float, help="length of each wrk run")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"JSON path (default {RESULTS})")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="keep the data and logs in DIR (default: removed)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = HttpSettings.quick() if args.quick else HttpSettings()
    if args.seconds is not None:
        settings = replace(settings, seconds=args.seconds)
    if (reason := wrk.unavailable()) is not None:
        print(reason, file=sys.stderr)
        return 2
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_at_start = os.getloadavg()
    results: list[BenchmarkResult] = []
    started = time.perf_counter()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with TemporaryDirectory(prefix="roost-cluster-http-", dir=RESULTS.parent) as scratch:
        directory = args.keep or Path(scratch)
        phase = time.perf_counter()

        def done(result: BenchmarkResult) -> None:
            nonlocal phase
            result.seconds, phase = time.perf_counter() - phase, time.perf_counter()
            results.append(result)

        print("1 node ...", file=sys.stderr, flush=True)
        single, single_facts = measure_single(directory, settings)
        done(single)
        with open_cluster(store_root=directory / "nats") as cluster:
            print(f"3 nodes on {cluster.version} ...", file=sys.stderr, flush=True)
            spread, spread_facts, one_node = measure_cluster(directory, settings, cluster)
            done(spread)
            done(one_node_result(one_node, settings))
            print("appends ...", file=sys.stderr, flush=True)
            append, append_facts = measure_appends(cluster, settings)
            done(append)
        done(scale_out(single_facts, spread_facts, append_facts))
    document = build_document(
        results,
        settings=settings,  # type: ignore[arg-type]  # any dataclass of settings
        machine=machine_info(RESULTS.parent, load_at_start=load_at_start),
        date=date,
        command=[Path(sys.executable).name, "-m", "benchmarks.cluster.http_bench", *sys.argv[1:]],
    )
    print(write_document(document, args.output))
    print()
    load = document["machine"]["load_average"]
    print(
        f"{document['machine']['nproc']} CPUs, {date}, {time.perf_counter() - started:.0f} s;"
        f" load average {load['start']} at start, {load['end']} at end"
    )
    print(render_table(results))
    print(f"JSON written to {args.output}")
    counts = summary(results)
    return 1 if counts["problems"] or counts["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
