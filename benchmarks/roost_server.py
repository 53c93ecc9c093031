"""``roost serve --workers N`` as a real process on a free loopback port, for the HTTP benchmarks.

It serves the benchmark's counter app (benchmarks/counter.py) with a fresh data directory,
is ready once ``GET /healthz`` answers 200, and is stopped with SIGTERM to its process group
(the workers too), then SIGKILL if it lingers.
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
from functools import cache
from pathlib import Path

from .counter import BINDING
from .peers.processes import Process
from .wrk import Counters

ROOT = Path(__file__).resolve().parent.parent
ROOST = str(Path(sys.executable).with_name("roost"))
CONFIG = f"""
[[durable_objects.bindings]]
name = "{BINDING}"
class_name = "benchmarks.counter:Counter"
"""
START_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@cache
def has_workers_option() -> bool:
    """Whether this ``roost serve`` takes ``--workers`` (without it, only one worker can run)."""
    found = subprocess.run([ROOST, "serve", "--help"], capture_output=True, text=True, cwd=ROOT)
    return "--workers" in found.stdout


def unsupported(workers: int) -> str | None:
    """Why ``roost serve`` cannot run ``workers`` workers here, or None."""
    if workers > 1 and not has_workers_option():
        return "roost serve has no --workers option yet"
    return None


def healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


class RoostServer:
    """``roost serve`` with ``workers`` workers on a free port, data and log under ``directory``."""

    def __init__(self, directory: Path, workers: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "roost.toml"
        config.write_text(CONFIG)
        port = free_port()
        command = [ROOST, "serve", "--config", str(config), "--data-dir", str(directory / "data")]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        if has_workers_option():  # else today's single process, which is --workers 1
            command += ["--workers", str(workers)]
        self.process = Process(command, directory / "serve.log", cwd=ROOT)
        self.process.wait_until(lambda: healthy(port), START_SECONDS, "GET /healthz answering 200")
        self.counters = Counters(
            port=port,
            increment_path=f"/actors/{BINDING}/{{name}}/increment",
            read_path=f"/actors/{BINDING}/{{name}}/",
            read_value=lambda answer: answer["value"],
        )

    def stop(self) -> int:
        """SIGTERM (then SIGKILL) to the server and its workers; the exit code (0: a clean stop)."""
        return self.process.stop()
