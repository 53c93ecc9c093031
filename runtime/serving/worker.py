"""One worker process of ``roost serve --workers N``, started by the supervisor.

It owns the partitions ``Placement`` gives it (in one LMDB environment), answers the other workers' calls for them on
its unix socket, and serves HTTP on the listening socket it inherited (every worker accepts
on the same one). It talks to the supervisor through two pipes: it writes ``ready``,
``drained`` or ``error <one line>`` on its status pipe, and reads ``drain`` and ``close``
on stdin. Draining stops HTTP (in-flight requests finish) while forwarded calls are still
answered, since another worker's last requests may need this one's actors; ``close`` then
closes the runtime. End of stdin means the supervisor is gone (killed): the worker exits at
once, as if killed with it, so that none outlives it holding partitions and the port; what
it acknowledged was durable already.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, replace
from functools import partial

import trio

from ..config import Config, load_config, secret_values
from ..durability.lock import DirectoryLock
from ..durability.partitions import environment_path, read_layout
from ..errors import ConfigError, DataDirectoryLockedError
from ..observability.logs import configure_logging
from ..placement.worker import Placement
from ..system import open_worker_runtime
from .collector import tune_for_serving
from .http_server import open_listeners, serve_http

log = logging.getLogger("roost.serve")

EXIT_SUPERVISOR_GONE = 1
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
    request_timeout: float
    idle_timeout: float
    log_format: str
    log_level: str


def main() -> None:
    spec = WorkerSpec(**json.loads(sys.argv[1]))
    # The supervisor takes the signals (a terminal's Ctrl-C reaches it) and tells us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    status = _Status(spec.status_fd)
    try:
        config = load_config(spec.config)
        configure_logging(
            spec.log_format, spec.log_level, secrets=secret_values(config), fields={"worker": spec.worker}
        )
        tune_for_serving()
        trio.run(partial(_serve, spec, config, status))
    except (ConfigError, DataDirectoryLockedError) as exc:
        status.send(f"error {exc}")
        sys.exit(2)


async def _serve(spec: WorkerSpec, config: Config, status: _Status) -> None:
    placement = Placement(spec.worker, spec.workers, spec.partitions, spec.socket_dir)
    await _wait_for_environment(spec.data_dir, spec.worker)
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
            listeners = await open_listeners(f"fd://{spec.listen_fd}")
            async with trio.open_nursery() as server:
                await server.start(partial(serve_http, rt.asgi_app, listeners, shutdown=drain))
                status.send("ready")
            status.send("drained")
            await close.wait()
            nursery.cancel_scope.cancel()


async def _wait_for_environment(data_dir: str, worker: int) -> None:
    """Wait a bounded time while the worker this one replaces still holds the environment
    (the kernel frees its lock as it finishes dying); ``DataDirectoryLockedError`` past it."""
    layout = read_layout(data_dir)
    assert layout is not None, "the supervisor lays the data directory out first"
    path = environment_path(data_dir, layout, worker)
    deadline = trio.current_time() + LOCK_WAIT_SECONDS
    while True:
        try:
            DirectoryLock(path).release()
            return
        except DataDirectoryLockedError:
            if trio.current_time() >= deadline:
                raise
            await trio.sleep(LOCK_RETRY_SECONDS)


async def _follow_supervisor(drain: trio.Event, close: trio.Event) -> None:
    """Read ``drain`` and ``close`` from the supervisor; exit at the end of stdin."""
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
    log.warning("the supervisor is gone; exiting", extra={"event": "worker.orphaned"})
    os._exit(EXIT_SUPERVISOR_GONE)


class _Status:
    """The write end of the status pipe: one line per message."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def send(self, line: str) -> None:
        os.write(self._fd, (" ".join(line.splitlines()) + "\n").encode())


if __name__ == "__main__":
    main()
