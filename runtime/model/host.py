"""The instance table: at most one live instance per actor, built on its first event.

The host builds instances, resets them (a failed commit, abort, a timeout), and evicts the
idle ones. Eviction keeps instances in least-recently-used order and one task sleeps until
the oldest one's deadline: no timer per actor, no polling. Must stay true: a new instance of
an actor never reads storage while the previous instance's last commit is still in flight.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ..durability.committer import Writer
from ..durability.shards import Shards
from ..errors import ActorResetError
from ..observability.correlation import current_correlation_id
from ..observability.tracing import Tracing
from ..storage import Storage
from .actor import Actor
from .env import Env
from .ids import NAMESPACE_KEY_BYTES, ActorId, IdScheme, namespace_key
from .instance import Instance

log = logging.getLogger("roost.host")


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    binding: str
    cls: type[Actor]
    scheme: IdScheme
    key: bytes
    has_on_start: bool


class Forwarder(Protocol):
    """Runs an event on the worker process that owns the actor (``runtime.placement``)."""

    async def forward(self, prefix: bytes, binding: str, actor_id: ActorId, call: tuple) -> Any: ...


class HostStatistics:
    __slots__ = ("events", "instances_started", "evictions", "resets")

    def __init__(self) -> None:
        self.events = 0
        self.instances_started = 0
        self.evictions = 0
        self.resets = 0


class Host:
    """Owns every live instance of one runtime (of the partitions in ``shards``)."""

    def __init__(self, shards: Shards, *, idle_timeout_seconds: float, max_inbox: int) -> None:
        self.shards = shards
        self.idle_timeout_seconds = idle_timeout_seconds
        self.max_inbox = max_inbox
        self.namespaces: dict[str, NamespaceInfo] = {}
        self._by_key: dict[bytes, NamespaceInfo] = {}
        # Told of every committed alarm change (the alarm scheduler).
        self.on_alarm_committed: Callable[[bytes, float | None], None] | None = None
        # Runs the pending alarm of an actor (by key prefix) now: ``runtime.testing``'s way in.
        self.deliver_alarm_now: Callable[[bytes], Awaitable[bool]] | None = None
        # Where events go for actors of partitions another process owns (None: all are here).
        self.forwarder: Forwarder | None = None
        # Spans of events (on when a tracer provider was set before the runtime opened).
        self.tracing = Tracing(enabled=False)
        self.env: Env | None = None
        self._instances: dict[bytes, Instance] = {}
        # prefix -> done event of the last commit of an instance that is gone
        self._settling: dict[bytes, trio.Event] = {}
        self._idle_order: OrderedDict[bytes, Instance] = OrderedDict()
        self._evictor_wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._closed_reason: str | None = None
        self.statistics = HostStatistics()

    def add_namespace(self, binding: str, cls: type[Actor]) -> NamespaceInfo:
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(f"binding {binding!r}: {cls!r} is not an Actor subclass")
        info = NamespaceInfo(
            binding, cls, IdScheme(binding), namespace_key(binding), cls.on_start is not Actor.on_start
        )
        self.namespaces[binding] = info
        self._by_key[info.key] = info
        return info

    def namespace_by_key(self, key: bytes) -> NamespaceInfo | None:
        return self._by_key.get(key)

    @property
    def live_instances(self) -> int:
        return len(self._instances)

    def live_instances_by_binding(self) -> dict[str, int]:
        """Instances in memory per binding (every binding, 0 for one with none)."""
        counts = {info.binding: 0 for info in self._by_key.values()}
        for prefix in self._instances:
            counts[self._by_key[prefix[:NAMESPACE_KEY_BYTES]].binding] += 1
        return counts

    # -- instances -------------------------------------------------------------------------

    def instance_for(self, info: NamespaceInfo, actor_id: ActorId) -> Instance:
        """The live instance of ``actor_id``, built (without yielding) if there is none."""
        prefix = info.key + actor_id.raw
        instance = self._instances.get(prefix)
        if instance is not None:
            if actor_id.name is not None and instance.id.name is None:
                instance.learn_name(actor_id.name)
            return instance
        if self._closed_reason is not None:
            raise ActorResetError(self._closed_reason)
        shard = self.shards.for_prefix(prefix)
        if shard is None:
            raise RuntimeError(f"actor {info.binding}:{actor_id.hex} lives in a partition another worker owns")
        record = shard.env.get_record(prefix)
        name = actor_id.name
        if name is None and record is not None:
            name = record.get("name")
        if name != actor_id.name:
            actor_id = ActorId(actor_id.raw, info.binding, name)
        storage = Storage(
            shard.env,
            shard.committer,
            prefix,
            name=name,
            record=record,
            on_alarm_committed=self.on_alarm_committed,
        )
        settling = self._settling.pop(prefix, None)
        if settling is not None and settling.is_set():
            settling = None
        starting = settling is not None or info.has_on_start
        instance = Instance(self, prefix, actor_id, info.cls, storage, starting=starting)
        self._instances[prefix] = instance
        self.statistics.instances_started += 1
        if starting:
            self.spawn(instance.start, settling, info.has_on_start)
        return instance

    def touch(self, instance: Instance) -> None:
        """An event of ``instance`` ended: it goes to the young end of the eviction order."""
        if self._instances.get(instance.prefix) is not instance:
            return
        order = self._idle_order
        order[instance.prefix] = instance
        order.move_to_end(instance.prefix)
        instance.last_used = trio.current_time()
        if len(order) == 1:
            self._evictor_wakeup.set()

    def reset(self, instance: Instance, reason: str) -> None:
        """Drop ``instance``: its pending events fail with ``ActorResetError(reason)``."""
        if instance.reset_reason is not None:
            return
        log.warning(
            "actor %s reset: %s",
            instance.describe(),
            reason,
            extra={
                "event": "actor.reset",
                "actor": instance.describe(),
                "reason": reason,
                "correlation_id": current_correlation_id.get(),
            },
        )
        self.statistics.resets += 1
        self._forget(instance)
        instance.mark_reset(reason)

    def reset_where(self, matches: Callable[[bytes], bool], reason: str) -> int:
        """Reset every live instance whose prefix ``matches`` (a partition that moved away);
        returns how many."""
        found = [instance for prefix, instance in self._instances.items() if matches(prefix)]
        for instance in found:
            self.reset(instance, reason)
        return len(found)

    def busy_where(self, matches: Callable[[bytes], bool]) -> bool:
        """Whether a live instance whose prefix ``matches`` has an event running or waiting."""
        return any(not instance.is_idle for prefix, instance in self._instances.items() if matches(prefix))

    def on_commit_failure(self, writer: Writer, exc: Exception) -> None:
        instance = self._instances.get(writer.prefix)
        if instance is not None and instance.storage is writer:
            self.reset(instance, f"commit failed: {exc}")

    def evict(self, instance: Instance) -> None:
        """Drop an idle instance from memory; its next event builds a new one."""
        self.statistics.evictions += 1
        self._forget(instance)
        instance.storage.close()

    def _forget(self, instance: Instance) -> None:
        prefix = instance.prefix
        if self._instances.get(prefix) is instance:
            del self._instances[prefix]
            self._idle_order.pop(prefix, None)
        batch = instance.storage.last_batch
        if batch is not None and not batch.done.is_set():
            self._settling[prefix] = batch.done

    def live_instance(self, info: NamespaceInfo, actor_id: ActorId) -> Instance | None:
        return self._instances.get(info.key + actor_id.raw)

    def live_instance_by_prefix(self, prefix: bytes) -> Instance | None:
        return self._instances.get(prefix)

    def stored_ids(self, info: NamespaceInfo) -> list[ActorId]:
        """The actors of ``info`` with stored data, in this process's partitions."""
        return [
            ActorId(raw, info.binding, record.get("name"))
            for shard in self.shards
            for raw, record in shard.env.records(info.key)
        ]

    # -- background work -------------------------------------------------------------------

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError("the host is not running")
        self._nursery.start_soon(fn, *args)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host background tasks (on_start, wait_until) and evict idle instances, until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await self._evict_idle()

    async def _evict_idle(self) -> None:
        order = self._idle_order
        while True:
            if not order:
                self._evictor_wakeup = trio.Event()
                await self._evictor_wakeup.wait()
                continue
            prefix, instance = next(iter(order.items()))
            deadline = instance.last_used + self.idle_timeout_seconds
            wait = deadline - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
                continue
            del order[prefix]
            if instance.is_idle and not instance.storage.has_unflushed_writes:
                self.evict(instance)
            # A busy instance returns to the order when its work ends (``touch``).

    def close(self, reason: str) -> None:
        """Refuse new instances from now on (events to live ones still run)."""
        self._closed_reason = reason

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None
