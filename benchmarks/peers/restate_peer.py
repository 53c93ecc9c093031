"""Restate: restate-server (npm ``@restatedev/restate-server``) with a Python SDK deployment.

The deployment is ``restate_counter.py``'s ``Counter`` Virtual Object, served by hypercorn
in one process with the settings of ``restate_hypercorn.toml``. restate-server runs as one
node with every role and its default durability (RocksDB; its log's write-ahead log synced,
``rocksdb-disable-wal-fsync = false``), its data under the run's directory, on free loopback
ports: the ingress that wrk drives, the admin API that the deployment is registered with,
and the node-to-node port. Telemetry is off and it listens on TCP only.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..roost_server import ROOT, free_port
from ..wrk import Counters
from .processes import Process
from .workloads import Peer

HERE = Path(__file__).resolve().parent
SERVER = HERE / "node_modules" / ".bin" / "restate-server"
PACKAGE = HERE / "node_modules" / "@restatedev" / "restate-server" / "package.json"
HYPERCORN = HERE / "restate_hypercorn.toml"
START_SECONDS = 60.0


def unavailable() -> str | None:
    if not SERVER.exists():
        return "the npm package @restatedev/restate-server is not in benchmarks/peers (npm ci failed?)"
    if importlib.util.find_spec("restate") is None:
        return "the Python package restate-sdk is not installed (benchmarks/peers/requirements.txt)"
    return None


def version() -> str:
    try:
        server = json.loads(PACKAGE.read_text())["version"]
    except (OSError, ValueError, KeyError):
        server = "?"
    try:
        sdk = importlib.metadata.version("restate-sdk")
    except importlib.metadata.PackageNotFoundError:
        sdk = "?"
    return f"restate-server {server}, restate-sdk {sdk}"


def _request(port: int, method: str, path: str, body: object = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {} if body is None else {"content-type": "application/json"}
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return 0, str(exc).encode()
    finally:
        connection.close()


def _answers(port: int, method: str, path: str, body: object = None) -> bool:
    return 200 <= _request(port, method, path, body)[0] < 300


@contextmanager
def serve_http(directory: Path) -> Iterator[Counters]:
    directory.mkdir(parents=True, exist_ok=True)
    sdk_port, ingress, admin, node = (free_port() for _ in range(4))
    hypercorn = [sys.executable, "-m", "hypercorn", "--config", str(HYPERCORN)]
    hypercorn += ["--bind", f"127.0.0.1:{sdk_port}", "benchmarks.peers.restate_counter:app"]
    sdk = Process(hypercorn, directory / "sdk.log", cwd=ROOT)
    server: Process | None = None
    try:
        sdk.wait_for_log(r"Running on http://127\.0\.0\.1", START_SECONDS)
        environment = {
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{node}",
            "RESTATE_DISABLE_TELEMETRY": "true",
            "RESTATE_LOG_DISABLE_ANSI_CODES": "true",
        }
        command = [str(SERVER), "--no-logo", "--listen-mode", "tcp", "--base-dir", str(directory / "restate")]
        server = Process(command, directory / "restate.log", env=environment)
        server.wait_until(lambda: _answers(admin, "GET", "/health"), START_SECONDS, "its admin API")
        status, text = _request(admin, "POST", "/deployments", {"uri": f"http://127.0.0.1:{sdk_port}"})
        if not 200 <= status < 300:
            raise RuntimeError(f"registering the deployment answered {status}: {text[:300]!r}")
        # The ingress learns of the new service a moment after the admin API has registered it.
        probe = "/Counter/probe/get"
        server.wait_until(lambda: _answers(ingress, "GET", probe), START_SECONDS, "the Counter service")
        yield Counters(
            port=ingress,
            increment_path="/Counter/{name}/increment",
            read_path="/Counter/{name}/get",
            read_value=int,
        )
    finally:
        if server is not None:
            server.stop()
        sdk.stop()


PEER = Peer(
    name="Restate",
    setup=f"{version()} (a Virtual Object served by hypercorn, one process), one node, RocksDB with fsync",
    unavailable=unavailable,
    http=serve_http,
)
