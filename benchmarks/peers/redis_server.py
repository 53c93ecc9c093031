"""A throwaway Redis server on a loopback port, appending every write to disk with fsync."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from .processes import Process


def unavailable() -> str | None:
    """Why no Redis server can be started here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server not found (the Debian package redis-server did not install)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """``redis-server`` with ``appendonly yes`` and ``appendfsync always`` on data in ``directory``.

    ``appendfsync always`` makes a write durable before Redis answers it, the guarantee Roost
    gives every acknowledged write.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = Process(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            directory / "redis.log",
        )
        self.process.wait_for_log(r"Ready to accept connections")

    def stop(self) -> int:
        return self.process.stop()
