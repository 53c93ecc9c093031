"""The processes of the cluster HTTP benchmark and what is read from them: ``roost serve
--cluster`` nodes on loopback, their ``/cluster`` answers, the commits and appends their
``/metrics`` count, and CPU time from /proc.

A node serves the benchmark's counter app (benchmarks/counter.py, the config of
benchmarks/roost_server.py) from its own data directory, on a free HTTP port and a free port
for the other nodes. It is ready once ``GET /healthz`` answers 200; the cluster is settled
once the nodes' ``/cluster`` answers serve the 64 partitions between them, each exactly once
and on its rendezvous home among all the nodes, and every node names the same owners and
sees every node live. Before that, hand-offs are still to come (each answers 503 for a
while). Nothing here measures speed.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.cluster.ownership import rank

from ..counter import BINDING
from ..peers.processes import Process
from ..roost_server import CONFIG, ROOST, ROOT, START_SECONDS, free_port, healthy
from ..wrk import Counters

PARTITIONS = 64
SETTLE_SECONDS = 60.0
_CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(group: int) -> float:
    """User plus system CPU seconds so far of every live process of process group ``group``
    (a server and any workers: each is started in a session of its own), threads included,
    from ``/proc/PID/stat``."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            total += (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_SECOND
    return total


def get_json(port: int, path: str) -> Any:
    """``GET path`` on the loopback ``port``, its JSON; ``OSError`` or ``ValueError`` if it fails."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise ValueError(f"GET {path} on port {port} answered {response.status}: {body[:200]!r}")
        return json.loads(body)
    except http.client.HTTPException as exc:
        raise OSError(f"GET {path} on port {port}: {exc!r}") from exc
    finally:
        connection.close()


def scrape(port: int) -> dict[str, float]:
    """``GET /metrics`` as ``{"name{labels}": value}``, every sample of the text format."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


