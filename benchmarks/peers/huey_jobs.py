"""The queue benchmark's jobs for Huey with its SQLite storage.

``build(filename)`` makes the Huey instance and registers the jobs on it; the consumer
process (``huey_consumer benchmarks.peers.huey_jobs.huey``) gets its instance from the
``ROOST_PEERS_HUEY_DB`` environment variable, the driver builds its own on the same file.
"""

from __future__ import annotations

import os
import time

from huey import SqliteHuey

from . import records

DATABASE_VARIABLE = "ROOST_PEERS_HUEY_DB"
MAX_RETRIES = 3


class FirstAttemptFailure(Exception):
    """Raised by a message on its first attempt in the fail-once workload."""


def build(filename: str):
    """(huey, consume, record_lateness): the instance, durable (fsync on every commit)."""
    huey = SqliteHuey("roost-bench", filename=filename, fsync=True)

    @huey.task(retries=MAX_RETRIES, retry_delay=0, context=True)
    def consume(n: int, fail_first_attempt: bool, task=None) -> None:
        """Acks message ``n``, or fails it on its first attempt when told to."""
        if fail_first_attempt and task.retries == MAX_RETRIES:
            records.append(records.RETRIES, b"r")
            raise FirstAttemptFailure(n)
        records.append(records.ACKS, b"a")

    @huey.task()
    def record_lateness(group: str, due: float) -> None:
        records.append(records.LATENESS, f"{group} {time.time() - due:.6f}\n".encode())

    return huey, consume, record_lateness


if DATABASE_VARIABLE in os.environ:
    huey, consume, record_lateness = build(os.environ[DATABASE_VARIABLE])
