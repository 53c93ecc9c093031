"""The ``roost queues ...`` and ``roost jobs ...`` subcommands: their arguments and what each
asks the server and prints.

Each handler takes the ``ServerClient`` and the parsed arguments and returns what it
got (printed as JSON with ``--json``) and its text for a person. Usage errors that the
parser cannot see (``purge`` without ``--yes``, a body that is not JSON) exit 2 through
the subcommand's own parser, as argparse's own errors do.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from .client import DEFAULT_TIMEOUT_SECONDS, DEFAULT_URL, ServerClient, ServerRefused, path
from .tables import duration, fields, shown, table, when

Outcome = tuple[Any, str]  # (the server's JSON, the text for a person)
Handler = Callable[[ServerClient, argparse.Namespace], Outcome]

JOBS_DESCRIPTION = """\
Two kinds of job record, kept apart:
  scheduled jobs (schedule_job: a message sent to a queue at a given time) -- `list` shows
  those not sent yet, `cancel ID` cancels one (ID is what schedule_job returned);
  job status (update_job_status: status, progress, result of a piece of work) -- `status ID`
  shows one (ID is the application's own job id).
"""


def add_commands(commands: Any) -> None:
    """Add ``queues`` and ``jobs`` to the ``roost`` parser's subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        help=f"the server (default: $ROOST_URL, else {DEFAULT_URL}); the token is read from $ROOST_TOKEN",
    )
    common.add_argument("--json", action="store_true", help="print the server's JSON answer, for scripts")
    common.add_argument(
        "--timeout",
        type=_positive(float),
        default=DEFAULT_TIMEOUT_SECONDS,
        help="seconds to wait for the server's answer (default: %(default)s)",
    )

    def leaf(group: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser = group.add_parser(name, parents=[common], help=help_text, description=help_text)
        parser.set_defaults(handler=handler, command_parser=parser)
        return parser

    queues = commands.add_parser(
        "queues",
        help="inspect and steer the queues of a running server",
        description="The queues of a running server.",
    )
    actions = queues.add_subparsers(dest="action", required=True, metavar="ACTION")
    leaf(actions, "list", _queues_list, "every queue with its figures")
    leaf(actions, "info", _queues_info, "one queue's figures").add_argument("name", metavar="NAME")
    peek = leaf(actions, "peek", _queues_peek, "the oldest messages of a queue, unchanged")
    peek.add_argument("name", metavar="NAME")
    peek.add_argument("--limit", type=_positive(int), default=10, help="how many (default: %(default)s)")
    send = leaf(actions, "send", _queues_send, "send one message to a queue")
    send.add_argument("name", metavar="NAME")
    send.add_argument("body", metavar="BODY", help="the body, as JSON (with --text: as it is)")
    send.add_argument("--text", action="store_true", help="send BODY as a text message, not JSON")
    send.add_argument("--delay", type=_not_negative(float), default=0, help="seconds before delivery (default: 0)")
    leaf(actions, "pause", _queues_pause, "stop delivering a queue's messages (sends still accepted)").add_argument(
        "name", metavar="NAME"
    )
    leaf(actions, "resume", _queues_resume, "deliver a paused queue's messages again").add_argument(
        "name", metavar="NAME"
    )
    purge = leaf(actions, "purge", _queues_purge, "delete every message of a queue")
    purge.add_argument("name", metavar="NAME")
    purge.add_argument("--yes", action="store_true", help="yes, delete them (required)")
    redrive = leaf(actions, "redrive", _queues_redrive, "move messages of a queue (a dead-letter queue) back")
    redrive.add_argument("name", metavar="NAME")
    redrive.add_argument("--to", metavar="QUEUE", help="where to (default: back to the queue each died in)")
    redrive.add_argument(
        "--ids", nargs="+", metavar="ID", help="only these message ids (space or comma separated; default: all)"
    )

    jobs = commands.add_parser(
        "jobs",
        help="scheduled jobs and job status of a running server",
        description=JOBS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = leaf(actions, "list", _jobs_list, "the scheduled jobs not sent yet, soonest first")
    listing.add_argument("--limit", type=_positive(int), help="only the soonest N")
    leaf(actions, "status", _jobs_status, "a job's status record (update_job_status)").add_argument(
        "job_id", metavar="ID"
    )
    leaf(actions, "cancel", _jobs_cancel, "cancel a scheduled job not sent yet").add_argument("job_id", metavar="ID")


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
        return value

    return parse


def _not_negative(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value >= 0:
            raise argparse.ArgumentTypeError(f"must be a number of at least 0, not {text!r}")
        return value

    return parse


# -- queues ----------------------------------------------------------------------------------


QUEUE_COLUMNS = ("backlog", "in_flight", "delayed", "acked", "retried", "dead_lettered", "paused")


def _queues_list(client: ServerClient, args: argparse.Namespace) -> Outcome:
    answer = client.call("GET", "/queues")
    if not answer["queues"]:
        return answer, "no queues are configured"
    rows = [
        [
            q["queue"],
            *(q[c] for c in QUEUE_COLUMNS[:3]),
            duration(q["oldest_age_seconds"]),
            *(q[c] for c in QUEUE_COLUMNS[3:]),
        ]
        for q in answer["queues"]
    ]
    headers = ["QUEUE", "BACKLOG", "IN_FLIGHT", "DELAYED", "OLDEST", "ACKED", "RETRIED", "DEAD_LETTERED", "PAUSED"]
    return answer, table(headers, rows)


def _queues_info(client: ServerClient, args: argparse.Namespace) -> Outcome:
    answer = client.call("GET", path("queues", args.name))
    pairs = [(key, duration(value) if key == "oldest_age_seconds" else value) for key, value in answer.items()]
    return answer, fields([(key.removesuffix("_seconds"), value) for key, value in pairs])


def _queues_peek(client: ServerClient, args: argparse.Namespace) -> Outcome:
    answer = client.call("GET", path("queues", args.name, "messages"), query={"limit": str(args.limit)})
    messages = answer["messages"]
    if not messages:
        return answer, f"queue {args.name!r} has no messages"
    rows = [
        [
            m["id"],
            m["attempts"],
            when(m["timestamp_ms"] / 1000),
            "-" if m.get("next_attempt_at_ms") is None else when(m["next_attempt_at_ms"] / 1000),
            _died(m.get("dead_letter")),
            shown(m["body"]),
        ]
        for m in messages
    ]
    return answer, table(["ID", "ATTEMPTS", "SENT", "NEXT_ATTEMPT", "DEAD_LETTER", "BODY"], rows)


def _died(dead_letter: dict[str, Any] | None) -> str:
    if not dead_letter:
        return "-"
    return shown(f"from {dead_letter.get('queue')}: {dead_letter.get('error') or dead_letter.get('reason')}")


def _queues_send(client: ServerClient, args: argparse.Namespace) -> Outcome:
    if args.text:
        message: dict[str, Any] = {"body": args.body, "content_type": "text"}
    else:
        try:
            message = {"body": json.loads(args.body), "content_type": "json"}
        except ValueError as exc:
            args.command_parser.error(f"BODY is not JSON ({exc}); pass --text to send it as text")
    if args.delay:
        message["delay_seconds"] = args.delay
    answer = client.call("POST", path("queues", args.name, "messages"), body=message)
    later = f", delivered in {duration(args.delay)}" if args.delay else ""
    return answer, f"sent message {answer['id']} to queue {args.name!r}{later}"


def _queues_pause(client: ServerClient, args: argparse.Namespace) -> Outcome:
    answer = client.call("POST", path("queues", args.name, "pause"))
    return answer, f"queue {args.name!r} paused: nothing is delivered, sends are still accepted"


def _queues_resume(client: ServerClient, args: argparse.Namespace) -> Outcome:
    answer = client.call("POST", path("queues", args.name, "resume"))
    return answer, f"queue {args.name!r} resumed"


def _queues_purge(client: ServerClient, args: argparse.Namespace) -> Outcome:
    if not args.yes:
        args.command_parser.error(f"purge deletes every message of queue {args.name!r}: pass --yes to do it")
    answer = client.call("DELETE", path("queues", args.name, "messages"))
    return answer, f"purged {answer['purged']} message(s) from queue {args.name!r}"


def _queues_redrive(client: ServerClient, args: argparse.Namespace) -> Outcome:
    body: dict[str, Any] = {}
    if args.to is not None:
        body["to"] = args.to
    if args.ids is not None:
        body["ids"] = [i for part in args.ids for i in part.split(",") if i]
    answer = client.call("POST", path("queues", args.name, "redrive"), body=body)
    where = f"to queue {args.to!r}" if args.to is not None else "back to the queues they died in"
    return answer, f"moved {answer['moved']} message(s) from queue {args.name!r} {where}"


# -- jobs ------------------------------------------------------------------------------------


def _jobs_list(client: ServerClient, args: argparse.Namespace) -> Outcome:
    answer = client.call("GET", "/jobs", query=None if args.limit is None else {"limit": str(args.limit)})
    if not answer["jobs"]:
        return answer, "no scheduled jobs are pending"
    rows = [
        [j["id"], j["queue"], when(j["execute_at"], now=answer.get("now")), when(j["created_at"]), shown(j["job"])]
        for j in answer["jobs"]
    ]
    return answer, table(["ID", "QUEUE", "DUE", "CREATED", "JOB"], rows)


def _jobs_status(client: ServerClient, args: argparse.Namespace) -> Outcome:
    try:
        answer = client.call("GET", path("jobs", args.job_id, "status"))
    except ServerRefused as exc:
        if exc.status != 404:
            raise
        raise ServerRefused(404, f"no status for job {args.job_id!r}: unknown, or expired", exc.type_name) from None
    pairs = [
        (key, when(value) if key in ("created_at", "updated_at") and isinstance(value, (int, float)) else value)
        for key, value in answer.items()
    ]
    return answer, fields(pairs)


def _jobs_cancel(client: ServerClient, args: argparse.Namespace) -> Outcome:
    answer = client.call("DELETE", path("jobs", args.job_id))
    return answer, f"cancelled scheduled job {args.job_id}"
