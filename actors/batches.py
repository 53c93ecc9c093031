"""Large jobs in batches: ``enqueue_batch`` splits items into queue messages, and
``process_batch`` runs a processor over one message's items.

A message body is ``{"items": [...], "batch_id": str, "total": int, "offset": int}``. Items
run concurrently; an item that raises is counted and returned, never re-raised, so one bad
item does not make the queue retry the ones that succeeded. With ``env``, the batch's
progress is kept as the job status of its batch id.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from runtime import Env

from .job_status import update_job_status
from .names import JOBS_BINDING
from .queues.queue import Queue


@dataclass(frozen=True, slots=True)
class BatchResult:
    processed: int
    failed: int
    failed_items: list[Any] = field(default_factory=list)


async def enqueue_batch(
    items: list[Any], queue: Queue, batch_size: int = 100, *, env: Env | None = None
) -> str:
    """Send ``items`` to ``queue`` in messages of ``batch_size`` items; returns the batch id.
    Every message is durable when this returns."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    items = list(items)
    batch_id = uuid.uuid4().hex
    if env is not None:
        await update_job_status(env, batch_id, status="pending", progress=0)
        await env[JOBS_BINDING].get_by_name(batch_id).start_batch(len(items))
    bodies = [
        {
            "items": items[offset : offset + batch_size],
            "batch_id": batch_id,
            "total": len(items),
            "offset": offset,
        }
        for offset in range(0, len(items), batch_size)
    ]
    for start in range(0, len(bodies), 100):
        await queue.send_batch([{"body": body} for body in bodies[start : start + 100]])
    return batch_id


async def process_batch(
    batch: dict[str, Any], processor: Callable[[Any], Awaitable[Any]], *, env: Env | None = None
) -> BatchResult:
    """Run ``await processor(item)`` for every item of one batch message, concurrently.

    Returns how many items were attempted and which failed; never raises for an item. To
    retry only the failures, send ``{**batch, "items": result.failed_items}`` again. With
    ``env``, adds this message's counts to the batch's job status: ``progress`` is the share
    of the batch's items that succeeded, ``status`` is ``completed`` once all have, and
    ``succeeded`` and ``failures`` count them."""
    items = batch["items"]
    failed: list[Any] = []

    async def run(item: Any) -> None:
        try:
            await processor(item)
        except Exception:
            failed.append(item)

    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(run, item)
    result = BatchResult(processed=len(items), failed=len(failed), failed_items=failed)
    if env is not None:
        await env[JOBS_BINDING].get_by_name(batch["batch_id"]).count_batch(result.processed, result.failed)
    return result
