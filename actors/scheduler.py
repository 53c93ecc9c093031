"""Scheduled jobs: ``schedule_job`` sends a job to a queue at a given time.

Jobs are spread over ``SHARDS`` ``SchedulerActor``s by job id, so no single actor is a
bottleneck. Each shard stores a job twice: its record under ``job:{id}``, and an index entry
under ``due:{time}:{id}`` whose keys sort by due time. The shard finds the earliest and the
due jobs by listing that index, so pending jobs cost disk, not memory, however many there are
and however far ahead. It keeps one alarm for the earliest; at each alarm it sends the jobs
that are due and re-arms for the next. Each body goes unchanged, as a json message with the
correlation id of the event that scheduled it; the jobs for one queue go together, in
batches within ``send_batch``'s limits. A failed send is retried with backoff. A job is
deleted only after its message is durable in the queue, so a crash in between sends it
again (at least once).
"""

from __future__ import annotations

import logging
import math
import struct
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

import trio

from runtime import Actor, AlarmInfo, Env, now

from .backoff import backoff_delay
from .names import REGISTRY_BINDING, SCHEDULER_BINDING
from .queues.message_codec import MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, encode_body

log = logging.getLogger("roost.scheduler")

SHARDS = 8
JOB_PREFIX = "job:"
DUE_PREFIX = "due:"
PENDING_KEY = "pending"  # how many jobs the shard holds
LAYOUT_KEY = "layout"
# 3: the due index above and the count of pending jobs. Shards written before have job
# records only (their due times were rebuilt in memory at each start), or no count; the
# first start after an upgrade indexes and counts their jobs.
LAYOUT = 3
CHUNK = 128  # storage's limit of keys per call
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


