"""A queue's operations besides delivery: peek (with each message's next attempt) and redrive
on a ``QueueStore``, how peek and pull show a message, and the checks of their arguments (and
of a pull's), which raise ``QueueLimitError`` before anything changes. Scheduling is the queue
actor's.
"""

from __future__ import annotations

import math
from typing import Any

from runtime import now

from ..errors import QueueLimitError
from .index import WAITING, Entry
from .segments import BODY, CONTENT_TYPE, CORRELATION_ID, DEAD_LETTER, ID, TIMESTAMP, TRACEPARENT, new_message
from .store import QueueStore

MAX_PEEK = 1000
MAX_PULL_BATCH = 100
MAX_VISIBILITY_TIMEOUT_SECONDS = 43_200


async def peek(store: QueueStore, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` stored messages, oldest first, unchanged, each with
    ``next_attempt_at``: when a message waiting out a delay (a retry's, or its send's) becomes
    deliverable again, in epoch seconds; None for one ready now or in flight."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PEEK:
        raise QueueLimitError(f"peek limit must be an int in 1..{MAX_PEEK}, got {limit!r}")
    await store.load_more(limit)
    entries = []
    for entry in store.index:
        if len(entries) == limit:
            break
        entries.append(entry)
    messages = await store.messages(entries)
    moment = now()
    return [
        {**view(message, entry), "next_attempt_at": _next_attempt_at(entry, moment)}
        for message, entry in zip(messages, entries, strict=True)
    ]


def _next_attempt_at(entry: Entry, moment: float) -> float | None:
    # A delayed entry may be due already and not yet promoted to ready: it is ready now.
    return entry.visible_at if entry.state in WAITING and entry.visible_at > moment else None


def check_pull(batch_size: Any, visibility_timeout: Any) -> None:
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_PULL_BATCH
    ):
        raise QueueLimitError(f"batch_size must be an int in 1..{MAX_PULL_BATCH}, got {batch_size!r}")
    if isinstance(visibility_timeout, bool) or not isinstance(visibility_timeout, (int, float)):
        raise QueueLimitError(f"visibility_timeout must be a number of seconds, got {visibility_timeout!r}")
    if not 0 < visibility_timeout <= MAX_VISIBILITY_TIMEOUT_SECONDS:
        raise QueueLimitError(f"visibility_timeout must be within 0..{MAX_VISIBILITY_TIMEOUT_SECONDS} s")


async def redrive(store: QueueStore, registry: Any, to: str | None, ids: list[str] | None) -> int:
    """Move waiting messages (all, or those ``ids``) to ``to``, or back to the queue each
    died in; returns how many moved. They keep their id and timestamp, and leave this
    queue only once they are durable in their new one, whose retention counts from the move."""
    wanted = None if ids is None else set(ids)
    await store.load_more(math.inf)  # a redrive reads the whole queue into memory
    waiting = [e for e in store.index if e.state in WAITING]
    by_target: dict[str, list[tuple[Entry, list[Any]]]] = {}
    for entry, message in zip(waiting, await store.messages(waiting), strict=True):
        if wanted is not None and message[ID] not in wanted:
            continue
        target = to or (message[DEAD_LETTER] or {}).get("queue")
        if target is None:
            raise QueueLimitError(f"message {message[ID]} did not die in another queue; give 'to'")
        registry.queue(target)  # QueueNotFoundError for an unknown name
        by_target.setdefault(target, []).append((entry, message))
    moved = 0
    for target, chosen in by_target.items():
        moment = now()
        await registry.actor(target).enqueue(
            [
                new_message(
                    message[ID],
                    message[BODY],
                    message[CONTENT_TYPE],
                    message[TIMESTAMP],
                    moment,
                    message[CORRELATION_ID],
                    traceparent=message[TRACEPARENT],
                    arrived_at=moment,
                )
                for _, message in chosen
            ]
        )
        await store.remove([entry for entry, _ in chosen])
        moved += len(chosen)
    return moved


def view(message: list[Any], entry: Entry) -> dict[str, Any]:
    """A stored message as peek and pull return it (the body still encoded)."""
    return {
        "id": message[ID],
        "body": message[BODY],
        "content_type": message[CONTENT_TYPE],
        "attempts": entry.attempts,
        "timestamp": message[TIMESTAMP],
        "correlation_id": message[CORRELATION_ID],
        "dead_letter": message[DEAD_LETTER],
    }
