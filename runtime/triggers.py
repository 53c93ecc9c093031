"""Cron triggers at run time: one ``CronActor`` per ``[[triggers.crons]]`` table keeps the
trigger's next slot and one alarm for it, and at each slot calls ``scheduled(event)`` on the
trigger's actor.

The cron actor's name is the trigger's identity (expression, binding, name), so each trigger
has its own durable state and alarm, in whichever partition (worker) its id falls, and an
edited trigger is another trigger. Must stay true: the slot is stored before the call and
moved on only after the call returned, so a failure retries the same slot (as alarms retry)
and a restart never repeats a slot that completed; a late alarm (the server was down) runs
the latest slot due once, not every slot missed; a trigger gone from the config retires at
its next slot; a slot given up after the last retry leaves the trigger armed for the next.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone

import trio

from . import clock
from .alarms import MAX_ALARM_RETRIES
from .config import CronTrigger
from .errors import WorkerUnavailableError
from .model.actor import Actor, AlarmInfo, ScheduledEvent
from .model.ids import ActorId
from .model.stubs import ActorStub, Namespace
from .observability.correlation import current_correlation_id

log = logging.getLogger("roost.triggers")

CRON_BINDING = "__CRON"  # the namespace of the cron actors (not reachable over HTTP)
TRIGGERS_BINDING = "__CRON_TRIGGERS"  # the ``CronTriggers`` of the runtime, in ``env``
SLOT_KEY = "slot"  # epoch seconds of the slot the alarm is for, or that is being run
ARM_RETRY_SECONDS = 1.0


class CronTriggers:
    """The configured triggers by identity, and where their actors are: what each cron
    actor reads (through ``env``) to find its trigger, or to learn it is gone."""

    def __init__(self, triggers: tuple[CronTrigger, ...], namespaces: Mapping[str, Namespace]) -> None:
        self._by_identity = {trigger.identity: trigger for trigger in triggers}
        self._namespaces = namespaces

    def __len__(self) -> int:
        return len(self._by_identity)

    def get(self, identity: str | None) -> CronTrigger | None:
        return self._by_identity.get(identity) if identity is not None else None

    def target(self, trigger: CronTrigger) -> ActorStub:
        return self._namespaces[trigger.binding].get_by_name(trigger.name)

    async def arm(self, crons: Namespace, owned: Callable[[ActorId], bool]) -> None:
        """Give each trigger whose cron actor this process owns its first slot, if it has
        none yet (run at every start; a trigger that has one keeps it). A cluster's node
        arms every trigger through its owner, waiting while no node serves it yet."""
        for identity in self._by_identity:
            actor_id = crons.id_from_name(identity)
            if owned(actor_id):
                while True:
                    try:
                        await crons.get(actor_id).arm()
                        break
                    except WorkerUnavailableError:
                        await trio.sleep(ARM_RETRY_SECONDS)


class CronActor(Actor):
    """One cron trigger: its next slot under ``SLOT_KEY`` and its alarm at that slot."""

    async def arm(self) -> float | None:
        """The slot the trigger waits for; the first one after now if it had none."""
        slot = await self.storage.get(SLOT_KEY)
        trigger = self._triggers.get(self.id.name)
        if slot is None and trigger is not None:
            slot = await self._arm_after(trigger, clock.now())
        return slot

    async def alarm(self, info: AlarmInfo) -> None:
        trigger = self._triggers.get(self.id.name)
        if trigger is None:
            log.info(
                "cron trigger %s is no longer configured: retired",
                _describe(self.id.name),
                extra={"event": "cron.retired", "trigger": self.id.name},
            )
            await self.storage.delete_all()
            return
        slot = await self.storage.get(SLOT_KEY)
        due = trigger.cron.latest_at(clock.now())
        if slot is None or due is None:
            await self._arm_after(trigger, clock.now())
            return
        if due > slot:
            if info.is_retry:
                # A later slot came due while this one was being retried: it replaces this
                # one, with retries of its own (a fresh alarm, now).
                log.warning(
                    "cron trigger %s: slot %s given up after %d retries, slot %s is due",
                    _describe(self.id.name),
                    _utc(slot),
                    info.retry_count,
                    _utc(due),
                    extra={"event": "cron.slot_given_up", "trigger": self.id.name},
                )
                await self.storage.put(SLOT_KEY, due)
                await self.storage.set_alarm(clock.now())
                return
            # The alarm is late (the server was down): the latest slot due runs, once.
            log.info(
                "cron trigger %s: slots from %s to %s were missed; running the latest once",
                _describe(self.id.name),
                _utc(slot),
                _utc(due),
                extra={"event": "cron.caught_up", "trigger": self.id.name},
            )
            slot = due
            await self.storage.put(SLOT_KEY, slot)
        event = ScheduledEvent(trigger.cron.text, round(slot * 1000))
        token = current_correlation_id.set(uuid.uuid4().hex)
        try:
            await self._triggers.target(trigger).scheduled(event)
        except Exception:
            if info.retry_count >= MAX_ALARM_RETRIES:
                # Where an alarm would be dropped, the trigger goes on to its next slot.
                next_slot = await self._arm_after(trigger, slot)
                log.error(
                    "cron trigger %s: slot %s failed after %d retries and is given up; next slot %s",
                    _describe(self.id.name),
                    _utc(slot),
                    info.retry_count,
                    _utc(next_slot),
                    extra={"event": "cron.slot_dropped", "trigger": self.id.name},
                )
            raise
        finally:
            current_correlation_id.reset(token)
        await self._arm_after(trigger, slot)

    @property
    def _triggers(self) -> CronTriggers:
        return self.env[TRIGGERS_BINDING]

    async def _arm_after(self, trigger: CronTrigger, after: float) -> float | None:
        """Store the first slot after both ``after`` and now, and set the alarm for it."""
        slot = trigger.cron.next_after(max(after, clock.now()))
        if slot is None:  # nothing within cronsim's horizon (decades): nothing to wait for
            await self.storage.delete_all()
            return None
        await self.storage.put(SLOT_KEY, slot)
        await self.storage.set_alarm(slot)
        return slot


def _describe(identity: str | None) -> str:
    cron, binding, name = json.loads(identity or '["?", "?", "?"]')
    return f"{cron!r} of {binding}:{name}"


def _utc(when: float | None) -> str:
    if when is None:
        return "none"
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
