"""One live actor instance: its events, its exclusive sections, its reset.

Events run in the task that delivers them (a caller's task for RPC), so a call to an idle
actor costs no task switch. Must stay true: an event's outcome (result or error) is released
only after every write made before it is durable (the output gate), and once an instance is
reset nothing it does afterwards reaches storage or a caller as success.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import suppress
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

import trio

from ..errors import ActorResetError, OverloadedError
from ..limits import BLOCK_CONCURRENCY_TIMEOUT_SECONDS
from ..observability.correlation import current_correlation_id
from ..storage import Storage
from .actor import Actor, ActorContext
from .env import Env
from .gates import InputGate
from .ids import ActorId

T = TypeVar("T")
log = logging.getLogger("roost.actor")

# The instance whose event the current task is running: outgoing calls pass its output gate.
current_instance: ContextVar[Instance | None] = ContextVar("roost_current_instance", default=None)


class InstanceHost(Protocol):
    """What an instance asks of the host that holds it (``host.Host`` is one)."""

    env: Env | None

    def touch(self, instance: Instance) -> None: ...

    def reset(self, instance: Instance, reason: str) -> None: ...

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None: ...


class Instance:
    __slots__ = (
        "host",
        "prefix",
        "actor",
        "storage",
        "gate",
        "active",
        "background",
        "reset_reason",
        "last_used",
    )

    def __init__(
        self,
        host: InstanceHost,
        prefix: bytes,
        actor_id: ActorId,
        cls: type[Actor],
        storage: Storage,
        *,
        starting: bool,
    ) -> None:
        self.host = host
        self.prefix = prefix
        self.storage = storage
        self.gate = InputGate(closed=starting)
        self.active = 0
        self.background = 0
        self.reset_reason: str | None = None
        self.last_used = 0.0
        self.actor = cls(ActorContext(actor_id, storage, self), host.env)

    @property
    def id(self) -> ActorId:
        return self.actor.ctx.id

    @property
    def is_idle(self) -> bool:
        return not self.active and not self.background and self.gate.is_open

    def learn_name(self, name: str) -> None:
        """Reached by name after being built from its bare id: keep the name from now on."""
        self.actor.ctx.id = ActorId(self.id.raw, self.id.namespace, name)
        self.storage.learn_name(name)

    def describe(self) -> str:
        return f"{self.id.namespace}:{self.id.hex}"

    # -- events ----------------------------------------------------------------------------

    async def run(self, handler: Callable[[Actor], Awaitable[T]], *, max_inbox: int) -> T:
        """Deliver one event: wait for the input gate, run ``handler``, pass the output gate."""
        if self.active >= max_inbox:
            message = f"actor {self.describe()} has {self.active} events pending; the limit is {max_inbox}"
            log.warning(
                "%s",
                message,
                extra={
                    "event": "actor.overloaded",
                    "actor": self.describe(),
                    "correlation_id": current_correlation_id.get(),
                },
            )
            raise OverloadedError(message)
        self.active += 1
        try:
            gate = self.gate
            if not gate.is_open:
                await gate.enter()
            elif self.reset_reason is not None:
                raise ActorResetError(self.reset_reason)
            token = current_instance.set(self)
            try:
                result = await handler(self.actor)
            except Exception:
                # The event's own error is its outcome, released after the writes made before
                # it are durable; a reset meanwhile does not replace it.
                with suppress(ActorResetError):
                    await self.output_gate()
                raise
            finally:
                current_instance.reset(token)
            await self.output_gate()
            return result
        finally:
            self.active -= 1
            self.host.touch(self)

    async def output_gate(self) -> None:
        """Wait until every write made so far is durable; ``ActorResetError`` if reset."""
        await self.storage.wait_durable()
        if self.reset_reason is not None:
            raise ActorResetError(self.reset_reason)

    async def start(self, settling: trio.Event | None, run_on_start: bool) -> None:
        """Wait for a previous instance's last commit, then run ``on_start``, exclusively."""
        try:
            if settling is not None:
                await settling.wait()
            if run_on_start:
                with trio.move_on_after(BLOCK_CONCURRENCY_TIMEOUT_SECONDS) as scope:
                    token = current_instance.set(self)
                    try:
                        await self.actor.on_start()
                    finally:
                        current_instance.reset(token)
                    await self.storage.wait_durable()
                if scope.cancelled_caught:
                    raise TimeoutError(f"on_start took more than {BLOCK_CONCURRENCY_TIMEOUT_SECONDS} s")
        except Exception as exc:
            self.host.reset(self, f"on_start raised {type(exc).__name__}: {exc}")
        else:
            self.gate.open()
        finally:
            self.host.touch(self)

    async def exclusive(self, fn: Callable[[], Awaitable[T]]) -> T:
        self.gate.close()
        try:
            with trio.move_on_after(BLOCK_CONCURRENCY_TIMEOUT_SECONDS) as scope:
                result = await fn()
        except ActorResetError:
            raise
        except Exception as exc:
            self.host.reset(self, f"block_concurrency_while callback raised {type(exc).__name__}: {exc}")
            raise
        finally:
            self.gate.open()
        if scope.cancelled_caught:
            reason = f"block_concurrency_while ran past {BLOCK_CONCURRENCY_TIMEOUT_SECONDS} s"
            self.host.reset(self, reason)
            raise ActorResetError(reason)
        return result

    def wait_until(self, awaitable: Awaitable[Any]) -> None:
        self.background += 1
        self.host.spawn(self._background, awaitable)

    async def _background(self, awaitable: Awaitable[Any]) -> None:
        try:
            await awaitable
            await self.output_gate()
        except ActorResetError as exc:
            if self.reset_reason is None:  # another actor's reset: this task failed
                log.exception("wait_until task of actor %s failed", self.describe())
            else:  # the reset was logged; what the task did after it was discarded
                log.warning(
                    "wait_until task of actor %s ended by its actor's reset (%s): %s",
                    self.describe(),
                    self.reset_reason,
                    exc,
                )
        except Exception:
            log.exception("wait_until task of actor %s failed", self.describe())
        finally:
            self.background -= 1
            self.host.touch(self)

    def abort(self, reason: str | None) -> None:
        message = f"actor aborted: {reason}" if reason else "actor aborted"
        self.host.reset(self, message)
        raise ActorResetError(message)

    def correlation_id(self) -> str | None:
        return current_correlation_id.get()

    # -- reset -----------------------------------------------------------------------------

    def mark_reset(self, reason: str) -> None:
        """Drop this instance: unflushed writes discarded, every pending event fails."""
        self.reset_reason = reason
        self.storage.close()
        self.gate.fail(ActorResetError(reason))
