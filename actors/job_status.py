"""Job status: one ``JobStatusActor`` per job id, holding its status, progress and outcome.

Fields are ``status`` (pending, processing, completed, failed), ``progress`` (0..100),
``result`` and ``error``; the actor keeps ``created_at``, ``updated_at`` and
``correlation_id`` (of the first update that had one) itself, and the record expires
``ttl_seconds`` after its last update (its alarm deletes it).

Watchers (``GET /jobs/{id}/events``) long-poll ``wait_change``: each call returns once the
record's revision (a count of its changes, stored beside it) differs from the one the
watcher saw, or after a bounded wait. The wait is an RPC call, so it reaches the actor
wherever it lives (with ``--workers N``, often in another process).
"""

from __future__ import annotations

from typing import Any

import trio

from runtime import Actor, ActorContext, AlarmInfo, Env, now

from .names import JOBS_BINDING

STATUSES = ("pending", "processing", "completed", "failed")
FIELDS = ("status", "progress", "result", "error")
RECORD_KEY = "job"
REVISION_KEY = "revision"  # how many times the record was written; gone with it
DEFAULT_TTL_SECONDS = 86_400
MAX_WAIT_SECONDS = 60.0  # the longest one ``wait_change`` call holds its caller


class JobStatusActor(Actor):
    def __init__(self, ctx: ActorContext, env: Env) -> None:
        super().__init__(ctx, env)
        # Set, and replaced by a fresh one, at each change of the record: what waiters wait
        # on. In memory only: a new instance starts with no waiter.
        self._changed = trio.Event()

    async def _save(self, record: dict[str, Any]) -> None:
        revision = await self.storage.get(REVISION_KEY, 0) + 1
        await self.storage.put_many({RECORD_KEY: record, REVISION_KEY: revision})
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def update(self, fields: dict[str, Any], ttl_seconds: float) -> dict[str, Any]:
        _check(fields, ttl_seconds)
        moment = now()
        record = await self.storage.get(RECORD_KEY) or {"job_id": self.id.name, "created_at": moment}
        record.update(fields)
        _keep_correlation_id(record, self.ctx.correlation_id)
        record["updated_at"] = moment
        await self._save(record)
        await self.storage.set_alarm(moment + ttl_seconds)
        return record

    async def start_batch(self, total: int) -> None:
        """This job is a batch of ``total`` items (see ``actors.batches``)."""
        record = await self.storage.get(RECORD_KEY)
        record.update(total=total, succeeded=0, failures=0)
        await self._save(record)

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
        await self._save(record)
        await self.storage.set_alarm(record["updated_at"] + DEFAULT_TTL_SECONDS)
        return record

    async def status(self) -> dict[str, Any] | None:
        return await self.storage.get(RECORD_KEY)

    async def wait_change(self, seen_revision: int | None, timeout_seconds: float) -> dict[str, Any]:
        """``{"revision": int, "record": dict | None}`` as soon as the revision differs from
        ``seen_revision`` (at once for None), else as it is after ``timeout_seconds``. A
        record that expired is None, with revision 0. Like every result, it is released only
        once the change it shows is durable."""
        _check_wait(seen_revision, timeout_seconds)
        changed = self._changed  # taken before the read: a change while it reads still wakes us
        if await self.storage.get(REVISION_KEY, 0) == seen_revision:
            with trio.move_on_after(timeout_seconds):
                await changed.wait()
        return {
            "revision": await self.storage.get(REVISION_KEY, 0),
            "record": await self.storage.get(RECORD_KEY),
        }

    async def alarm(self, info: AlarmInfo) -> None:
        await self.storage.delete_all()
        self._notify()


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


def _check_wait(seen_revision: Any, timeout_seconds: Any) -> None:
    if seen_revision is not None and (isinstance(seen_revision, bool) or not isinstance(seen_revision, int)):
        raise ValueError(f"seen_revision must be an int or None, not {seen_revision!r}")
    if (
        isinstance(timeout_seconds, bool)
        or not isinstance(timeout_seconds, (int, float))
        or not 0 < timeout_seconds <= MAX_WAIT_SECONDS
    ):
        raise ValueError(f"timeout_seconds must be a number in (0, {MAX_WAIT_SECONDS:g}], not {timeout_seconds!r}")


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


async def wait_job_status_change(
    env: Env, job_id: str, seen_revision: int | None, *, timeout_seconds: float
) -> dict[str, Any]:
    """Job ``job_id``'s ``{"revision", "record"}`` once its revision differs from
    ``seen_revision`` (at once for None), or after ``timeout_seconds`` (at most
    ``MAX_WAIT_SECONDS``) as it is. Changes made faster than a watcher calls again reach it
    as one: the latest record. ``ValueError`` for a bad id, revision or timeout."""
    _check_wait(seen_revision, timeout_seconds)
    return await env[JOBS_BINDING].get_by_name(_job_id(job_id)).wait_change(seen_revision, timeout_seconds)


def _job_id(job_id: Any) -> str:
    if not isinstance(job_id, str) or not job_id:
        raise ValueError(f"a job id is a non-empty str, not {job_id!r}")
    return job_id
