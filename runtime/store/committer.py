"""The group committer: every actor's pending writes go to LMDB in one synced transaction.

Writers mark themselves dirty in the open batch; one writer task drains everything dirty
into a single commit, run on a worker thread (inline under ``MockClock``, where a thread would
let virtual time jump). While a commit is in flight the next batch fills, so throughput is
fsyncs/s times writes per commit. What must stay true: a batch's ``done`` is set only after
its commit returned, and a failed part is reported to ``on_failure`` before ``done`` is set.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import trio

from .. import clock
from ..errors import StorageError
from .env import ActorWrites, Environment, MapFull

log = logging.getLogger("roost.store")


class Writer(Protocol):
    """What the committer needs of a storage object with pending writes."""

    @property
    def prefix(self) -> bytes: ...

    def take_writes(self) -> ActorWrites: ...

    def writes_committed(self, batch: Batch) -> None: ...


class Batch:
    """The writes of one group commit and the event that releases their output gates."""

    __slots__ = ("writers", "done", "failed")

    def __init__(self) -> None:
        self.writers: list[Writer] = []
        self.done = trio.Event()
        # id(writer) -> why its writes did not commit
        self.failed: dict[int, Exception] = {}

    def failure_of(self, writer: Writer) -> Exception | None:
        return self.failed.get(id(writer)) if self.failed else None


FailureHandler = Callable[[Writer, Exception], None]
CommitFault = Callable[[ActorWrites | None], None]


class CommitStatistics:
    """Counters for ``/metrics`` and benchmarks."""

    __slots__ = ("commits", "actors", "writes", "failed_commits", "seconds_total", "latency_buckets")

    BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, float("inf"))

    def __init__(self) -> None:
        self.commits = 0
        self.actors = 0
        self.writes = 0
        self.failed_commits = 0
        self.seconds_total = 0.0
        self.latency_buckets = [0] * len(self.BUCKETS_SECONDS)

    def record(self, actors: int, writes: int, seconds: float) -> None:
        self.commits += 1
        self.actors += actors
        self.writes += writes
        self.seconds_total += seconds
        for i, bound in enumerate(self.BUCKETS_SECONDS):
            if seconds <= bound:
                self.latency_buckets[i] += 1
                break


class Committer:
    """Owns the write side of one ``Environment``. Run ``run()`` in the runtime's nursery.

    The committer task wakes when the first writer of a batch marks itself dirty; it runs in
    the scheduling round after that, when every writer that was runnable with it has reached
    an await, so a batch holds every write made so far and writes made without yielding
    never straddle two commits. While a commit is in flight the next batch fills.
    """

    def __init__(self, env: Environment) -> None:
        self._env = env
        # Told of every writer whose writes did not commit (the host resets its actor).
        self.on_failure: FailureHandler = _unhandled_failure
        self.fault: CommitFault | None = None
        self.statistics = CommitStatistics()
        self._open = Batch()
        self._wakeup = trio.Event()
        self._closing = False

    @property
    def open_batch(self) -> Batch:
        return self._open

    def mark_dirty(self, writer: Writer) -> Batch:
        """Add ``writer`` to the open batch and return it. Writers call this once per batch."""
        if self._closing:
            raise StorageError("the runtime is shut down; storage takes no more writes")
        batch = self._open
        batch.writers.append(writer)
        self._wakeup.set()
        return batch

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until ``close()``; the last batch is committed before returning."""
        task_status.started()
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            batch, self._open = self._open, Batch()
            if batch.writers:
                with trio.CancelScope(shield=True):
                    await self._commit(batch)
            if self._closing and not self._open.writers:
                return

    def close(self) -> None:
        """Ask ``run()`` to commit what is pending and return; later writes raise."""
        self._closing = True
        self._wakeup.set()

    async def _commit(self, batch: Batch) -> None:
        work = [writer.take_writes() for writer in batch.writers]
        # Commit latency is real elapsed work, not runtime time: perf_counter is right here.
        started = time.perf_counter()
        try:
            failed_parts = await self._apply(work)
        except StorageError as exc:
            log.error("group commit of %d actors failed: %s", len(work), exc)
            self.statistics.failed_commits += 1
            failed_parts = [(writes, exc) for writes in work]
        else:
            writes = sum(len(w.values) + w.clear + w.move_alarm for w in work)
            self.statistics.record(len(work), writes, time.perf_counter() - started)
        by_writes = {id(writes): exc for writes, exc in failed_parts}
        for writer, writes in zip(batch.writers, work, strict=True):
            exc = by_writes.get(id(writes))
            if exc is None:
                writer.writes_committed(batch)
            else:
                batch.failed[id(writer)] = exc
                self.on_failure(writer, exc)
        batch.done.set()

    async def _apply(self, work: list[ActorWrites]) -> list[tuple[ActorWrites, Exception]]:
        while True:
            try:
                return await self._run_on_writer(work)
            except MapFull:
                # Growing the map is only safe with no transaction open in the process; here,
                # on the trio thread between two synchronous reads, none is.
                if not self._env.grow():
                    raise StorageError("the LMDB map is full at its maximum size (max_map_size)") from None
                log.warning("LMDB map grew to %d bytes", self._env.stats()["map_size_bytes"])

    async def _run_on_writer(self, work: list[ActorWrites]) -> list[tuple[ActorWrites, Exception]]:
        if clock.is_virtual():
            # Under MockClock a thread would let virtual time jump while it runs.
            return self._env.apply_batch(work, self.fault)
        return await trio.to_thread.run_sync(self._env.apply_batch, work, self.fault, abandon_on_cancel=False)


def _unhandled_failure(writer: Writer, exc: Exception) -> None:
    raise StorageError(f"writes of {writer.prefix.hex()} did not commit and nobody was told") from exc
