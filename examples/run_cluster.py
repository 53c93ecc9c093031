"""``make run-cluster``: a Roost cluster on this machine, to try what docs/cluster.md
describes. Three NATS servers (``runtime.cluster.local_nats``, their data in
``data-cluster/nats``) and three Roost nodes ``a``, ``b`` and ``c`` serving the example app on
ports 8787, 8788 and 8789 (their data in ``data-cluster/a`` and so on). Ctrl-C stops them all;
run it again and every node comes back with its data.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from runtime.cluster.local_nats import open_cluster

ROOT = Path("data-cluster")
NODES = {"a": (8787, 7400), "b": (8788, 7401), "c": (8789, 7402)}
ROOST = str(Path(sys.executable).with_name("roost"))
START_TIMEOUT_SECONDS = 60.0


def main() -> int:
    with open_cluster(store_root=ROOT / "nats") as nats:
        urls = ",".join(nats.urls)
        nodes = {name: _start(name, http_port, channel_port, urls) for name, (http_port, channel_port) in NODES.items()}
        try:
            for name, process in nodes.items():
                _wait_until_healthy(name, process)
            print(f"Three NATS servers ({urls}) and three Roost nodes are up. Try, from another shell:")
            print("  curl -X POST http://127.0.0.1:8787/rpc/COUNTERS/alice/increment")
            print("  curl -X POST http://127.0.0.1:8788/rpc/COUNTERS/alice/increment   # another node, the same actor")
            print("  curl http://127.0.0.1:8789/cluster                               # who owns which partition")
            print("  kill -9 the node that owns alice's partition and call a survivor: it takes over")
            print(f"Logs: {ROOT}/a.log, b.log, c.log. Stop with Ctrl-C.")
            while all(process.poll() is None for process in nodes.values()):
                time.sleep(0.5)
            print("a node exited: see its log", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            for process in nodes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in nodes.values():
                process.wait()


def _start(name: str, http_port: int, channel_port: int, urls: str) -> subprocess.Popen:
    log = open(ROOT / f"{name}.log", "ab")
    return subprocess.Popen(
        [
            ROOST, "serve", "--config", "examples/roost.toml", "--host", "127.0.0.1",
            "--port", str(http_port), "--data-dir", str(ROOT / name), "--cluster", urls,
            "--node-name", name, "--advertise", f"127.0.0.1:{channel_port}",
        ],
        stderr=log,
    )  # fmt: skip


def _wait_until_healthy(name: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"node {name} exited: see {ROOT / f'{name}.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{NODES[name][0]}/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"node {name} did not start within {START_TIMEOUT_SECONDS:g} s: see {ROOT / f'{name}.log'}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops everything as Ctrl-C does


if __name__ == "__main__":
    ROOT.mkdir(exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main())
