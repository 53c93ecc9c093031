"""The alarm scheduler: one task per environment that delivers every actor's alarm when it
is due (``Alarms``: one scheduler for each shard of the runtime).

The queue is LMDB's own alarm index (due time | actor), so a pending alarm costs no memory
and finding the next one is one B-tree seek; the task sleeps until the earliest due time or
until a commit brings an earlier one. Only failing alarms waiting for their retry live in
memory (a heap). Must stay true: an alarm is removed only by a write made after its handler
returned (at-least-once); at most one delivery per actor is in progress; nothing polls.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial
from typing import TYPE_CHECKING

import trio

from . import clock
from .durability import keys
from .durability.env import Environment
from .durability.shards import Shards
from .errors import ActorError, CallTimeoutError
from .limits import ALARM_MAX_WALL_TIME_SECONDS
from .model.actor import Actor, AlarmInfo
from .model.ids import NAMESPACE_KEY_BYTES, ActorId
from .observability.correlation import current_correlation_id
from .observability.tracing import Tracing

if TYPE_CHECKING:
    from .model.host import Host, NamespaceInfo

log = logging.getLogger("roost.alarms")

MAX_ALARM_RETRIES = 6
FIRST_RETRY_DELAY_SECONDS = 2.0
RETRY_JITTER_FRACTION = 0.25
MAX_CONCURRENT_DELIVERIES = 1000


class AlarmStatistics:
    __slots__ = ("delivered", "failed", "retried", "dropped")

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.retried = 0
        self.dropped = 0


class Alarms:
    """The schedulers of a runtime's shards, each scanning its own environment's index."""

    def __init__(self, shards: Shards, host: Host) -> None:
        self._shards = shards
        owns = self._owns
        self._by_shard = {shard.index: AlarmScheduler(shard.env, host, owns) for shard in shards}

    def _owns(self, prefix: bytes) -> bool:
        return self._shards.for_prefix(prefix) is not None

    def _of(self, prefix: bytes) -> AlarmScheduler | None:
        shard = self._shards.for_prefix(prefix)
        return None if shard is None else self._by_shard[shard.index]

    def alarm_committed(self, prefix: bytes, when: float | None) -> None:
        scheduler = self._of(prefix)
        if scheduler is not None:  # None: its partition moved away as the commit landed
            scheduler.alarm_committed(prefix, when)

    async def deliver_now(self, prefix: bytes) -> bool:
        scheduler = self._of(prefix)
        assert scheduler is not None, "an alarm of an actor this process does not own"
        return await scheduler.deliver_now(prefix)

    def rescan(self) -> None:
        """Look through every stored alarm again (this process began serving a partition)."""
        for scheduler in self._by_shard.values():
            scheduler.rescan()

    @property
    def pending(self) -> int:
        return sum(scheduler.pending for scheduler in self._by_shard.values())

    @property
    def statistics(self) -> AlarmStatistics:
        total = AlarmStatistics()
        for scheduler in self._by_shard.values():
            for name in AlarmStatistics.__slots__:
                setattr(total, name, getattr(total, name) + getattr(scheduler.statistics, name))
        return total

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for scheduler in self._by_shard.values():
                await nursery.start(scheduler.run)
            task_status.started()


class _HandlerFailed(Exception):
    """``alarm()`` raised or ran out of time; ``rearmed`` says whether it set or deleted the
    alarm first; ``correlation_id`` is that of the event that set the alarm."""

    def __init__(self, cause: BaseException, rearmed: bool, correlation_id: str | None) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.rearmed = rearmed
        self.correlation_id = correlation_id


def retry_delay_seconds(retry_count: int) -> float:
    """Before retry ``retry_count`` (from 1): 2, 4, 8, ... seconds, plus up to 25 % jitter."""
    base = FIRST_RETRY_DELAY_SECONDS * 2 ** (retry_count - 1)
    return base * (1 + random.random() * RETRY_JITTER_FRACTION)


class AlarmScheduler:
    """``owns`` tells the alarms of actors this process serves from those of partitions a
    cluster moved elsewhere, which stay in the index, undelivered here."""

    def __init__(self, store: Environment, host: Host, owns: Callable[[bytes], bool]) -> None:
        self._store = store
        self._host = host
        self._owns = owns
        # The scan resumes at the first index key at or after this one: every entry before it
        # has been dispatched, and was cleared, is being delivered or awaits its retry.
        self._resume_key = b""
        # Actors with a delivery in progress or a retry waiting.
        self._busy: set[bytes] = set()
        self._running = 0
        self._retries: list[tuple[float, bytes, int]] = []
        self._wakeup = trio.Event()
        self._deadline = float("inf")
        self._nursery: trio.Nursery | None = None
        self.statistics = AlarmStatistics()

    @property
    def pending(self) -> int:
        """Alarms stored in the index (due or not, being delivered included)."""
        return self._store.alarm_count()

    # -- told by storage commits -----------------------------------------------------------

    def rescan(self) -> None:
        self._resume_key = b""
        self._wakeup.set()

    def alarm_committed(self, prefix: bytes, when: float | None) -> None:
        """An actor's alarm became ``when`` (None: deleted) in a durable commit."""
        if when is None:
            return
        key = keys.alarm_index_key(when, prefix)
        if key < self._resume_key:
            # Behind the scan (set in the past, or re-armed while its delivery ran).
            self._resume_key = key
            self._wakeup.set()
        elif when < self._deadline:
            self._wakeup.set()

    # -- the task --------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver alarms until cancelled; those due while the process was down come first."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                self._wakeup = trio.Event()
                self._dispatch_due(clock.now())
                self._deadline = self._next_deadline()
                wait = self._deadline - clock.now()
                if wait <= 0 and self._running < MAX_CONCURRENT_DELIVERIES:
                    await trio.lowlevel.checkpoint()
                    continue
                # Past the deadline with every delivery slot taken: a finishing delivery wakes us.
                with trio.move_on_after(wait) if wait > 0 else nullcontext():
                    await self._wakeup.wait()

    def _dispatch_due(self, now: float) -> None:
        while self._retries and self._retries[0][0] <= now and self._running < MAX_CONCURRENT_DELIVERIES:
            _, prefix, retry_count = heapq.heappop(self._retries)
            self._start(prefix, retry_count)
        room = MAX_CONCURRENT_DELIVERIES - self._running
        if room <= 0:
            return
        limit = room + len(self._busy)
        entries = self._store.alarms_due(self._resume_key, now, limit)
        for key, prefix in entries:
            if prefix in self._busy or not self._owns(prefix):
                continue
            if room == 0:
                self._resume_key = key
                return
            self._busy.add(prefix)
            self._start(prefix, 0)
            room -= 1
        if len(entries) == limit:
            self._resume_key = entries[-1][0] + b"\x00"
        else:
            self._resume_key = keys.alarm_index_key(math.nextafter(now, math.inf), b"")

    def _next_deadline(self) -> float:
        deadline = self._store.next_alarm(self._resume_key)
        if deadline is None:
            deadline = float("inf")
        if self._retries:
            deadline = min(deadline, self._retries[0][0])
        return deadline

    def _start(self, prefix: bytes, retry_count: int) -> None:
        assert self._nursery is not None
        self._running += 1
        self._nursery.start_soon(self._deliver, prefix, retry_count)

    # -- one delivery ----------------------------------------------------------------------

    async def deliver_now(self, prefix: bytes) -> bool:
        """Run the actor's alarm now, due or not (``runtime.testing.trigger_alarm``)."""
        if prefix in self._busy:
            return False
        self._busy.add(prefix)
        self._running += 1
        return await self._deliver(prefix, 0, force=True)

    async def _deliver(self, prefix: bytes, retry_count: int, *, force: bool = False) -> bool:
        """Deliver one alarm; schedule its retry or drop it on failure. True if it ran."""
        waiting_retry = False
        try:
            host = self._host
            info = host.namespace_by_key(prefix[:NAMESPACE_KEY_BYTES])
            if info is None:
                log.error("alarm of actor %s: its namespace is not bound in this runtime", prefix.hex())
                return False
            actor_id = ActorId(prefix[NAMESPACE_KEY_BYTES:], info.binding)
            if not self._owns(prefix):
                return False  # its partition moved away since the scan: its new owner delivers it
            handler = partial(_run_alarm, AlarmInfo(retry_count, retry_count > 0), force, host.tracing)
            try:
                ran = await host.instance_for(info, actor_id).run(handler, max_inbox=host.max_inbox)
            except (ActorError, _HandlerFailed) as exc:
                waiting_retry = await self._failed(info, actor_id, retry_count, exc)
                return True
            if ran:
                self.statistics.delivered += 1
            return ran
        finally:
            self._running -= 1
            if not waiting_retry:
                self._busy.discard(prefix)
                # An alarm set while this delivery ran was skipped by the scan: look again.
                live = self._host.live_instance_by_prefix(prefix)
                if live is not None and live.storage.committed_alarm is not None:
                    self.alarm_committed(prefix, live.storage.committed_alarm)
            if self._running == MAX_CONCURRENT_DELIVERIES - 1:
                self._wakeup.set()

    async def _failed(self, info: NamespaceInfo, actor_id: ActorId, retry_count: int, exc: Exception) -> bool:
        """Log a failed delivery and retry or drop it; True if a retry is waiting."""
        self.statistics.failed += 1
        where = f"{info.binding}:{actor_id.hex}"
        fields = {
            "actor": where,
            "retry_count": retry_count,
            "error": str(exc),
            "correlation_id": getattr(exc, "correlation_id", None),
        }
        if isinstance(exc, _HandlerFailed) and exc.rearmed:
            log.warning(
                "alarm of %s raised %s; the alarm it set replaces the retry",
                where,
                exc,
                extra={"event": "alarm.failed", **fields},
            )
            return False
        if retry_count < MAX_ALARM_RETRIES:
            delay = retry_delay_seconds(retry_count + 1)
            log.warning(
                "alarm of %s raised %s; retry %d in %.1f s",
                where,
                exc,
                retry_count + 1,
                delay,
                extra={"event": "alarm.retry", "retry_in_seconds": round(delay, 3), **fields},
            )
            self.statistics.retried += 1
            heapq.heappush(self._retries, (clock.now() + delay, info.key + actor_id.raw, retry_count + 1))
            self._wakeup.set()
            return True
        log.error(
            "alarm of %s failed after %d retries and is dropped: %s",
            where,
            retry_count,
            exc,
            extra={"event": "alarm.dropped", **fields},
        )
        self.statistics.dropped += 1
        await self._drop(info, actor_id)
        return False

    async def _drop(self, info: NamespaceInfo, actor_id: ActorId) -> None:
        async def delete(actor: Actor) -> None:
            await actor.storage.delete_alarm()

        try:
            await self._host.instance_for(info, actor_id).run(delete, max_inbox=self._host.max_inbox)
        except ActorError as exc:
            # The alarm stays in the index and will be delivered again: at-least-once.
            log.error("could not drop the alarm of %s:%s: %s", actor_id.namespace, actor_id.hex, exc)


async def _run_alarm(info: AlarmInfo, force: bool, tracing: Tracing, actor: Actor) -> bool:
    """The alarm event, run through the actor's input gate. False if there was nothing due."""
    storage = actor.storage
    if not storage.alarm_ready(clock.now(), force=force):
        return False
    mark = storage.begin_alarm()
    correlation_id = storage.alarm_correlation_id
    token = current_correlation_id.set(correlation_id)
    try:
        with tracing.span(
            f"alarm {actor.ctx.id.namespace}",
            attributes={"roost.retry_count": info.retry_count},
            links=[storage.alarm_traceparent],
        ):
            with trio.move_on_after(ALARM_MAX_WALL_TIME_SECONDS) as scope:
                await actor.alarm(info)
            if scope.cancelled_caught:
                raise CallTimeoutError(f"alarm() ran past its limit of {ALARM_MAX_WALL_TIME_SECONDS} s")
    except Exception as exc:
        raise _HandlerFailed(exc, storage.end_alarm(mark, succeeded=False), correlation_id) from exc
    finally:
        current_correlation_id.reset(token)
    storage.end_alarm(mark, succeeded=True)
    return True
