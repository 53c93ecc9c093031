"""Per-key idempotency: ``execute_idempotent`` runs an operation at most once per key.

One ``IdempotencyActor`` per key holds the key's record: running (with a lease) or done
(with the result, until its TTL). The operation itself runs in the caller; the actor only
decides who runs it. A caller that finds the key running waits inside the actor for the
outcome (concurrent callers get the first one's result, ``cached=True``); a failure clears
the record so a later call can run the operation again; a runner that vanishes (crash,
cancelled) holds the key only until its lease ends, after which the next caller runs it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from runtime import Actor, AlarmInfo, DataCloneError, Env, now

from .names import IDEMPOTENCY_BINDING

RECORD_KEY = "record"
DEFAULT_TTL_SECONDS = 86_400
DEFAULT_LEASE_SECONDS = 60.0


class IdempotencyKeyReuseError(ValueError):
    """The key was used before for a request with another fingerprint (IETF
    Idempotency-Key draft: the server answers 422 rather than replay another's result)."""

    http_status = 422


@dataclass(frozen=True, slots=True)
class IdempotentResult:
    result: Any
    cached: bool


class IdempotencyActor(Actor):
    async def on_start(self) -> None:
        # Callers waiting for the current runner, woken when its outcome is known.
        self.changed = trio.Event()

    async def claim(
        self, fingerprint: str | None, lease_seconds: float, ttl_seconds: float
    ) -> dict[str, Any]:
        """``{"done": result}`` if the operation already ran, else ``{"token": t}``: the caller
        now holds the lease and must ``complete`` or ``abandon``. Should it vanish instead,
        the record expires ``ttl_seconds`` after its lease."""
        while True:
            record = await self.storage.get(RECORD_KEY)
            if record is not None and record["fingerprint"] != fingerprint:
                raise IdempotencyKeyReuseError(
                    f"idempotency key {self.id.name!r} was used with another request fingerprint"
                )
            moment = now()
            if record is None or (record["state"] == "running" and record["lease_until"] <= moment):
                token = uuid.uuid4().hex
                await self.storage.put(
                    RECORD_KEY,
                    {
                        "state": "running",
                        "token": token,
                        "fingerprint": fingerprint,
                        "lease_until": moment + lease_seconds,
                    },
                )
                await self.storage.set_alarm(moment + lease_seconds + ttl_seconds)
                return {"token": token}
            if record["state"] == "done":
                return {"done": record["result"]}
            # Someone else runs it: wait for their outcome, or for their lease to end.
            with trio.move_on_at(trio.current_time() + (record["lease_until"] - moment)):
                await self.changed.wait()

    async def complete(self, token: str, result: Any, ttl_seconds: float) -> bool:
        """Store the runner's result until ``ttl_seconds`` from now; False if its lease was lost."""
        record = await self.storage.get(RECORD_KEY)
        if record is None or record.get("token") != token:
            return False
        moment = now()
        await self.storage.put(
            RECORD_KEY,
            {"state": "done", "result": result, "fingerprint": record["fingerprint"], "done_at": moment},
        )
        await self.storage.set_alarm(moment + ttl_seconds)
        self._wake()
        return True

    async def abandon(self, token: str) -> None:
        """The runner failed: clear the record so that a later call runs the operation."""
        record = await self.storage.get(RECORD_KEY)
        if record is not None and record.get("token") == token:
            await self.storage.delete_all()
        self._wake()

    async def alarm(self, info: AlarmInfo) -> None:
        await self.storage.delete_all()  # the record's TTL ended (a result's, or a vanished runner's)

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


async def execute_idempotent(
    env: Env,
    key: str,
    operation: Callable[[], Awaitable[Any]],
    ttl_seconds: float = DEFAULT_TTL_SECONDS,
    *,
    fingerprint: str | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> IdempotentResult:
    """Run ``await operation()`` at most once per ``key`` while its record lives.

    Returns ``IdempotentResult(result, cached)``: ``cached`` is True when another call's
    result is replayed. If the operation raises, the record is cleared and the error
    propagates. The result must be copyable (msgpack). A different ``fingerprint`` for a key
    raises ``IdempotencyKeyReuseError``. A runner that does not finish within
    ``lease_seconds`` loses the key to the next caller."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"an idempotency key is a non-empty str, not {key!r}")
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, (int, float)) or not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be a positive number, not {ttl_seconds!r}")
    stub = env[IDEMPOTENCY_BINDING].get_by_name(key)
    claim = await stub.claim(fingerprint, lease_seconds, ttl_seconds)
    if "done" in claim:
        return IdempotentResult(claim["done"], cached=True)
    token = claim["token"]
    try:
        result = await operation()
    except BaseException:
        with trio.CancelScope(shield=True):
            await stub.abandon(token)
        raise
    try:
        await stub.complete(token, result, ttl_seconds)
    except DataCloneError:
        await stub.abandon(token)
        raise
    return IdempotentResult(result, cached=False)
