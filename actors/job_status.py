"""Job status: one ``JobStatusActor`` per job id, holding its status, progress and outcome.

Fields are ``status`` (pending, processing, completed, failed), ``progress`` (0..100),
``result`` and ``error``; the actor keeps ``created_at``, ``updated_at`` and
``correlation_id`` (of the first update that had one) itself, and the record expires
``ttl_seconds`` after its last update (its alarm deletes it).
"""

from __future__ import annotations

from typing import Any

from runtime import Actor, AlarmInfo, Env, now

from .names import JOBS_BINDING

STATUSES = ("pending", "processing", "completed", "failed")
FIELDS = ("status", "progress", "result", "error")
RECORD_KEY = "job"
DEFAULT_TTL_SECONDS = 86_400


class JobStatusActor(Actor):
    async def update(self, fields: dict[str, Any], ttl_seconds: float) -> dict[str, Any]:
        _check(fields, ttl_seconds)
        moment = now()
        record = await self.storage.get(RECORD_KEY) or {"job_id": self.id.name, "created_at": moment}
        record.update(fields)
        _keep_correlation_id(record, self.ctx.correlation_id)
        record["updated_at"] = moment
        await self.storage.put(RECORD_KEY, record)
        await self.storage.set_alarm(moment + ttl_seconds)
        return record

    async def start_batch(self, total: int) -> None:
        """This job is a batch of ``total`` items (see ``actors.batches``)."""
        record = await self.storage.get(RECORD_KEY)
        record.update(total=total, succeeded=0, failures=0)
        await self.storage.put(RECORD_KEY, record)

    async def count_batch(self, attempted: int, failed: int) -> dict[str, Any]:
        """Add one message's counts to the batch: progress is the share of items that
        succeeded (a failed item retried later counts once it succeeds), and the status is
        ``completed`` once all have."""
        record = await self.storage.get(RECORD_KEY) or {
            "job_id": self.id.name,
            "created_at": now(),
            "total": 0,
        }
        _keep_correlation_id(record, self.ctx.correlation_id)
        record["succeeded"] = record.get("succeeded", 0) + attempted - failed
        record["failures"] = record.get("failures", 0) + failed
        total = record.get("total") or record["succeeded"] or 1
        record["progress"] = min(100, record["succeeded"] * 100 / total)
        record["status"] = "completed" if record["succeeded"] >= total else "processing"
        record["updated_at"] = now()
        await self.storage.put(RECORD_KEY, record)
        await self.storage.set_alarm(record["updated_at"] + DEFAULT_TTL_SECONDS)
        return record

    async def status(self) -> dict[str, Any] | None:
        return await self.storage.get(RECORD_KEY)

    async def alarm(self, info: AlarmInfo) -> None:
        await self.storage.delete_all()


def _keep_correlation_id(record: dict[str, Any], correlation_id: str | None) -> None:
    """The job's correlation id is that of the first update made while handling an event that
    had one (the request that started the job, or the queue message carrying its work)."""
    if record.get("correlation_id") is None:
        record["correlation_id"] = correlation_id


def _check(fields: dict[str, Any], ttl_seconds: float) -> None:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown job status fields {sorted(unknown)}; expected some of {list(FIELDS)}")
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {fields['status']!r}")
    progress = fields.get("progress")
    if "progress" in fields and (
        isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 100
    ):
        raise ValueError(f"progress must be a number in 0..100, not {progress!r}")
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, (int, float)) or not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be a positive number, not {ttl_seconds!r}")


async def update_job_status(
    env: Env, job_id: str, *, ttl_seconds: float = DEFAULT_TTL_SECONDS, **fields: Any
) -> dict[str, Any]:
    """Set fields of job ``job_id``'s status and return the whole record. A status outside the
    four, a progress outside 0..100 or an unknown field raises ``ValueError``, changing nothing."""
    _check(fields, ttl_seconds)
    return await env[JOBS_BINDING].get_by_name(_job_id(job_id)).update(fields, ttl_seconds)


async def get_job_status(env: Env, job_id: str) -> dict[str, Any] | None:
    """The job's status record, or None if it is unknown or expired."""
    return await env[JOBS_BINDING].get_by_name(_job_id(job_id)).status()


def _job_id(job_id: Any) -> str:
    if not isinstance(job_id, str) or not job_id:
        raise ValueError(f"a job id is a non-empty str, not {job_id!r}")
    return job_id
