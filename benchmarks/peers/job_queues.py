"""Huey on SQLite and RQ on Redis: one worker process each, fed by this process.

Each message is one job (the unit these libraries ack and retry); producers enqueue them
100 at a time where the library can (RQ's ``enqueue_many`` in one pipeline), one by one
where it cannot (Huey). Alarms are delayed jobs due at the given time. The jobs
(``huey_jobs``, ``rq_jobs``) report to files through ``records``.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from . import records
from .processes import Process
from .redis_server import RedisServer
from .redis_server import unavailable as redis_unavailable
from .workloads import Peer, chunks, send_batches

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
QUEUE_NAME = "bench"


def _running(system: type) -> Callable[..., AbstractContextManager[Any]]:
    """A context manager that starts ``system`` on a directory and stops it afterwards."""

    @contextmanager
    def run(directory: Path, fail_first_attempt: bool = False) -> Iterator[Any]:
        directory.mkdir(parents=True, exist_ok=True)
        running = system(directory, fail_first_attempt)
        try:
            yield running
        finally:
            running.stop()

    return run


def _missing(*modules: str) -> str | None:
    absent = [name for name in modules if importlib.util.find_spec(name) is None]
    if absent:
        return f"Python packages not installed in this environment: {', '.join(absent)}"
    return None


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _worker_env(directory: Path, **extra: str) -> dict[str, str]:
    records_dir = directory / "records"
    records_dir.mkdir(parents=True, exist_ok=True)
    return {records.DIRECTORY_VARIABLE: str(records_dir), "PYTHONPATH": str(ROOT), **extra}


class _Recorded:
    """What the worker's jobs appended to the records directory."""

    def __init__(self, directory: Path) -> None:
        self.records = directory / "records"

    def progress(self) -> tuple[int, int]:
        return records.count(self.records, records.ACKS), records.count(self.records, records.RETRIES)

    def problems(self) -> list[str]:
        return []

    def fired(self, group: str) -> int:
        return len(self.lateness(group))

    def lateness(self, group: str) -> list[float]:
        return records.lateness(self.records, group)


# Huey ---------------------------------------------------------------------------------------


class _Huey(_Recorded):
    def __init__(self, directory: Path, fail_first_attempt: bool = False) -> None:
        super().__init__(directory)
        from . import huey_jobs

        database = str(directory / "huey.db")
        self.fail_first_attempt = fail_first_attempt
        self.huey, self.consume, self.record_lateness = huey_jobs.build(database)
        self.consumer = Process(
            [str(BIN / "huey_consumer"), "benchmarks.peers.huey_jobs.huey", "--workers", "1"],
            directory / "huey.log",
            cwd=ROOT,
            env=_worker_env(directory, **{huey_jobs.DATABASE_VARIABLE: database}),
        )
        self.consumer.wait_for_log(r"Huey consumer started")

    def send_all(self, count: int, deadline: float) -> None:
        def send(first: int) -> None:
            for n in range(first, first + 100):
                self.consume(n, self.fail_first_attempt)

        send_batches(count, deadline, send)

    def arm(self, group: str, items: list[tuple[str, float]], deadline: float) -> int:
        for armed, (_, due) in enumerate(items):
            if time.monotonic() >= deadline:
                return armed
            self.record_lateness.schedule(args=(group, due), eta=datetime.fromtimestamp(due, timezone.utc))
        return len(items)

    def stop(self) -> int:
        return self.consumer.stop()


HUEY = Peer(
    name="Huey",
    setup=f"huey {_version('huey')}, SqliteHuey (fsync on), one worker thread",
    unavailable=lambda: _missing("huey"),
    queue=_running(_Huey),
    alarms=_running(_Huey),
)


# RQ -----------------------------------------------------------------------------------------


class _RQ(_Recorded):
    def __init__(self, directory: Path, fail_first_attempt: bool = False) -> None:
        super().__init__(directory)
        from redis import Redis
        from rq import Queue, Worker

        self.fail_first_attempt = fail_first_attempt
        self.server = RedisServer(directory / "redis")
        try:
            self.redis = Redis.from_url(self.server.url)
            self.queue = Queue(QUEUE_NAME, connection=self.redis)
            self.worker = Process(
                [
                    str(BIN / "rq"),
                    "worker",
                    "--worker-class",
                    "rq.worker.SimpleWorker",
                    "--with-scheduler",
                    "--url",
                    self.server.url,
                    QUEUE_NAME,
                ],
                directory / "rq.log",
                cwd=ROOT,
                env=_worker_env(directory),
            )
            self.worker.wait_until(lambda: Worker.count(connection=self.redis) > 0, 60, "a registered worker")
        except BaseException:
            self.server.stop()
            raise

    def send_all(self, count: int, deadline: float) -> None:
        from rq import Queue, Retry

        from . import rq_jobs

        def send(first: int) -> None:
            jobs = [
                Queue.prepare_data(
                    rq_jobs.consume, args=(n, self.fail_first_attempt), retry=Retry(max=rq_jobs.MAX_RETRIES)
                )
                for n in range(first, first + 100)
            ]
            with self.redis.pipeline() as pipeline:
                self.queue.enqueue_many(jobs, pipeline=pipeline)
                pipeline.execute()

        send_batches(count, deadline, send)

    def arm(self, group: str, items: list[tuple[str, float]], deadline: float) -> int:
        from . import rq_jobs

        armed = 0
        for chunk in chunks(items):
            if time.monotonic() >= deadline:
                break
            armed += len(chunk)
            with self.redis.pipeline() as pipeline:
                for _, due in chunk:
                    job = self.queue.create_job(rq_jobs.record_lateness, args=(group, due))
                    self.queue.schedule_job(job, datetime.fromtimestamp(due, timezone.utc), pipeline=pipeline)
                pipeline.execute()
        return armed

    def stop(self) -> int:
        try:
            return self.worker.stop()
        finally:
            self.redis.close()
            self.server.stop()


RQ = Peer(
    name="RQ",
    setup=(
        f"rq {_version('rq')} (SimpleWorker, one process) on redis-server with appendonly yes, "
        "appendfsync always"
    ),
    unavailable=lambda: _missing("rq", "redis") or redis_unavailable(),
    queue=_running(_RQ),
    alarms=_running(_RQ),
)
