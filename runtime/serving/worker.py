"""One worker process of ``roost serve --workers N``, started by the supervisor.

It owns the partitions ``Placement`` gives it, answers the other workers' calls for them on
its unix socket, and serves HTTP on the listening socket it inherited (every worker accepts
on the same one). It talks to the supervisor through two pipes: it writes ``ready``,
``drained`` or ``error <one line>`` on its status pipe, and reads ``drain`` and ``close``
on stdin. Draining stops HTTP (in-flight requests finish) while forwarded calls are still
answered, since another worker's last requests may need this one's actors; ``close`` then
closes the runtime. End of stdin (the supervisor is gone) means both at once.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from dataclasses import dataclass, replace
from functools import partial

import trio
from hypercorn.trio import serve as hypercorn_serve

from ..config import Config, load_config, secret_values
from ..durability.lock import DirectoryLock
from ..durability.partitions import partition_path
from ..errors import ConfigError, DataDirectoryLockedError
from ..observability.logs import configure_logging
from ..placement.worker import Placement
from ..system import open_worker_runtime
from .http_server import hypercorn_settings

PR_SET_PDEATHSIG = 1
LOCK_WAIT_SECONDS = 5.0
LOCK_RETRY_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What the supervisor tells a worker, as one JSON argument."""

    worker: int
    workers: int
    partitions: int
    config: str
    data_dir: str
    socket_dir: str
    listen_fd: int
    status_fd: int
    supervisor_pid: int
    request_timeout: float
    idle_timeout: float
    log_format: str
    log_level: str


def main() -> None:
    spec = WorkerSpec(**json.loads(sys.argv[1]))
    _die_with_supervisor(spec.supervisor_pid)
    # Only the supervisor takes signals; a terminal's Ctrl-C reaches it, and it tells us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    status = _Status(spec.status_fd)
    try:
        config = load_config(spec.config)
        configure_logging(
            spec.log_format, spec.log_level, secrets=secret_values(config), fields={"worker": spec.worker}
        )
        trio.run(partial(_serve, spec, config, status))
    except (ConfigError, DataDirectoryLockedError) as exc:
        status.send(f"error {exc}")
        sys.exit(2)


async def _serve(spec: WorkerSpec, config: Config, status: _Status) -> None:
    placement = Placement(spec.worker, spec.workers, spec.partitions, spec.socket_dir)
    await _wait_for_partitions(spec.data_dir, placement.partitions)
    drain = trio.Event()
    close = trio.Event()
    async with open_worker_runtime(
        replace(config, data_dir=spec.data_dir),
        placement,
        request_timeout=spec.request_timeout,
        idle_timeout=spec.idle_timeout,
    ) as rt:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_follow_supervisor, drain, close)
            settings = hypercorn_settings(f"fd://{spec.listen_fd}")
            async with trio.open_nursery() as server:
                await server.start(partial(hypercorn_serve, rt.asgi_app, settings, shutdown_trigger=drain.wait))
                status.send("ready")
            status.send("drained")
            await close.wait()
            nursery.cancel_scope.cancel()


async def _wait_for_partitions(data_dir: str, partitions: list[int]) -> None:
    """Wait a bounded time for partitions still locked by the worker this one replaces (the
    kernel frees its locks as it finishes dying); ``DataDirectoryLockedError`` past it."""
    deadline = trio.current_time() + LOCK_WAIT_SECONDS
    for partition in partitions:
        while True:
            try:
                DirectoryLock(partition_path(data_dir, partition)).release()
                break
            except DataDirectoryLockedError:
                if trio.current_time() >= deadline:
                    raise
                await trio.sleep(LOCK_RETRY_SECONDS)


async def _follow_supervisor(drain: trio.Event, close: trio.Event) -> None:
    """Read ``drain`` and ``close`` from the supervisor; its end of stdin means both."""
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    buffer = b""
    async with stdin:
        while True:
            data = await stdin.receive_some(1024)
            if not data:
                break
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line == b"drain":
                    drain.set()
                elif line == b"close":
                    drain.set()
                    close.set()
    drain.set()
    close.set()


class _Status:
    """The write end of the status pipe: one line per message."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def send(self, line: str) -> None:
        os.write(self._fd, (" ".join(line.splitlines()) + "\n").encode())


def _die_with_supervisor(supervisor_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when the supervisor dies (``kill -9`` included), so
    no worker outlives it holding partitions and the port; exit if it is gone already."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != supervisor_pid:
        sys.exit(1)


if __name__ == "__main__":
    main()
