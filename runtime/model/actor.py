"""What user code sees: ``Actor``, ``ActorContext`` and ``AlarmInfo``.

The actor knows nothing of the host: everything it may do goes through its context, which
forwards to the instance that owns it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..storage import Storage
from .env import Env
from .ids import ActorId
from .request import Request, Response

T = TypeVar("T")

# Methods with a meaning to the runtime; never callable by RPC.
RESERVED_METHODS = frozenset({"fetch", "alarm", "queue", "scheduled", "on_start"})


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    retry_count: int = 0
    is_retry: bool = False


@dataclass(frozen=True, slots=True)
class ScheduledEvent:
    """What ``scheduled(event)`` gets from a cron trigger: the trigger's ``cron`` as written
    in the config, and the slot it runs for, ``scheduled_time``, in ms since the epoch
    (Cloudflare's ``controller.cron`` and ``controller.scheduledTime``)."""

    cron: str
    scheduled_time: int


class EventControl(Protocol):
    """What a context asks of the instance that owns it (``instance.Instance`` is one)."""

    def correlation_id(self) -> str | None: ...

    async def exclusive(self, fn: Callable[[], Awaitable[T]]) -> T: ...

    def wait_until(self, awaitable: Awaitable[Any]) -> None: ...

    def abort(self, reason: str | None) -> None: ...


class ActorContext:
    """The actor's handle on the runtime: its id, its storage, and control of its events."""

    __slots__ = ("id", "storage", "_instance")

    def __init__(self, actor_id: ActorId, storage: Storage, instance: EventControl) -> None:
        self.id = actor_id
        self.storage = storage
        self._instance = instance

    @property
    def correlation_id(self) -> str | None:
        """The correlation id of the event being handled, when it has one."""
        return self._instance.correlation_id()

    async def block_concurrency_while(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``await fn()`` with no other event delivered to this actor until it returns.

        Past 30 seconds the actor is reset and this raises ``ActorResetError``; if ``fn``
        raises, the actor is reset too and the error propagates.
        """
        return await self._instance.exclusive(fn)

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        """Keep ``awaitable`` running after the current event returns (it is not awaited by
        the caller; a failure is logged with the actor's id). The instance is not evicted
        before it finishes."""
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"wait_until takes an awaitable, not {type(awaitable).__name__}")
        self._instance.wait_until(awaitable)

    def abort(self, reason: str | None = None) -> None:
        """Reset this instance now: in-memory state dropped, writes not yet handed to the
        committer discarded, pending callers get ``ActorResetError``. Raises it here too."""
        self._instance.abort(reason)


class Actor:
    """Base class of user actors. Subclasses that override ``__init__`` call
    ``super().__init__(ctx, env)``.

    Public ``async def`` methods are callable by RPC; ``fetch``, ``alarm``, ``queue``,
    ``scheduled`` (a cron trigger, ``async def scheduled(self, event: ScheduledEvent)``) and
    ``on_start`` are the runtime's events.
    """

    def __init__(self, ctx: ActorContext, env: Env) -> None:
        self.ctx = ctx
        self.env = env

    @property
    def id(self) -> ActorId:
        return self.ctx.id

    @property
    def storage(self) -> Storage:
        return self.ctx.storage

    async def on_start(self) -> None:
        """Runs once per instance, before its first event, with no other event delivered."""

    async def fetch(self, request: Request) -> Response | dict | list | str | bytes:
        """An HTTP request routed to this actor. The default answers 404."""
        return Response({"error": f"{type(self).__name__} has no fetch handler", "type": "NotFound"}, 404)

    async def alarm(self, info: AlarmInfo) -> None:
        """The actor's alarm fired. The default does nothing."""
