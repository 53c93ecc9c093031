"""How long a retried message waits before its next delivery, when the consumer (or a pull
consumer) gave no ``delay_seconds``: the consumer's ``retry_delay``, fixed, or with
``retry_backoff = "exponential"`` doubled per attempt up to ``max_retry_delay``, with jitter.
Pure: no clock, no I/O; an explicit delay never comes here.
"""

from __future__ import annotations

import math
import random
from typing import Any

EXPONENTIAL = "exponential"  # runtime's config checks the values of ``retry_backoff``
# Exponential delays are shortened by a random part of up to this fraction of themselves.
JITTER_FRACTION = 0.25


def redelivery_delay_seconds(settings: Any, attempts: int) -> float:
    """The delay before delivering again a message that failed its ``attempts``-th delivery
    (from 1), under the consumer ``settings`` (a ``QueueConfig``).

    Exponential: ``min(max_retry_delay, retry_delay * 2 ** (attempts - 1))``, less a uniform
    random part of up to 25 % of it. Jitter spreads out messages that failed together (one
    batch, one outage of the service they call), so they do not all come back at the same
    moment to a service that is just recovering. It is taken off rather than added, so that
    ``max_retry_delay`` stays a true bound and no retry waits longer than its nominal delay
    (the first one at most ``retry_delay``). Not full jitter (anywhere in 0..delay): that can
    redeliver almost at once, while a backoff's point is to give the failing dependency time.
    A fixed delay has no jitter, as before."""
    if settings.retry_backoff != EXPONENTIAL:
        return settings.retry_delay
    first, cap = settings.retry_delay, settings.max_retry_delay
    doublings = max(0, attempts - 1)
    # Compared in logarithms: 2 ** doublings would overflow a float after ~1,000 attempts
    # (expired pull leases count attempts without a retry, so they can grow that far).
    nominal = cap if doublings >= math.log2(cap / first) else min(cap, first * 2**doublings)
    return nominal * (1 - JITTER_FRACTION * random.random())
