"""Helpers for users' own tests of their actors, like Miniflare's test helpers.

They reach into a live runtime through a stub or a namespace; none of them is for
production code paths.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .errors import StorageError
from .model.ids import ActorId
from .model.instance import Instance
from .model.stubs import ActorStub, Namespace

T = TypeVar("T")


def _instance(stub: ActorStub) -> Instance:
    return stub._host.instance_for(stub._info, stub.id)


async def run_in_actor(stub: ActorStub, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``await fn(actor)`` inside the live instance, through its input gate, and return
    the result (not copied). Writes it makes pass the output gate before this returns."""
    instance = _instance(stub)
    return await instance.run(fn, max_inbox=stub._host.max_inbox)


async def trigger_alarm(stub: ActorStub) -> bool:
    """Run the actor's pending alarm now, due or not, and wait for it; False if it has none
    (or its alarm is being delivered already). A failing handler is retried as usual."""
    return await stub._host.deliver_alarm_now(stub._info.key + stub.id.raw)


async def evict(stub: ActorStub) -> None:
    """Drop the actor's instance from memory once its writes are durable (no-op if none).

    The next event builds a new instance, which runs ``on_start`` again."""
    host = stub._host
    instance = host.live_instance(stub._info, stub.id)
    if instance is None:
        return
    await instance.storage.wait_durable()
    if host.live_instance(stub._info, stub.id) is instance:
        host.evict(instance)


async def list_actor_ids(namespace: Namespace) -> list[ActorId]:
    """The ids of the namespace's actors that have stored data (keys or an alarm)."""
    return namespace._host.stored_ids(namespace._info)


def inject_commit_failure(stub_or_namespace: ActorStub | Namespace, *, times: int = 1) -> None:
    """Make the next ``times`` group commits fail: only the stub's actor's part of each, or,
    given a namespace, the whole commit. For testing how failed commits reset actors."""
    host = stub_or_namespace._host
    target = None
    committers = [shard.committer for shard in host.shards]
    if isinstance(stub_or_namespace, ActorStub):
        target = stub_or_namespace._info.key + stub_or_namespace.id.raw
        committers = [host.shards.for_prefix(target).committer]
    remaining = [times]

    def fault(writes: Any) -> None:
        if remaining[0] <= 0:
            return
        if target is None and writes is None:
            remaining[0] -= 1
            raise StorageError("injected commit failure")
        if target is not None and writes is not None and writes.prefix == target:
            remaining[0] -= 1
            raise StorageError("injected commit failure for one actor")

    for committer in committers:
        committer.fault = fault


__all__ = ["evict", "inject_commit_failure", "list_actor_ids", "run_in_actor", "trigger_alarm"]
