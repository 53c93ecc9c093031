"""Retrying an operation with exponential backoff and full jitter, and telling which errors
are not worth retrying.

Sleeps use trio (so under ``MockClock`` they take no real time). Before retry ``i`` (from 0)
the wait is ``min(max_delay, base_delay * 2**i)``, or with ``jitter`` a uniform random time up
to that ("full jitter", which spreads out clients that failed together).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class PermanentError(Exception):
    """An error that retrying cannot fix: ``with_backoff`` re-raises it at once."""


def is_permanent_failure(err: BaseException) -> bool:
    """True for a ``PermanentError``, and for an error whose ``status``, ``status_code`` or
    ``response.status_code`` is a 4xx other than 408 (timeout) and 429 (rate limited)."""
    if isinstance(err, PermanentError):
        return True
    for status in (
        getattr(err, "status", None),
        getattr(err, "status_code", None),
        getattr(getattr(err, "response", None), "status_code", None),
    ):
        if isinstance(status, int) and not isinstance(status, bool) and 400 <= status < 500:
            return status not in (408, 429)
    return False


async def with_backoff(
    operation: Callable[[], Awaitable[T]],
    *,
    max_retries: int = 3,
    base_delay: float = 1.0,
    max_delay: float = 30.0,
    jitter: bool = True,
    is_permanent: Callable[[BaseException], bool] = is_permanent_failure,
) -> T:
    """``await operation()``, retried up to ``max_retries`` times on an ``Exception``.

    A permanent error (``is_permanent``) is re-raised at once; after the last retry the last
    error is re-raised. Cancellation is never retried."""
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
    if not base_delay >= 0 or not max_delay >= 0:
        raise ValueError("base_delay and max_delay must be >= 0")
    attempt = 0
    while True:
        try:
            return await operation()
        except Exception as exc:
            if is_permanent(exc) or attempt >= max_retries:
                raise
            await trio.sleep(
                backoff_delay(attempt, base_delay=base_delay, max_delay=max_delay, jitter=jitter)
            )
            attempt += 1


def backoff_delay(
    retry: int, *, base_delay: float, max_delay: float, jitter: bool, rng: Any = random
) -> float:
    """Seconds to wait before retry ``retry`` (from 0)."""
    ceiling = min(max_delay, base_delay * 2**retry)
    return rng.uniform(0, ceiling) if jitter else ceiling