class SchedulerActor(Actor):
    """One shard of the scheduled jobs."""

    async def on_start(self) -> None:
        self.failures: dict[str, int] = {}  # job id -> failed sends so far (reset by a restart)
        self.sending: dict[str, trio.Event] = {}  # job id -> set when its send is over
        if await self.storage.get(LAYOUT_KEY) != LAYOUT:
            await self._index_stored_jobs()
        self.pending: int = await self.storage.get(PENDING_KEY, 0)

    async def add(self, job_id: str, job: Any, execute_at: float, queue: str) -> None:
        record = {
            "job": job,
            "execute_at": execute_at,
            "queue": queue,
            "created_at": now(),
            "correlation_id": self.ctx.correlation_id,
        }
        await self.storage.put_many(
            {JOB_PREFIX + job_id: record, _due_key(execute_at, job_id): job_id, PENDING_KEY: self.pending + 1}
        )
        self.pending += 1
        # The alarm is always at the earliest job: only an earlier one moves it.
        current = await self.storage.get_alarm()
        if current is None or max(0.0, execute_at) < current:
            await self.storage.set_alarm(max(0.0, execute_at))

    async def cancel(self, job_id: str) -> bool:
        """True if the job will not be sent; a job being sent is cancelled only if that
        send fails, so the answer waits for its outcome."""
        while (sending := self.sending.get(job_id)) is not None:
            await sending.wait()
        record = await self.storage.get(JOB_PREFIX + job_id)
        if record is None:
            return False
        await self.storage.delete_many([JOB_PREFIX + job_id, _due_key(record["execute_at"], job_id)])
        self.pending -= 1
        await self.storage.put(PENDING_KEY, self.pending)
        self.failures.pop(job_id, None)
        await self._arm()
        return True

    async def pending_count(self) -> int:
        return self.pending

    async def jobs(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The shard's pending jobs; with ``limit``, only the soonest, read through the index."""
        if limit is None:
            records = await self.storage.list(prefix=JOB_PREFIX)
        else:
            ids = list((await self.storage.list(prefix=DUE_PREFIX, limit=limit)).values())
            records = {}
            for start in range(0, len(ids), CHUNK):
                records.update(
                    await self.storage.get_many([JOB_PREFIX + i for i in ids[start : start + CHUNK]])
                )
        return [{"id": key[len(JOB_PREFIX) :], **record} for key, record in records.items()]

    async def alarm(self, info: AlarmInfo) -> None:
        moment = now()
        # Each send removes its jobs' index entries or moves them past ``moment``, so this ends.
        while due := await self.storage.list(prefix=DUE_PREFIX, end=_due_bound(moment), limit=CHUNK):
            records = await self.storage.get_many([JOB_PREFIX + job_id for job_id in due.values()])
            jobs = [
                _DueJob(job_id, due_key, records[JOB_PREFIX + job_id])
                for due_key, job_id in due.items()
                if JOB_PREFIX + job_id in records
            ]
            if len(jobs) < len(due):
                # Written together with its record, an entry never outlives it; should one
                # ever, dropping it keeps this loop finite.
                await self.storage.delete_many(
                    [k for k, job_id in due.items() if JOB_PREFIX + job_id not in records]
                )
            for batch in _batches(jobs):
                await self._send(batch, moment)
        await self._arm()

    async def _send(self, batch: list[_DueJob], moment: float) -> None:
        """Send ``batch`` (jobs for one queue), marked as being sent meanwhile."""
        # A job cancelled while an earlier batch was being sent is gone: it stays gone.
        present = await self.storage.get_many([JOB_PREFIX + job.id for job in batch])
        batch = [job for job in batch if JOB_PREFIX + job.id in present]
        if not batch:
            return
        queue = batch[0].record["queue"]
        sent = trio.Event()
        self.sending.update((job.id, sent) for job in batch)
        try:
            await self._send_or_retry(batch, queue, moment)
        finally:
            for job in batch:
                del self.sending[job.id]
            sent.set()

    async def _send_or_retry(self, batch: list[_DueJob], queue: str, moment: float) -> None:
        """One batch of messages, all or none: then the jobs go, or each moves to its next try."""
        producer = self.env[REGISTRY_BINDING].queue(queue)
        try:
            # Records stored before correlation ids were kept have none: the alarm's is used.
            await producer.send_scheduled(
                [(job.record["job"], job.record.get("correlation_id")) for job in batch]
            )
        except Exception as exc:
            for job in batch:
                failures = self.failures[job.id] = self.failures.get(job.id, 0) + 1
                job.record["execute_at"] = moment + backoff_delay(
                    failures - 1, base_delay=RETRY_BASE_SECONDS, max_delay=RETRY_MAX_SECONDS, jitter=False
                )
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "scheduled jobs: a send of %d to %r failed (%s); each is tried again after its backoff",
                len(batch),
                queue,
                error,
                extra={
                    "event": "scheduler.send_failed",
                    "queue": queue,
                    "jobs": [job.id for job in batch],
                    "error": error,
                },
            )
            await self.storage.delete_many([job.due_key for job in batch])
            for job in batch:
                await self.storage.put_many(
                    {JOB_PREFIX + job.id: job.record, _due_key(job.record["execute_at"], job.id): job.id}
                )
            return
        for job in batch:
            self.failures.pop(job.id, None)
        await self.storage.delete_many([JOB_PREFIX + job.id for job in batch])
        await self.storage.delete_many([job.due_key for job in batch])
        self.pending -= len(batch)
        await self.storage.put(PENDING_KEY, self.pending)

    async def _arm(self) -> None:
        """Set the alarm for the earliest job, or clear it."""
        earliest = await self.storage.list(prefix=DUE_PREFIX, limit=1)
        due = _due_time(next(iter(earliest))) if earliest else None
        if await self.storage.get_alarm() == due:
            return
        if due is None:
            await self.storage.delete_alarm()
        else:
            await self.storage.set_alarm(due)

    async def _index_stored_jobs(self) -> None:
        """Write the due index and the count of the jobs stored before they existed (none in
        a new shard)."""
        count = 0
        listed = await self.storage.list(prefix=JOB_PREFIX, limit=CHUNK)
        while listed:
            count += len(listed)
            await self.storage.put_many(
                {
                    _due_key(record["execute_at"], key[len(JOB_PREFIX) :]): key[len(JOB_PREFIX) :]
                    for key, record in listed.items()
                }
            )
            listed = await self.storage.list(
                prefix=JOB_PREFIX, start_after=next(reversed(listed)), limit=CHUNK
            )
        await self.storage.put_many({PENDING_KEY: count, LAYOUT_KEY: LAYOUT})
        await self._arm()


class _DueJob(NamedTuple):
    id: str
    due_key: str
    record: dict[str, Any]


