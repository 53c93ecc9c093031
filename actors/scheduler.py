"""Scheduled jobs: ``schedule_job`` sends a job to a queue at a given time.

Jobs are spread over ``SHARDS`` ``SchedulerActor``s by job id, so no single actor is a
bottleneck; each keeps its jobs in storage and one alarm for the earliest. At each alarm it
sends only the jobs that are due (the body unchanged, as a json message) and re-arms for
the next; a failed send is retried with backoff. A job is deleted only after its message is
durable in the queue, so a crash in between sends it again (at least once).
"""

from __future__ import annotations

import heapq
import logging
import uuid
from datetime import datetime
from typing import Any

from runtime import Actor, AlarmInfo, Env, now

from .backoff import backoff_delay
from .message_codec import encode_body
from .names import REGISTRY_BINDING, SCHEDULER_BINDING

log = logging.getLogger("roost.scheduler")

SHARDS = 8
JOB_PREFIX = "job:"
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0


class SchedulerActor(Actor):
    async def on_start(self) -> None:
        jobs = await self.storage.list(prefix=JOB_PREFIX)
        self.due: list[tuple[float, str]] = [(job["execute_at"], job_id) for job_id, job in jobs.items()]
        heapq.heapify(self.due)
        # job key -> (failed sends so far, when to try again)
        self.retries: dict[str, tuple[int, float]] = {}

    async def add(self, job_id: str, job: Any, execute_at: float, queue: str) -> None:
        key = JOB_PREFIX + job_id
        await self.storage.put(
            key, {"job": job, "execute_at": execute_at, "queue": queue, "created_at": now()}
        )
        heapq.heappush(self.due, (execute_at, key))
        await self._arm()

    async def cancel(self, job_id: str) -> bool:
        existed = await self.storage.delete(JOB_PREFIX + job_id)
        self.retries.pop(JOB_PREFIX + job_id, None)
        await self._arm()
        return existed

    async def jobs(self) -> list[dict[str, Any]]:
        return [
            {"id": key[len(JOB_PREFIX) :], **record}
            for key, record in (await self.storage.list(prefix=JOB_PREFIX)).items()
        ]

    async def alarm(self, info: AlarmInfo) -> None:
        moment = now()
        while self.due and self.due[0][0] <= moment:
            _, key = heapq.heappop(self.due)
            record = await self.storage.get(key)
            if record is None or record["execute_at"] > moment:
                continue  # cancelled, or re-scheduled later (its own heap entry remains)
            try:
                await self.env[REGISTRY_BINDING].queue(record["queue"]).send(record["job"])
            except Exception as exc:
                failures = self.retries.get(key, (0, 0.0))[0] + 1
                log.warning(
                    "scheduled job %s: send to %r failed (%s); try %d",
                    key,
                    record["queue"],
                    exc,
                    failures + 1,
                )
                retry_at = moment + backoff_delay(
                    failures - 1, base_delay=RETRY_BASE_SECONDS, max_delay=RETRY_MAX_SECONDS, jitter=False
                )
                self.retries[key] = (failures, retry_at)
                heapq.heappush(self.due, (retry_at, key))
                record["execute_at"] = retry_at
                await self.storage.put(key, record)
                continue
            self.retries.pop(key, None)
            await self.storage.delete(key)
        await self._arm()

    async def _arm(self) -> None:
        while self.due:
            execute_at, key = self.due[0]
            record = await self.storage.get(key)
            if record is not None and record["execute_at"] == execute_at:
                await self.storage.set_alarm(execute_at)
                return
            heapq.heappop(self.due)
        await self.storage.delete_alarm()


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
    encode_body(job, "json")  # QueueLimitError now, rather than at send time
    job_id = uuid.uuid4().hex
    await env[SCHEDULER_BINDING].get_by_name(_shard(job_id)).add(job_id, job, float(execute_at), queue)
    return job_id


async def cancel_job(env: Env, job_id: str) -> bool:
    """Cancel a job not sent yet; True if it was pending."""
    return await env[SCHEDULER_BINDING].get_by_name(_shard(_check_job_id(job_id))).cancel(job_id)


async def list_jobs(env: Env) -> list[dict[str, Any]]:
    """Every pending job (``id``, ``job``, ``execute_at``, ``queue``, ``created_at``), soonest first."""
    jobs: list[dict[str, Any]] = []
    for shard in range(SHARDS):
        jobs += await env[SCHEDULER_BINDING].get_by_name(f"shard-{shard}").jobs()
    return sorted(jobs, key=lambda job: (job["execute_at"], job["id"]))
