"""``roost serve --workers N``: the supervisor of N worker processes (``worker.py``).

Before any worker starts, the supervisor takes the data directory's lock (held for its whole
life, so a second server on the directory is refused), lays the directory out for N workers
(one environment each; when N changed, whole partitions move between them, crash-safe:
``durability.migrate``), and opens the listening socket every worker inherits and accepts
on. Worker ``i`` owns the partitions ``p`` with ``p % N == i``.

A worker that dies is started again (after a pause that doubles while it keeps dying soon
after its start); meanwhile calls for its partitions wait a bounded time and then get 503
(``placement.client``), and the other workers keep serving. A worker that cannot start (its
configuration, its partitions locked) stops the server with exit status 2 and its one line,
rather than a restart loop.

SIGINT or SIGTERM drains every worker (each stops accepting, finishes its in-flight requests
while still answering the others' forwarded calls), then closes them (every write flushed)
and exits 0; a second signal kills the workers and exits at once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict

import trio

from ..config import Config
from ..durability.lock import DirectoryLock
from ..durability.migrate import ensure_layout
from ..durability.partitions import DEFAULT_PARTITIONS
from ..errors import ConfigError
from ..limits import DEFAULT_MAP_SIZE_BYTES
from .exits import EXIT_BAD_CONFIG, EXIT_SECOND_SIGNAL
from .http_server import GRACEFUL_TIMEOUT_SECONDS
from .worker import WorkerSpec

log = logging.getLogger("roost.serve")

LISTEN_BACKLOG = 1024
CLOSE_TIMEOUT_SECONDS = 30.0
# A worker that dies within STABLE_SECONDS of its start waits before its next start, twice as
# long each time in a row, from the first pause up to the longest.
STABLE_SECONDS = 10.0
FIRST_RESTART_PAUSE_SECONDS = 0.1
LONGEST_RESTART_PAUSE_SECONDS = 10.0


class WorkerStartError(Exception):
    """A worker could not start; the message is its one line. ``reported`` when the worker
    said why (its configuration, its partitions locked), not when it died without a word
    (killed while it started)."""

    def __init__(self, message: str, *, reported: bool, status: int) -> None:
        super().__init__(message)
        self.reported = reported
        self.status = status


class _Worker:
    """One worker process and its two pipes, started again each time it dies."""

    def __init__(self, spec: WorkerSpec, listen_fd: int) -> None:
        self.spec = spec
        self.index = spec.worker
        self._listen_fd = listen_fd
        self.process: trio.Process | None = None
        self._status: trio.lowlevel.FdStream | None = None
        self._buffer = b""
        self.drained = trio.Event()
        self.started_at = 0.0
        self.quick_deaths = 0  # in a row, each within STABLE_SECONDS of its start

    async def start(self) -> None:
        """Start the process and wait until it serves; ``WorkerStartError`` if it cannot."""
        read_end, write_end = os.pipe()
        spec = json.dumps(asdict(self.spec) | {"status_fd": write_end})
        self.started_at = trio.current_time()
        try:
            self.process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "runtime.serving.worker", spec],
                stdin=subprocess.PIPE,
                pass_fds=(self._listen_fd, write_end),
                start_new_session=True,
            )
        finally:
            os.close(write_end)
        self._status = trio.lowlevel.FdStream(read_end)
        self._buffer = b""
        self.drained = trio.Event()
        line = await self.next_status()
        if line == "ready":
            return
        status = await self.exited()
        if line is not None and line.startswith("error "):
            raise WorkerStartError(line.removeprefix("error "), reported=True, status=status)
        raise WorkerStartError(
            f"worker {self.index} exited with status {status} before it was ready", reported=False, status=status
        )

    async def exited(self) -> int:
        """Follow the status pipe until the process dies; its exit status. Its pipes close."""
        assert self.process is not None and self._status is not None
        while (line := await self.next_status()) is not None:
            if line == "drained":
                self.drained.set()
        status = await self.process.wait()
        if self.process.stdin is not None:
            await self.process.stdin.aclose()
        await self._status.aclose()
        self.drained.set()
        return status

    async def next_status(self) -> str | None:
        """The next line on the status pipe; None once the process closed it (it died)."""
        assert self._status is not None
        while b"\n" not in self._buffer:
            data = await self._status.receive_some(4096)
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    async def tell(self, command: str) -> None:
        if self.process is None or self.process.stdin is None:
            return
        try:
            await self.process.stdin.send_all(command.encode() + b"\n")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # it is gone already

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()


async def supervise(
    config: Config,
    *,
    workers: int,
    host: str,
    port: int,
    data_dir: str | None,
    request_timeout: float,
    idle_timeout: float,
    log_format: str,
    log_level: str,
) -> int:
    """Run the server until signalled; returns the exit status. Raises ``ConfigError`` or
    ``DataDirectoryLockedError`` for what stops it before any worker starts."""
    directory = data_dir or config.data_dir
    if directory is None:
        raise ConfigError(f"{config.source}: no data_dir given (set data_dir, or pass --data-dir)")
    directory = os.path.abspath(directory)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        lock = DirectoryLock(directory)
        socket_dir = tempfile.mkdtemp(prefix="roost-workers-")
        try:
            try:
                layout = await trio.to_thread.run_sync(
                    lambda: ensure_layout(
                        directory, workers, DEFAULT_PARTITIONS, map_size_bytes=DEFAULT_MAP_SIZE_BYTES
                    )
                )
            except ValueError as exc:
                raise ConfigError(f"--workers {workers}: {exc}") from None
            count = layout.partitions
            listener = _listen(host, port)
            with listener:
                specs = [
                    WorkerSpec(
                        worker=index,
                        workers=workers,
                        partitions=count,
                        config=os.path.abspath(config.source),
                        data_dir=directory,
                        socket_dir=socket_dir,
                        listen_fd=listener.fileno(),
                        status_fd=-1,
                        request_timeout=request_timeout,
                        idle_timeout=idle_timeout,
                        log_format=log_format,
                        log_level=log_level,
                    )
                    for index in range(workers)
                ]
                pool = [_Worker(spec, listener.fileno()) for spec in specs]
                address = _url(listener)
                return await _run(pool, signals, address, count, directory)
        finally:
            shutil.rmtree(socket_dir, ignore_errors=True)
            lock.release()


async def _run(
    pool: list[_Worker], signals: trio.abc.ReceiveChannel[int], address: str, count: int, directory: str
) -> int:
    outcome: list[int] = []
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            for worker in pool:
                nursery.start_soon(worker.start)
    except BaseExceptionGroup as group:
        failures = [exc for exc in _leaves(group) if isinstance(exc, WorkerStartError)]
        for worker in pool:
            worker.kill()
        if not failures:
            raise
        print(f"roost: cannot serve: {failures[0]}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    log.info(
        "serving on %s (%d workers, %d partitions, data dir %s)",
        address,
        len(pool),
        count,
        directory,
        extra={"event": "serve.started", "binds": [address], "workers": len(pool), "data_dir": directory},
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_watch_signals, signals, stop, pool)
        for worker in pool:
            nursery.start_soon(_keep_alive, worker, stop, outcome)
        await stop.wait()
        log.info("draining %d workers", len(pool), extra={"event": "shutdown.draining"})
        for worker in pool:
            await worker.tell("drain")
        with trio.move_on_after(GRACEFUL_TIMEOUT_SECONDS + CLOSE_TIMEOUT_SECONDS):
            for worker in pool:
                await worker.drained.wait()
        for worker in pool:
            await worker.tell("close")
        with trio.move_on_after(CLOSE_TIMEOUT_SECONDS) as scope:
            for worker in pool:
                assert worker.process is not None
                await worker.process.wait()
        if scope.cancelled_caught:
            log.error("workers did not close in time; killing them", extra={"event": "shutdown.forced"})
            for worker in pool:
                worker.kill()
        nursery.cancel_scope.cancel()
    if outcome:
        return outcome[0]
    log.info("every worker closed; every acknowledged write is on disk", extra={"event": "shutdown.done"})
    return 0


async def _keep_alive(worker: _Worker, stop: trio.Event, outcome: list[int]) -> None:
    """Start a worker again each time it dies, unless the server stops or the worker says why
    it cannot start (then the server stops with exit status 2)."""
    status = await worker.exited()
    while not stop.is_set():
        quick = trio.current_time() - worker.started_at < STABLE_SECONDS
        worker.quick_deaths = worker.quick_deaths + 1 if quick else 0
        pause = 0.0
        if worker.quick_deaths > 1:
            pause = min(FIRST_RESTART_PAUSE_SECONDS * 2 ** (worker.quick_deaths - 2), LONGEST_RESTART_PAUSE_SECONDS)
        log.warning(
            "worker %d exited with status %s; starting it again%s",
            worker.index,
            status,
            f" in {pause:g} s" if pause else "",
            extra={"event": "worker.restart", "worker": worker.index, "status": status},
        )
        await _sleep_unless(stop, pause)
        if stop.is_set():
            return
        try:
            await worker.start()
        except WorkerStartError as exc:
            if exc.reported:
                print(f"roost: cannot serve: {exc}", file=sys.stderr)
                outcome.append(EXIT_BAD_CONFIG)
                stop.set()
                return
            status = exc.status
            continue
        log.info("worker %d serves again", worker.index, extra={"event": "worker.started", "worker": worker.index})
        status = await worker.exited()


async def _sleep_unless(stop: trio.Event, seconds: float) -> None:
    with trio.move_on_after(seconds):
        await stop.wait()


async def _watch_signals(signals: trio.abc.ReceiveChannel[int], stop: trio.Event, pool: list[_Worker]) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning("second %s: exiting now", name, extra={"event": "shutdown.forced"})
            for worker in pool:
                worker.kill()
            os._exit(EXIT_SECOND_SIGNAL)
        log.info(
            "%s: shutting down (a second signal exits at once)",
            name,
            extra={"event": "shutdown.started", "signal": name},
        )
        stop.set()


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host.strip("[]"), port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listener.set_inheritable(True)
    return listener


def _url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return found
