"""The queue benchmark's jobs for RQ, run by an ``rq worker`` against a local Redis."""

from __future__ import annotations

import time

from rq import get_current_job

from . import records

MAX_RETRIES = 3


class FirstAttemptFailure(Exception):
    """Raised by a message on its first attempt in the fail-once workload."""


def consume(n: int, fail_first_attempt: bool) -> None:
    """Acks message ``n``, or fails it on its first attempt when told to."""
    if fail_first_attempt and get_current_job().retries_left == MAX_RETRIES:
        records.append(records.RETRIES, b"r")
        raise FirstAttemptFailure(n)
    records.append(records.ACKS, b"a")


def record_lateness(group: str, due: float) -> None:
    records.append(records.LATENESS, f"{group} {time.time() - due:.6f}\n".encode())
