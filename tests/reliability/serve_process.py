"""A real ``roost serve`` subprocess on a free loopback port, killed and restarted at will.

Its log goes to a file per life, so a log survives ``kill -9``. Also what the reliability
checks read from outside the process: its resident memory, and LMDB's reader table.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lmdb

ROOST = str(Path(sys.executable).with_name("roost"))
START_TIMEOUT_SECONDS = 30.0
_SERVING = re.compile(r"serving on (http://127\.0\.0\.1:\d+)")
_READER_LINE = re.compile(r"^\s*(\d+)\s+\S+\s+\S+\s*$")

COUNTER_APP = """
import trio
from runtime import Actor

class Counter(Actor):
    async def increment(self) -> int:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return n

    async def slow(self) -> int:
        await trio.sleep(1)
        return await self.increment()
"""


def write_counter_app(directory: Path, more_config: str = "") -> None:
    """A roost.toml in ``directory`` binding ``COUNTERS`` to ``COUNTER_APP``'s counter, and
    ``more_config`` after it."""
    (directory / "counter_app.py").write_text(COUNTER_APP)
    binding = '[[durable_objects.bindings]]\nname = "COUNTERS"\nclass_name = "counter_app:Counter"\n'
    (directory / "roost.toml").write_text(binding + more_config)


class ServeProcess:
    """``roost serve --port 0`` started in ``cwd``; ``url`` once it logged where it serves."""

    def __init__(self, cwd: Path, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        with open(log_path, "w") as log:
            self.process = subprocess.Popen([ROOST, "serve", "--port", "0", *args], cwd=cwd, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and self.process.poll() is None:
            found = _SERVING.search(log_path.read_text())
            if found:
                self.url = found.group(1)
                return
            time.sleep(0.02)
        self.process.kill()
        self.process.wait()
        raise AssertionError(f"roost serve did not start:\n{log_path.read_text()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes of ``--workers N`` (the server's children)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == self.pid:
                found.append(int(entry.name))
        return sorted(found)

    def kill_9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM, then the exit status (the clean shutdown path)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def log(self) -> str:
        return self.log_path.read_text()

    def rss_bytes(self, kind: str = "VmRSS") -> int:
        """Resident memory from ``/proc`` (Linux): ``VmRSS`` in all, or ``RssAnon`` (the heap
        and other private memory) or ``RssFile`` (mapped files: LMDB's pages)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{kind}:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {kind} for pid {self.pid}")


class ReaderTable:
    """LMDB's reader tables of ``data_dir`` (its root environment, or each worker's), watched
    from this process.

    The environments stay open here (read-only, never starting a transaction, so this
    process takes no slot and clears none). While they are open, a restarted server cannot
    reinitialise the lock files, so slots left by a killed server stay until the server
    clears them itself, which is what ``stale_slots`` checks.
    """

    def __init__(self, data_dir: Path) -> None:
        workers = sorted(data_dir.glob("generation-*/worker-*"))
        self._envs = [lmdb.open(str(path), readonly=True, max_dbs=16) for path in workers or [data_dir]]

    def stale_slots(self) -> int:
        """Reader slots held by processes that no longer exist."""
        found = [_READER_LINE.match(line) for env in self._envs for line in env.readers().splitlines()]
        return sum(1 for line in found if line and not _is_alive(int(line.group(1))))

    def close(self) -> None:
        for env in self._envs:
            env.close()


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
