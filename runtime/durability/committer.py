"""The group committer: every actor's pending writes go to LMDB in one synced transaction.

Writers mark themselves dirty in the open batch. A batch goes to the writer thread as soon as
the writer is idle and either the committer task runs (woken by the first dirty writer, it
runs at the end of that scheduling round) or an event about to wait for durability finds a
large enough batch (``start_commit``). While one commit is on the thread the next batch
fills, so throughput is fsyncs/s times writes per commit, and the event loop keeps running
actors while the disk syncs. Under ``MockClock`` commits run inline in the
committer task, where a thread would let virtual time jump. What must stay true: a batch is
taken only while every task is at an await (so writes made without yielding never straddle
two commits), a batch's ``done`` is set only after its commit returned, and a failed part is
reported to ``on_failure`` before ``done`` is set.

In a cluster (``runtime.cluster``) a ``replicator`` first appends each batch's writes to the
partitions' replicated logs; only the writes it accepted are applied to LMDB, and ``done`` is
set after both. One batch is replicated or applied at a time, so a partition never has two
appends in flight.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import trio

from .. import clock
from ..errors import StorageError
from .env import ActorWrites, Environment, MapFull
from .replicated import Replicated, Replicator

log = logging.getLogger("roost.store")

# Python's thread switch interval while a runtime commits on a writer thread.
WRITER_SWITCH_INTERVAL_SECONDS = 0.0005
# The longest the trio thread waits for the writer thread to fill a transaction.
MAX_FILL_WAIT_SECONDS = 1.0
# How many actors' writes an event waiting for durability commits without waiting for the
# end of the scheduling round (measured over HTTP, 64 connections to one actor: 420 req/s
# with 8, 346 when every waiting event started a commit).
EARLY_COMMIT_WRITERS = 8


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


class _Commit:
    """A batch on its way through the writer thread: set there, read on the trio thread."""

    __slots__ = ("batch", "work", "finished", "failed_parts", "replicated", "error", "seconds")

    def __init__(self, batch: Batch, work: list[ActorWrites]) -> None:
        self.batch = batch
        self.work = work
        self.finished = False
        self.failed_parts: list[tuple[ActorWrites, Exception]] = []
        self.replicated: Replicated | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0

    @property
    def clean(self) -> bool:
        """Finished, and every actor's part committed."""
        return self.finished and self.error is None and not self.failed_parts


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

    The committer task wakes when the first writer of a batch marks itself dirty, and runs
    in the scheduling round after that, when every writer that was runnable with it has
    reached an await. It also wakes when the writer thread finishes a commit.
    """

    def __init__(self, env: Environment) -> None:
        self._env = env
        # Told of every writer whose writes did not commit (the host resets its actor).
        self.on_failure: FailureHandler = _unhandled_failure
        self.fault: CommitFault | None = None
        # Set before ``run()`` in a cluster: appends every batch to the replicated log first.
        self.replicator: Replicator | None = None
        self.statistics = CommitStatistics()
        self._open = Batch()
        self._running: _Commit | None = None
        self._wakeup = trio.Event()
        self._closing = False
        self._inline = True
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None

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

    def start_commit(self) -> None:
        """An event is about to wait for durability: complete the commit on the writer if it
        finished cleanly (one that failed is left to the committer task), and start the next
        now if the writer is idle and at least ``EARLY_COMMIT_WRITERS`` actors wait for it.

        The commit then syncs while the rest of this scheduling round runs. A smaller batch is
        left to the committer task at the end of the round, so the round's writes share one
        commit: each commit costs the trio thread its handoff to the writer thread.

        Only call this right before an await: then every task is at an await, so the batch
        holds no half of a run of writes made without yielding.
        """
        if self._inline or self._token is None:
            return
        running = self._running
        if running is not None:
            if not running.clean:
                return
            self._running = None
            self._complete(running, running.failed_parts)
        if len(self._open.writers) >= EARLY_COMMIT_WRITERS:
            self._start()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until ``close()``; the last batch is committed before returning."""
        self._inline = clock.is_virtual()
        self._token = trio.lowlevel.current_trio_token()
        if not self._inline:
            _switch_interval.lower()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await self._wakeup.wait()
                    self._wakeup = trio.Event()
                    self._advance()
                    if self._closing and self._running is None and not self._open.writers:
                        return
        finally:
            self._nursery = None
            # Never leave a write transaction on the thread behind: the environment closes next.
            with trio.CancelScope(shield=True):
                while self._running is not None and not self._running.finished:
                    await self._wakeup.wait()
                    self._wakeup = trio.Event()
            self._token = None
            if not self._inline:
                _switch_interval.restore()

    def close(self) -> None:
        """Ask ``run()`` to commit what is pending and return; later writes raise."""
        self._closing = True
        self._wakeup.set()

    # -- the pipeline ----------------------------------------------------------------------

    def _advance(self) -> None:
        """Complete the commit on the writer if it finished, then start the next batch."""
        while True:
            running = self._running
            if running is not None:
                if not running.finished:
                    return
                self._running = None
                self._finish(running)
                continue
            if not self._open.writers:
                return
            self._start()

    def _start(self) -> None:
        batch, self._open = self._open, Batch()
        commit = _Commit(batch, [writer.take_writes() for writer in batch.writers])
        if self.replicator is None:
            self._submit(commit)
            return
        assert self._nursery is not None, "Committer.run is not running"
        self._running = commit
        self._nursery.start_soon(self._replicate, self.replicator, commit)

    async def _replicate(self, replicator: Replicator, commit: _Commit) -> None:
        """Append the batch to the log, then apply what was accepted (shielded: a commit
        that started always ends, so its writers always learn their outcome)."""
        with trio.CancelScope(shield=True):
            try:
                commit.replicated = await replicator.replicate(commit.work)
            except Exception as exc:
                log.exception("replicating a group commit failed")
                commit.replicated = Replicated(refused=[(writes, StorageError(str(exc))) for writes in commit.work])
        self._submit(commit)

    def _submit(self, commit: _Commit) -> None:
        if self._inline:
            self._running = commit
            self._apply(commit, None)
            return
        # The trio thread waits while the writer thread fills the transaction, which takes
        # little time but a GIL round trip per put (py-lmdb releases the GIL around each), and
        # goes on running actors once the commit is syncing, which takes one. Beside a thread
        # busy in Python each round trip waits for a switch interval: measured, filling 32
        # actors' writes took 0.15 ms alone and 6 ms (74 ms at the default interval) beside
        # one. The wait is bounded only so that a writer stuck on LMDB's lock (another process
        # writing the same data directory) cannot stop the event loop.
        filled = threading.Event()
        trio.lowlevel.start_thread_soon(lambda: self._apply(commit, filled.set), self._applied)
        self._running = commit
        filled.wait(MAX_FILL_WAIT_SECONDS)

    def _apply(self, commit: _Commit, filled: Callable[[], None] | None) -> None:
        """On the writer thread (inline under ``MockClock``): the whole LMDB transaction."""
        # Commit latency is real elapsed work, not runtime time: perf_counter is right here.
        started = time.perf_counter()
        replicated = commit.replicated
        try:
            if replicated is None:
                commit.failed_parts = self._env.apply_batch(commit.work, self.fault, filled)
            else:
                refused = {id(writes) for writes, _ in replicated.refused}
                accepted = [writes for writes in commit.work if id(writes) not in refused]
                # Whole or nothing, with the log positions: a failed part fails the commit.
                self._env.apply_batch(accepted, self.fault, filled, meta=replicated.meta)
                commit.failed_parts = list(replicated.refused)
        except BaseException as exc:
            commit.error = exc
        finally:
            if filled is not None:
                filled()
        commit.seconds = time.perf_counter() - started
        commit.finished = True

    def _applied(self, _: Any) -> None:
        """On the writer thread, after ``_apply``: wake the committer task."""
        token = self._token
        if token is not None:
            # RunFinishedError: the runtime closed right after the commit (run() waited for it).
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._wake)

    def _wake(self) -> None:
        self._wakeup.set()

    def _finish(self, commit: _Commit) -> None:
        """A finished commit: grow the map and retry it, or report it to its writers."""
        error = commit.error
        if error is None:
            self._complete(commit, commit.failed_parts)
            return
        if isinstance(error, MapFull):
            # Growing the map is only safe with no transaction open in the process; here,
            # on the trio thread between two synchronous reads and with the writer idle, none is.
            if self._env.grow():
                log.warning("LMDB map grew to %d bytes", self._env.stats()["map_size_bytes"])
                commit.finished, commit.error = False, None
                self._submit(commit)
                return
            error = StorageError("the LMDB map is full at its maximum size (max_map_size)")
        if not isinstance(error, StorageError):
            raise error
        log.error("group commit of %d actors failed: %s", len(commit.work), error)
        self.statistics.failed_commits += 1
        replicated = commit.replicated
        if replicated is not None and self.replicator is not None:
            refused = {id(writes) for writes, _ in replicated.refused}
            self.replicator.not_applied([writes for writes in commit.work if id(writes) not in refused])
        self._complete(commit, [(writes, error) for writes in commit.work], record=False)

    def _complete(
        self,
        commit: _Commit,
        failed_parts: list[tuple[ActorWrites, Exception]],
        *,
        record: bool = True,
    ) -> None:
        batch, work = commit.batch, commit.work
        if record:
            writes = sum(len(w.values) + w.clear + w.move_alarm for w in work)
            self.statistics.record(len(work), writes, commit.seconds)
        by_writes = {id(writes): exc for writes, exc in failed_parts}
        for writer, writes in zip(batch.writers, work, strict=True):
            exc = by_writes.get(id(writes))
            if exc is None:
                writer.writes_committed(batch)
            else:
                batch.failed[id(writer)] = exc
                self.on_failure(writer, exc)
        batch.done.set()


class _SwitchInterval:
    """Python's switch interval, lowered while any runtime commits on a writer thread.

    The writer thread needs the GIL back the moment a commit's sync returns, while the trio
    thread is busy running actors; Python's default 5 ms interval would add most of that to
    every commit (measured: about 12,000 increments/s with 64 callers at 5 ms, 13,500 to
    15,500 at 0.5 ms). Runtimes may open and close in any order, also in several threads:
    the value from before the first is restored when the last closes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runtimes = 0
        self._saved = 0.0

    def lower(self) -> None:
        with self._lock:
            if self._runtimes == 0:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, WRITER_SWITCH_INTERVAL_SECONDS))
            self._runtimes += 1

    def restore(self) -> None:
        with self._lock:
            self._runtimes -= 1
            if self._runtimes == 0:
                sys.setswitchinterval(self._saved)


_switch_interval = _SwitchInterval()


def _unhandled_failure(writer: Writer, exc: Exception) -> None:
    raise StorageError(f"writes of {writer.prefix.hex()} did not commit and nobody was told") from exc