class ClusterNode:
    """``roost serve --cluster URLS --node-name NAME --advertise 127.0.0.1:PORT`` with its
    data and log under ``directory``; started at once, not waited for (``wait_healthy``)."""

    def __init__(self, directory: Path, name: str, nats_urls: Sequence[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "roost.toml"
        config.write_text(CONFIG)
        self.name = name
        self.port = free_port()
        self.advertise = f"127.0.0.1:{free_port()}"
        command = [ROOST, "serve", "--config", str(config), "--data-dir", str(directory / "data")]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--cluster", ",".join(nats_urls), "--node-name", name, "--advertise", self.advertise]
        self.process = Process(command, directory / "serve.log", cwd=ROOT)
        self.counters = Counters(
            port=self.port,
            increment_path=f"/actors/{BINDING}/{{name}}/increment",
            read_path=f"/actors/{BINDING}/{{name}}/",
            read_value=lambda answer: answer["value"],
        )

    @property
    def pid(self) -> int:
        return self.process.process.pid

    def wait_healthy(self) -> None:
        """Until ``GET /healthz`` answers 200; ``RuntimeError`` (with the log) if it dies or times out."""
        self.process.wait_until(lambda: healthy(self.port), START_SECONDS, "GET /healthz answering 200")

    def status(self) -> dict[str, Any] | None:
        """The node's ``GET /cluster`` answer, or None if it does not answer."""
        try:
            return get_json(self.port, "/cluster")
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float:
        return group_cpu_seconds(self.pid)

    def stop(self) -> int:
        """SIGTERM (then SIGKILL); the exit code (0: a clean stop, its leases released)."""
        return self.process.stop()


def settled(statuses: Sequence[dict[str, Any] | None]) -> bool:
    """Whether these ``/cluster`` answers serve every partition exactly once between them,
    each on its home (the node ranking first for it), every node names, for each partition,
    the node that serves it, and every node sees all of them live."""
    if any(status is None for status in statuses):
        return False
    names = {status["node"] for status in statuses if status is not None}
    if any(set(status["nodes"]) != names for status in statuses if status is not None):
        return False
    served: dict[int, str] = {}
    for status in statuses:
        assert status is not None
        for partition in status["serving"]:
            if partition in served:
                return False
            served[partition] = status["node"]
    if sorted(served) != list(range(PARTITIONS)):
        return False
    if any(node != max(names, key=lambda name: rank(partition, name)) for partition, node in served.items()):
        return False
    expected = {str(partition): node for partition, node in served.items()}
    return all(status is not None and status["owners"] == expected for status in statuses)


def wait_settled(
    nodes: Sequence[ClusterNode], timeout: float = SETTLE_SECONDS
) -> tuple[float, list[dict[str, Any]]]:
    """Poll every node's ``/cluster`` until ``settled``; the seconds it took and the last
    answers. ``RuntimeError`` with the last answers if a node dies or ``timeout`` passes."""
    started = time.monotonic()
    statuses: list[dict[str, Any] | None] = []
    while time.monotonic() - started < timeout:
        for node in nodes:
            if node.process.process.poll() is not None:
                raise RuntimeError(f"node {node.name} exited; its log:\n{node.process.log()[-3000:]}")
        statuses = [node.status() for node in nodes]
        if settled(statuses):
            return time.monotonic() - started, [s for s in statuses if s is not None]
        time.sleep(0.1)
    served = {node.name: (s or {}).get("serving") for node, s in zip(nodes, statuses)}
    raise RuntimeError(f"the cluster did not settle within {timeout} s: served {served}")


@dataclass(slots=True)
class Cpu:
    """CPU seconds of the processes of a run, by role, between two readings."""

    nodes: dict[str, float]
    nats: dict[str, float]
    wrk: float

    def per_request_us(self, requests: int) -> dict[str, Any]:
        scale = 1e6 / requests if requests else 0.0
        return {
            "nodes": {name: round(s * scale, 1) for name, s in self.nodes.items()},
            "nats": {name: round(s * scale, 1) for name, s in self.nats.items()},
            "nodes_total": round(sum(self.nodes.values()) * scale, 1),
            "nats_total": round(sum(self.nats.values()) * scale, 1),
            "wrk": round(self.wrk * scale, 1),
        }


def children_cpu_seconds() -> float:
    """CPU of this process's reaped children: the wrk runs, once each has exited."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def scrape_all(nodes: Sequence[ClusterNode]) -> dict[str, float]:
    """Every node's ``/metrics`` samples in one map (each node's series carry its label)."""
    samples: dict[str, float] = {}
    for node in nodes:
        samples.update(scrape(node.port))
    return samples


def _metric(samples: dict[str, float], name: str) -> float:
    """The sum of ``name``'s samples over all label sets."""
    return sum(value for key, value in samples.items() if key == name or key.startswith(name + "{"))


def commit_deltas(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Commits, appends, writes and the LMDB commit latency histogram between two scrapes."""

    def delta(name: str) -> float:
        return _metric(after, name) - _metric(before, name)

    buckets: dict[float, float] = {}  # upper bound -> commits at or below it (cumulative)
    for key in after:
        if key.startswith("roost_commit_seconds_bucket{"):
            bound = key.split('le="', 1)[1].split('"', 1)[0]
            le = float("inf") if bound == "+Inf" else float(bound)
            buckets[le] = buckets.get(le, 0.0) + after[key] - before.get(key, 0.0)
    commits = delta("roost_commits_total")
    return {
        "commits": int(commits),
        "log_appends": int(delta("roost_cluster_log_appends_total")),
        "writes": int(delta("roost_committed_writes_total")),
        "actors": int(delta("roost_committed_actors_total")),
        "commit_seconds_sum": round(delta("roost_commit_seconds_sum"), 4),
        "commit_p50_bucket_ms": _bucket_quantile(buckets, commits, 0.5),
        "commit_p99_bucket_ms": _bucket_quantile(buckets, commits, 0.99),
    }


def _bucket_quantile(buckets: dict[float, float], count: float, q: float) -> float | None:
    """The upper bound of the bucket holding the ``q`` quantile, in ms (None: no commits)."""
    if not count:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= q * count:
            return bound * 1000
    return None
