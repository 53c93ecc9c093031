"""The runtime's one clock: epoch seconds that advance with trio's clock.

Inside a trio run, ``now()`` is trio's clock plus an offset sampled once per run, so under
``MockClock`` it advances with virtual time and every alarm, TTL, delay and lease agrees.
This is the only module of ``runtime`` allowed to read the wall clock.
"""

from __future__ import annotations

import time

import trio
import trio.testing

_offset: trio.lowlevel.RunVar[float] = trio.lowlevel.RunVar("roost_clock_offset")


def now() -> float:
    """Epoch seconds on the runtime's clock (``time.time()`` outside a trio run)."""
    try:
        current = trio.current_time()
    except RuntimeError:
        return time.time()
    try:
        offset = _offset.get()
    except LookupError:
        offset = time.time() - current
        _offset.set(offset)
    return offset + current


def is_virtual() -> bool:
    """True under trio's ``MockClock``, where nothing may wait on a worker thread."""
    return isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
