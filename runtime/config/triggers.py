"""The trigger tables: ``[[triggers.crons]]`` (wrangler.toml's ``[triggers] crons``, one table
per cron so each names the actor it runs), into ``CronTrigger`` values.

A trigger's binding must be a ``[[durable_objects.bindings]]`` whose class has an
``async def scheduled(self, event)``; ``check_triggers`` says so once every binding is known.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .checks import Where, binding_name, expect, required, unknown
from .cron import CronExpression, CronExpressionError
from .model import Config, CronTrigger

_CRON_KEYS = {"cron", "binding", "name"}


def triggers_from_toml(table: Any, where: Where) -> tuple[CronTrigger, ...]:
    """``[triggers]``: its ``crons`` array of tables, each checked."""
    expect(table, Mapping, where, "triggers", "a table")
    unknown(table, {"crons"}, where, "triggers")
    entries = expect(table.get("crons", []), list, where, "triggers.crons", "an array of tables")
    return cron_triggers(entries, where, "triggers.crons")


def cron_triggers(
    entries: list[Any], where: Where, table: str, given: tuple[CronTrigger, ...] = ()
) -> tuple[CronTrigger, ...]:
    """``entries`` (each a table of ``cron``, ``binding``, ``name``) added to the triggers
    ``given``; a trigger given twice is a mistake (it would run twice per slot)."""
    out = list(given)
    seen = {trigger.identity: "an earlier table" for trigger in given}
    for i, entry in enumerate(entries):
        t = f"{table}[{i}]"
        expect(entry, Mapping, where, t, "a table (cron, binding, name)")
        unknown(entry, _CRON_KEYS, where, t)
        text = expect(required(entry, "cron", where, t), str, where, f"{t}.cron", "a string")
        try:
            cron = CronExpression(text)
        except CronExpressionError as exc:
            raise where.error(t, f"key 'cron': {exc}") from None
        binding = binding_name(required(entry, "binding", where, t), where, f"{t}.binding")
        name = expect(required(entry, "name", where, t), str, where, f"{t}.name", "a string")
        trigger = CronTrigger(cron, binding, name, t)
        if trigger.identity in seen:
            earlier = seen[trigger.identity]
            raise where.error(t, f"key 'cron': {text!r} for {binding}:{name!r} is given already, by {earlier}")
        seen[trigger.identity] = f"[{t}]"
        out.append(trigger)
    return tuple(out)


def check_triggers(config: Config) -> None:
    """Every trigger names a durable object binding whose class can take the event."""
    for trigger in config.triggers:
        table = trigger.table
        cls = config.actors.get(trigger.binding)
        if cls is None:
            raise ConfigError(
                f"{config.source}: [{table}] key 'binding': no durable object binding {trigger.binding!r}"
            )
        handler = getattr(cls, "scheduled", None)
        if not inspect.iscoroutinefunction(handler):
            raise ConfigError(
                f"{config.source}: [{table}] key 'binding': {cls.__qualname__} (bound as"
                f" {trigger.binding!r}) has no `async def scheduled(self, event)`"
            )
