"""The dashboard's routes: each handler reads or acts through the Python APIs of the queues,
the scheduler and the job status, and renders a page.

A queue action is two POSTs: ``confirm`` shows what will happen (and changes nothing), its
form's ``act`` does it and redirects to the queue's page (303, so a reload never repeats it).
Every POST is refused, changing nothing, unless its CSRF token matches (``page``); bad input
gets an error page with a 4xx status.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlencode

from runtime import Request, Response, now

from ..errors import QueueNotFoundError
from ..job_status import get_job_status
from ..names import REGISTRY_BINDING
from ..scheduler import cancel_job, list_jobs
from .page import FormRefused, checked_form, error_page, field, redirect, render
from .statistics import runtime_figures

ACTIONS = ("pause", "resume", "purge", "redrive")
DEFAULT_PEEK_LIMIT = 50
MAX_PEEK_LIMIT = 1000
SCHEDULED_SHOWN = 50
MAX_JOB_ID_CHARS = 512
MAX_BODY_CHARS = 2000  # of a message body or a job as shown; the rest is cut
_MESSAGE_ID = re.compile(r"[0-9a-f]{32}")


def routes() -> list[tuple[list[str], str, Any]]:
    return [
        (["GET"], "/dashboard", overview),
        (["GET"], "/dashboard/login", login_form),
        (["POST"], "/dashboard/login", login_without_token),
        (["GET"], "/dashboard/queues/<name>", queue_page),
        (["POST"], "/dashboard/queues/<name>/confirm", confirm),
        (["POST"], "/dashboard/queues/<name>/act", act),
        (["POST"], "/dashboard/scheduled/<job_id>/cancel", cancel_scheduled),
        (["GET"], "/dashboard/jobs", job_lookup),
        (["GET"], "/dashboard/jobs/<path:job_id>", job_page),
    ]


def _registry(rt: Any) -> Any:
    return rt.env[REGISTRY_BINDING]


def _guarded(rt: Any) -> bool:
    return rt.config.http.internal_token is not None


async def overview(rt: Any, request: Request) -> Response:
    registry = _registry(rt)
    queues = []
    for name in registry.names:
        settings = registry.settings(name)
        queues.append(
            {
                **await registry.queue(name).metrics(),
                "name": name,
                "consumer": settings.consumer is not None,
                "dead_letter_queue": settings.dead_letter_queue,
            }
        )
    moment = now()
    scheduled = [
        {**job, "job": _shown(job["job"], indent=None), "due": _when(job["execute_at"], moment)}
        for job in await list_jobs(rt.env, limit=SCHEDULED_SHOWN)
    ]
    return render(
        request,
        "overview.html",
        queues=queues,
        scheduled=scheduled,
        scheduled_shown=SCHEDULED_SHOWN,
        figures=await runtime_figures(rt),
        guarded=_guarded(rt),
        cancelled=request.query.get("cancelled"),
        cancel_outcome=request.query.get("outcome"),
    )


async def login_form(rt: Any, request: Request) -> Response:
    return render(request, "login.html", guarded=_guarded(rt))


async def login_without_token(rt: Any, request: Request) -> Response:
    """With ``internal_token`` set the guard answers this POST; without, nothing to check."""
    return redirect("/dashboard")


def _queue_or_none(rt: Any, name: str) -> Any:
    try:
        return _registry(rt).queue(name)
    except QueueNotFoundError:
        return None


def _unknown_queue(request: Request, name: str) -> Response:
    return error_page(request, 404, f"There is no queue named {name!r}.")


async def queue_page(rt: Any, request: Request, name: str) -> Response:
    queue = _queue_or_none(rt, name)
    if queue is None:
        return _unknown_queue(request, name)
    raw_limit = request.query.get("limit", str(DEFAULT_PEEK_LIMIT))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PEEK_LIMIT:
        return error_page(request, 400, f"limit must be a whole number from 1 to {MAX_PEEK_LIMIT}.")
    moment = now()
    messages = [
        {
            **message,
            "shown_body": _shown(message["body"]),
            "sent": _when(message["timestamp"], moment),
            "next_attempt": None if message["next_attempt_at"] is None else _when(message["next_attempt_at"], moment),
            "died": None
            if not message["dead_letter"] or message["dead_letter"].get("failed_at") is None
            else _when(message["dead_letter"]["failed_at"], moment),
        }
        for message in await queue.peek(int(raw_limit))
    ]
    settings = _registry(rt).settings(name)
    done = request.query.get("done")
    return render(
        request,
        "queue.html",
        name=name,
        queue=await queue.metrics(),
        settings=settings,
        messages=messages,
        limit=int(raw_limit),
        others=[other for other in _registry(rt).names if other != name],
        done=done if done in ACTIONS else None,
        count=count if (count := request.query.get("n", "")).isdigit() else "",
        guarded=_guarded(rt),
    )


def _action(rt: Any, form: dict[str, list[str]]) -> tuple[str, list[str] | None, str | None]:
    """The form's action, its message ids (redrive: None for all) and its target queue."""
    action = field(form, "action")
    if action not in ACTIONS:
        raise FormRefused(f"the action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if action != "redrive":
        return action, None, None
    ids = [i.strip() for i in form.get("ids", []) if i.strip()] or None
    for message_id in ids or ():
        if not _MESSAGE_ID.fullmatch(message_id):
            raise FormRefused(f"{message_id!r} is not a message id (32 hex digits)")
    to = field(form, "to") or None
    if to is not None and _queue_or_none(rt, to) is None:
        raise FormRefused(f"there is no queue named {to!r} to redrive to", 404)
    return action, ids, to


def _queue_and_action(rt: Any, request: Request, name: str) -> tuple[Any, str, list[str], str | None] | Response:
    """The queue a form names and the action it asks for; an error page if either is wrong."""
    queue = _queue_or_none(rt, name)
    if queue is None:
        return _unknown_queue(request, name)
    try:
        action, ids, to = _action(rt, checked_form(request))
    except FormRefused as refused:
        return error_page(request, refused.status, str(refused))
    return queue, action, ids, to


async def confirm(rt: Any, request: Request, name: str) -> Response:
    """What the action will do, and the form that does it. Changes nothing."""
    asked = _queue_and_action(rt, request, name)
    if isinstance(asked, Response):
        return asked
    queue, action, ids, to = asked
    return render(
        request,
        "confirm.html",
        name=name,
        action=action,
        ids=ids or [],
        to=to,
        queue=await queue.metrics(),
        guarded=_guarded(rt),
    )


async def act(rt: Any, request: Request, name: str) -> Response:
    asked = _queue_and_action(rt, request, name)
    if isinstance(asked, Response):
        return asked
    queue, action, ids, to = asked
    count: int | str = ""
    try:
        if action == "pause":
            await queue.pause()
        elif action == "resume":
            await queue.resume()
        elif action == "purge":
            count = await queue.purge()
        else:
            count = await queue.redrive(to=to, ids=ids)
    except ValueError as exc:  # QueueLimitError: e.g. a message that died in no other queue
        return error_page(request, 400, str(exc))
    query = urlencode({"done": action, "n": count})
    return redirect(f"/dashboard/queues/{quote(name, safe='')}?{query}")


async def cancel_scheduled(rt: Any, request: Request, job_id: str) -> Response:
    try:
        checked_form(request)
        cancelled = await cancel_job(rt.env, job_id)
    except FormRefused as refused:
        return error_page(request, refused.status, str(refused))
    except ValueError as exc:  # not a job id
        return error_page(request, 400, str(exc))
    outcome = "cancelled" if cancelled else "gone"
    return redirect(f"/dashboard?{urlencode({'cancelled': job_id, 'outcome': outcome})}")


async def job_lookup(rt: Any, request: Request) -> Response:
    """The lookup form's target: on to the job's page, or the empty form."""
    job_id = request.query.get("id", "").strip()
    if not job_id:
        return render(request, "job.html", job_id=None, job=None, guarded=_guarded(rt))
    if len(job_id) > MAX_JOB_ID_CHARS:
        return error_page(request, 400, f"A job id has at most {MAX_JOB_ID_CHARS} characters.")
    return redirect(f"/dashboard/jobs/{quote(job_id, safe='')}")


async def job_page(rt: Any, request: Request, job_id: str) -> Response:
    if len(job_id) > MAX_JOB_ID_CHARS:
        return error_page(request, 400, f"A job id has at most {MAX_JOB_ID_CHARS} characters.")
    status = await get_job_status(rt.env, job_id)
    if status is None:
        return error_page(request, 404, f"No status for job {job_id!r}: unknown, or expired.")
    moment = now()
    job = {
        **status,
        "progress": _progress(status.get("progress")),
        "shown_result": None if status.get("result") is None else _shown(status["result"]),
        "created": _when(status["created_at"], moment) if status.get("created_at") else None,
        "updated": _when(status["updated_at"], moment) if status.get("updated_at") else None,
    }
    return render(
        request,
        "job.html",
        job_id=job_id,
        job=job,
        events_url=f"/jobs/{quote(job_id, safe='')}/events",
        final=status.get("status") in ("completed", "failed"),
        guarded=_guarded(rt),
    )


def _progress(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return min(100.0, max(0.0, float(value)))


def _shown(value: Any, *, indent: int | None = 2) -> str:
    """A body, job or result as text: JSON where it can be, cut at ``MAX_BODY_CHARS``."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bytes):
        text = f"({len(value)} bytes) {value[:MAX_BODY_CHARS].hex(' ')}"
    else:
        try:
            text = json.dumps(value, indent=indent, ensure_ascii=False, default=str)
        except ValueError:
            text = repr(value)
    return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + " …"


def _when(epoch_seconds: float, moment: float) -> dict[str, str]:
    """A moment as UTC time and as how long ago or ahead of ``moment`` it is."""
    at = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    delta = epoch_seconds - moment
    return {
        "utc": at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        "relative": f"in {_duration(delta)}" if delta > 0.5 else f"{_duration(-delta)} ago",
    }


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86_400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} days"
