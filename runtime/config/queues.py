"""The queue tables: ``[[queues.producers]]``, ``[[queues.consumers]]``, ``[[queues.settings]]``,
and the ``queues=[...]`` dicts of ``open_runtime``, into one ``QueueConfig`` per queue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..limits import MAX_MESSAGE_RETENTION_SECONDS, MIN_MESSAGE_RETENTION_SECONDS
from .checks import Range, Where, binding_name, expect, import_class, queue_name, ranged, required, unknown
from .model import DEFAULT_MAX_RETRY_DELAY_SECONDS, EXPONENTIAL_BACKOFF, RETRY_BACKOFFS, QueueConfig

# The range of each consumer setting.
CONSUMER_SETTINGS: dict[str, Range] = {
    "max_batch_size": (int, 1, 100),
    "max_batch_timeout": ((int, float), 0, 60),
    "max_retries": (int, 0, 100),
    "max_concurrency": (int, 1, 250),
    "retry_delay": ((int, float), 0, 43200),  # Cloudflare's cap on a delay: 12 hours
    "max_retry_delay": ((int, float), 0, 43200),
    "max_wall_time": ((int, float), 1, 86400),
}
# The same, of each setting of a queue itself.
QUEUE_SETTINGS: dict[str, Range] = {
    "message_retention_period": ((int, float), MIN_MESSAGE_RETENTION_SECONDS, MAX_MESSAGE_RETENTION_SECONDS),
}
CONSUMER_KEYS = {"queue", "dead_letter_queue", "dead_letter_expired", "retry_backoff", *CONSUMER_SETTINGS}


def queues_from_code(entries: list[Any], where: Where) -> dict[str, QueueConfig]:
    """The ``queues=[{...}]`` of ``open_runtime``: one dict per queue, every setting in it."""
    out: dict[str, QueueConfig] = {}
    given: dict[str, int] = {}
    for i, entry in enumerate(entries):
        table = f"queues[{i}]"
        expect(entry, Mapping, where, table, "a dict")
        unknown(entry, {"binding", "consumer", *CONSUMER_KEYS, *QUEUE_SETTINGS}, where, table)
        name = queue_name(entry.get("queue"), where, f"{table}.queue")
        if name in given:
            raise where.error(
                table, f"key 'queue': queue {name!r} is given already, by queues[{given[name]}]"
            )
        given[name] = i
        settings = consumer_settings(entry, where, table)
        settings.update(ranged(entry, QUEUE_SETTINGS, where, table))
        consumer = entry.get("consumer")
        if consumer is not None:
            settings["consumer"] = import_class(consumer, where, f"{table}.consumer")
        binding = entry.get("binding")
        if binding is not None:
            settings["binding"] = binding_name(binding, where, f"{table}.binding")
        out[name] = QueueConfig(name, **settings)
    return out


def queues_from_toml(table: Any, where: Where) -> dict[str, QueueConfig]:
    expect(table, Mapping, where, "queues", "a table")
    unknown(table, {"producers", "consumers", "settings"}, where, "queues")
    producers: dict[str, str] = {}
    for i, entry in enumerate(
        expect(table.get("producers", []), list, where, "queues.producers", "an array")
    ):
        t = f"queues.producers[{i}]"
        expect(entry, Mapping, where, t, "a table")
        unknown(entry, {"queue", "binding", "delivery_delay"}, where, t)
        queue = queue_name(required(entry, "queue", where, t), where, f"{t}.queue")
        producers[queue] = binding_name(required(entry, "binding", where, t), where, f"{t}.binding")
    consumers: dict[str, dict[str, Any]] = {}
    for i, entry in enumerate(
        expect(table.get("consumers", []), list, where, "queues.consumers", "an array")
    ):
        t = f"queues.consumers[{i}]"
        expect(entry, Mapping, where, t, "a table")
        unknown(entry, {"class_name", *CONSUMER_KEYS}, where, t)
        queue = queue_name(required(entry, "queue", where, t), where, f"{t}.queue")
        if queue in consumers:
            raise where.error(t, f"key 'queue': queue {queue!r} already has a consumer")
        settings = consumer_settings(entry, where, t)
        settings["consumer"] = import_class(required(entry, "class_name", where, t), where, f"{t}.class_name")
        consumers[queue] = settings
    dead_letter = {s.get("dead_letter_queue") for s in consumers.values()} - {None}
    for i, queue in enumerate(consumers):
        if queue not in producers and queue not in dead_letter:
            raise where.error(
                f"queues.consumers[{i}]",
                f"key 'queue': queue {queue!r} is not declared by any [[queues.producers]] or dead_letter_queue",
            )
    queues = {
        name: QueueConfig(name, binding=producers.get(name), **consumers.get(name, {}))
        for name in [*producers, *(q for q in consumers if q not in producers)]
    }
    add_dead_letter_queues(queues)
    entries = expect(table.get("settings", []), list, where, "queues.settings", "an array")
    _queue_settings(entries, queues, where)
    return queues


def _queue_settings(entries: list[Any], queues: dict[str, QueueConfig], where: Where) -> None:
    """``[[queues.settings]]``: the settings of a queue declared elsewhere, at most once each."""
    given: dict[str, str] = {}
    for i, entry in enumerate(entries):
        t = f"queues.settings[{i}]"
        expect(entry, Mapping, where, t, "a table")
        unknown(entry, {"queue", *QUEUE_SETTINGS}, where, t)
        queue = queue_name(required(entry, "queue", where, t), where, f"{t}.queue")
        if queue not in queues:
            raise where.error(
                t,
                f"key 'queue': queue {queue!r} is not declared by any [[queues.producers]],"
                " [[queues.consumers]] or dead_letter_queue",
            )
        if queue in given:
            raise where.error(
                t, f"key 'queue': queue {queue!r} has its settings already, in [{given[queue]}]"
            )
        given[queue] = t
        queues[queue] = replace(queues[queue], **ranged(entry, QUEUE_SETTINGS, where, t))


def add_dead_letter_queues(queues: dict[str, QueueConfig]) -> None:
    """A queue named only as a dead_letter_queue exists too."""
    for q in list(queues.values()):
        if q.dead_letter_queue and q.dead_letter_queue not in queues:
            queues[q.dead_letter_queue] = QueueConfig(q.dead_letter_queue)


def consumer_settings(entry: Mapping[str, Any], where: Where, table: str) -> dict[str, Any]:
    out = ranged(entry, CONSUMER_SETTINGS, where, table)
    dlq = entry.get("dead_letter_queue")
    if dlq is not None:
        out["dead_letter_queue"] = queue_name(dlq, where, f"{table}.dead_letter_queue")
        if dlq == entry.get("queue"):
            raise where.error(
                table, f"key 'dead_letter_queue': queue {dlq!r} cannot be its own dead-letter queue"
            )
    if "dead_letter_expired" in entry:
        key = f"{table}.dead_letter_expired"
        expired = expect(entry["dead_letter_expired"], bool, where, key, "a boolean")
        if expired and dlq is None:
            raise where.error(table, "key 'dead_letter_expired': true needs a dead_letter_queue to send to")
        out["dead_letter_expired"] = expired
    out.update(_backoff(entry, out, where, table))
    return out


def _backoff(entry: Mapping[str, Any], settings: dict[str, Any], where: Where, table: str) -> dict[str, Any]:
    """``retry_backoff``, checked with the delays it uses: exponential backoff doubles a
    ``retry_delay`` above 0 up to a ``max_retry_delay`` at least as long; ``max_retry_delay``
    means nothing with a fixed delay, so giving it there is a mistake."""
    backoff = entry.get("retry_backoff")
    if backoff is not None and backoff not in RETRY_BACKOFFS:
        choices = " or ".join(f'"{b}"' for b in RETRY_BACKOFFS)
        raise where.error(table, f"key 'retry_backoff': expected {choices}, got {backoff!r}")
    if backoff != EXPONENTIAL_BACKOFF:
        if "max_retry_delay" in settings:
            raise where.error(
                table, f"key 'max_retry_delay': applies only with retry_backoff = \"{EXPONENTIAL_BACKOFF}\""
            )
        return {} if backoff is None else {"retry_backoff": backoff}
    first = settings.get("retry_delay", 0)
    if first <= 0:
        raise where.error(
            table,
            f"key 'retry_delay': retry_backoff = \"{EXPONENTIAL_BACKOFF}\" doubles retry_delay,"
            f" which must be above 0 (got {first!r})",
        )
    cap = settings.get("max_retry_delay", DEFAULT_MAX_RETRY_DELAY_SECONDS)
    if cap < first:
        given = "" if "max_retry_delay" in settings else " (the default)"
        raise where.error(
            table, f"key 'max_retry_delay': {cap!r}{given} is below retry_delay {first!r}; it caps the delays"
        )
    return {"retry_backoff": backoff}
