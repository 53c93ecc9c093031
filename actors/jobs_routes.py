"""The HTTP routes of jobs. Two kinds of record share the ``/jobs`` prefix:

- scheduled jobs (``actors.scheduler``): ``GET /jobs`` lists those not sent yet,
  ``DELETE /jobs/<id>`` cancels one;
- job status (``actors.job_status``): ``GET /jobs/<id>/status`` is a job's status record,
  ``GET /jobs/<id>/events`` the same as server-sent events while it changes.

A scheduled job's id is the one ``schedule_job`` returned; a job status id is whatever the
application passed to ``update_job_status``. The event stream long-polls the job's
``JobStatusActor``, so each call it makes is short and reaches the actor wherever it lives;
a cancelled stream (the client went away, the server drains) cancels its pending call.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from runtime import Request, Response, now

from .job_status import get_job_status, wait_job_status_change
from .scheduler import cancel_job, list_jobs

log = logging.getLogger("roost.jobs")

FINAL_STATUSES = frozenset({"completed", "failed"})
# One long poll of the job's actor; a quiet one ends with a comment, so a dead client is
# noticed (its write fails) and proxies keep the connection open.
HEARTBEAT_SECONDS = 15.0
EVENT_STREAM_HEADERS = {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",  # nginx: pass each event on at once
}
KEEP_ALIVE = b": keep-alive\n\n"


def routes() -> list[tuple[list[str], str, Any]]:
    return [
        (["GET"], "/jobs", scheduled_jobs),
        (["DELETE"], "/jobs/<job_id>", cancel_scheduled_job),
        (["GET"], "/jobs/<job_id>/status", status),
        (["GET"], "/jobs/<job_id>/events", events),
    ]


def _not_found(message: str) -> Response:
    return Response({"error": message, "type": "NotFound"}, 404)


async def scheduled_jobs(rt: Any, request: Request) -> Response:
    """The scheduled jobs not sent yet, soonest first (``?limit=N``: the soonest N), with
    the server's clock (``now``, epoch seconds) to read their ``execute_at`` against."""
    raw = request.query.get("limit")
    limit = None
    if raw is not None:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"limit must be a positive integer, not {raw!r}")
        limit = int(raw)
    return Response({"jobs": await list_jobs(rt.env, limit=limit), "now": now()})


async def cancel_scheduled_job(rt: Any, request: Request, job_id: str) -> Response:
    try:
        cancelled = await cancel_job(rt.env, job_id)
    except ValueError:
        raise ValueError(
            f"not a scheduled job id: {job_id!r} (32 hex digits, as schedule_job returns)"
        ) from None
    if not cancelled:
        return _not_found(f"no scheduled job {job_id!r} is pending (never scheduled, already sent, or cancelled)")
    return Response({"cancelled": True, "id": job_id})


async def status(rt: Any, request: Request, job_id: str) -> Response:
    record = await get_job_status(rt.env, job_id)
    if record is None:
        return _not_found("Job not found")
    return Response(record)


async def events(rt: Any, request: Request, job_id: str) -> Response:
    """Server-sent events of the job's status record: ``status`` (the record as JSON, its
    revision as the event id) now and at each change, a ``: keep-alive`` comment after
    ``HEARTBEAT_SECONDS`` without one, and a last ``end`` event once the status is final
    (completed, failed) or the record expired; then the stream ends. 404 for a job with no
    status. A client reconnecting with ``Last-Event-ID`` of the current revision gets only
    what follows, or a 204 (which tells an ``EventSource`` to stop) if that one was final."""
    change = await wait_job_status_change(rt.env, job_id, None, timeout_seconds=HEARTBEAT_SECONDS)
    revision, record = change["revision"], change["record"]
    if record is None:
        return _not_found("Job not found")
    already_seen = request.headers.get("last-event-id") == str(revision)
    if already_seen and record.get("status") in FINAL_STATUSES:
        return Response(b"", 204)
    stream = _stream(rt, job_id, revision, record, send_first=not already_seen)
    return Response(status=200, headers=EVENT_STREAM_HEADERS, chunks=stream)


async def _stream(
    rt: Any, job_id: str, revision: int, record: dict[str, Any], *, send_first: bool
) -> AsyncIterator[bytes]:
    """The events after the route answered. Cancelled at an await, it just ends: nothing
    is logged and nothing is awaited on the way out."""
    if send_first:
        yield _event("status", record, event_id=str(revision))
    while record.get("status") not in FINAL_STATUSES:
        try:
            change = await wait_job_status_change(rt.env, job_id, revision, timeout_seconds=HEARTBEAT_SECONDS)
        except Exception as exc:
            # The 200 is out already: the error can only be an event, and it ends the stream.
            error = {"error": str(exc) or type(exc).__name__, "type": type(exc).__name__}
            log.warning(
                "job %s: the event stream ended on %s: %s",
                job_id,
                error["type"],
                error["error"],
                extra={"event": "jobs.events_failed", "job_id": job_id, "error": error["error"]},
            )
            yield _event("error", error)
            return
        if change["record"] is None:
            yield _event("end", {"job_id": job_id, "status": None, "reason": "expired"})
            return
        if change["revision"] == revision:
            yield KEEP_ALIVE
            continue
        revision, record = change["revision"], change["record"]
        yield _event("status", record, event_id=str(revision))
    yield _event("end", {"job_id": job_id, "status": record["status"], "reason": "final"})


def _event(name: str, data: dict[str, Any], *, event_id: str | None = None) -> bytes:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"data: {_json(data)}")
    return ("\n".join(lines) + "\n\n").encode()


def _json(value: Any) -> str:
    """One line of JSON (a newline would split the event's data), with bytes as base64 and
    datetimes in ISO 8601, as the RPC route sends them."""
    return json.dumps(value, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> str:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"a job status holds a {type(value).__name__}, which JSON cannot carry")
