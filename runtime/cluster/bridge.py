"""``AsyncioThread``: one asyncio event loop in a daemon thread, reached from trio.

nats-py runs on asyncio and Roost on trio (docs/cluster.md, "The trio bridge"). A call hands a
coroutine to the loop with ``run_coroutine_threadsafe``; its completion wakes trio through the
run's token, so no trio worker thread is tied up per call. This module knows nothing of NATS.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

CLOSE_TIMEOUT_SECONDS = 5.0


class AsyncioThread:
    """A dedicated asyncio event loop running in its own daemon thread.

    ``await call(coro_fn, *args)`` runs ``coro_fn(*args)`` on the loop and returns its result
    or raises its exception unchanged. Cancelling the trio caller cancels the asyncio task and
    re-raises ``trio.Cancelled`` at once, without waiting for the task to finish unwinding.
    """

    def __init__(self, name: str = "roost-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def call(self, coro_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass  # the trio run ended while the task ran: nobody is waiting

        future = asyncio.run_coroutine_threadsafe(coro_fn(*args), self.loop)
        future.add_done_callback(wake)
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        return future.result()

    def close(self) -> None:
        """Cancel the loop's remaining tasks, stop it and join the thread (bounded)."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(CLOSE_TIMEOUT_SECONDS)
            except (TimeoutError, concurrent.futures.CancelledError):
                pass  # a task that ignores cancellation must not hang the close
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CLOSE_TIMEOUT_SECONDS)
        if not self._thread.is_alive():
            self.loop.close()

    def __enter__(self) -> AsyncioThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _cancel_all() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_SECONDS)
