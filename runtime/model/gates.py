"""The input gate of one actor: event order and exclusive sections.

An event enters at once when the gate is open and nobody waits; otherwise it queues, and
queued events are released one at a time in arrival order, each releasing the next only
once it has itself entered, so an event that closes the gate again (``on_start``,
``block_concurrency_while``) holds back everything behind it. Entering an open gate never
yields to trio: a call to an idle actor costs no task switch.
"""

from __future__ import annotations

from collections import deque

import trio

from ..errors import ActorResetError


class InputGate:
    __slots__ = ("_closers", "_waiters", "_broken")

    def __init__(self, *, closed: bool = False) -> None:
        self._closers = 1 if closed else 0
        self._waiters: deque[trio.Event] | None = None
        self._broken: BaseException | None = None

    @property
    def is_open(self) -> bool:
        return not self._closers and not self._waiters

    async def enter(self) -> None:
        """Wait for this event's turn. Raises ``ActorResetError`` if the gate breaks."""
        if self._broken is not None:
            raise ActorResetError(str(self._broken))
        if not self._closers and not self._waiters:
            return
        if self._waiters is None:
            self._waiters = deque()
        turn = trio.Event()
        self._waiters.append(turn)
        try:
            while True:
                await turn.wait()
                if self._broken is not None:
                    raise ActorResetError(str(self._broken))
                if not self._closers:
                    break
                # Closed again between our wake-up and now: wait for the next opening, first in line.
                turn = self._waiters[0] = trio.Event()
        except BaseException:
            if turn in self._waiters:
                first = self._waiters[0] is turn
                self._waiters.remove(turn)
                if first:
                    self._wake_first()
            raise
        self._waiters.popleft()
        self._wake_first()

    def close(self) -> None:
        """Hold back new events until the matching ``open()``."""
        self._closers += 1

    def open(self) -> None:
        self._closers -= 1
        self._wake_first()

    def fail(self, reason: BaseException) -> None:
        """Fail every waiting and future event with ``ActorResetError(reason)``."""
        self._broken = reason
        for turn in self._waiters or ():
            turn.set()

    def _wake_first(self) -> None:
        if not self._closers and self._waiters:
            self._waiters[0].set()