def _batches(jobs: list[_DueJob]) -> Iterator[list[_DueJob]]:
    """``jobs`` grouped by queue, in order, in batches within ``send_batch``'s limits."""
    by_queue: dict[str, list[_DueJob]] = {}
    for job in jobs:
        by_queue.setdefault(job.record["queue"], []).append(job)
    for queued in by_queue.values():
        batch: list[_DueJob] = []
        size = 0
        for job in queued:
            job_size = len(encode_body(job.record["job"], "json"))
            if batch and (len(batch) == MAX_BATCH_MESSAGES or size + job_size > MAX_BATCH_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(job)
            size += job_size
        if batch:
            yield batch


def _time_hex(execute_at: float) -> str:
    """A due time as 16 hex digits that sort as the times do: the big-endian bits of a
    non-negative double order like its value. A time in the past is due at once, so it sorts
    as 0."""
    return struct.pack(">d", max(0.0, execute_at)).hex()


def _due_key(execute_at: float, job_id: str) -> str:
    return f"{DUE_PREFIX}{_time_hex(execute_at)}:{job_id}"


def _due_bound(moment: float) -> str:
    """The first key after every index entry due by ``moment`` (``;`` sorts after ``:``)."""
    return f"{DUE_PREFIX}{_time_hex(moment)};"


def _due_time(due_key: str) -> float:
    return struct.unpack(">d", bytes.fromhex(due_key[len(DUE_PREFIX) : len(DUE_PREFIX) + 16]))[0]


def _shard(job_id: str) -> str:
    return f"shard-{int(job_id[:2], 16) % SHARDS}"


def _check_job_id(job_id: Any) -> str:
    if not isinstance(job_id, str) or len(job_id) != 32 or any(c not in "0123456789abcdef" for c in job_id):
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


async def schedule_job(env: Env, job: dict, execute_at: float | datetime, *, queue: str) -> str:
    """Send ``job`` (as a json message body, unchanged) to ``queue`` at ``execute_at`` (epoch
    seconds or an aware datetime; a past time means at once). Returns the job id."""
    env[REGISTRY_BINDING].queue(queue)  # QueueNotFoundError for an unknown queue
    if isinstance(execute_at, datetime):
        if execute_at.tzinfo is None:
            raise ValueError("execute_at needs a timezone-aware datetime")
        execute_at = execute_at.timestamp()
    if isinstance(execute_at, bool) or not isinstance(execute_at, (int, float)):
        raise TypeError(f"execute_at is epoch seconds or a datetime, not {type(execute_at).__name__}")
    if not math.isfinite(execute_at):
        raise ValueError(f"execute_at must be a finite number of epoch seconds, not {execute_at}")
    encode_body(job, "json")  # QueueLimitError now, rather than at send time
    job_id = uuid.uuid4().hex
    await env[SCHEDULER_BINDING].get_by_name(_shard(job_id)).add(job_id, job, float(execute_at), queue)
    return job_id


async def cancel_job(env: Env, job_id: str) -> bool:
    """Cancel a job not sent yet; True if it was pending."""
    return await env[SCHEDULER_BINDING].get_by_name(_shard(_check_job_id(job_id))).cancel(job_id)


async def list_jobs(env: Env, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The pending jobs (``id``, ``job``, ``execute_at``, ``queue``, ``created_at``,
    ``correlation_id``), soonest first: all of them, or the soonest ``limit``."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int, not {limit!r}")
    jobs: list[dict[str, Any]] = []
    for shard in _every_shard(env):
        jobs += await shard.jobs(limit)
    return sorted(jobs, key=lambda job: (job["execute_at"], job["id"]))[:limit]


async def pending_jobs_family(env: Env) -> tuple[str, str, str, list[tuple[dict[str, str], float]]]:
    """The number of pending jobs, as a Prometheus metric family for ``/metrics``; without
    a sample, and with a warning, if a shard cannot answer."""
    family = ("roost_scheduled_jobs_pending", "gauge", "Scheduled jobs not sent yet.")
    pending = 0
    for shard, stub in enumerate(_every_shard(env)):
        try:
            pending += await stub.pending_count()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "scheduled jobs left out of /metrics: shard %d: %s",
                shard,
                error,
                extra={"event": "scheduler.metrics_skipped", "shard": shard, "error": error},
            )
            return (*family, [])
    return (*family, [({}, pending)])


def _every_shard(env: Env) -> list[Any]:
    return [env[SCHEDULER_BINDING].get_by_name(f"shard-{shard}") for shard in range(SHARDS)]
