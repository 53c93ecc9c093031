"""The operator's CLI: ``roost queues ...`` and ``roost jobs ...`` against a running server.

It only speaks HTTP (the routes of API.md section 6), so it imports nothing of the actors
and runs without a data directory. Exit codes: 0 done, 1 the server refused (its error on
one line), 2 bad usage or no server to talk to (one line naming the URL); never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .client import DEFAULT_URL, ServerClient, ServerRefused, ServerUnreachable, check_url
from .commands import add_commands

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "add_commands", "run"]

COMMANDS = frozenset({"queues", "jobs"})
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2  # argparse's own exit status for bad usage
URL_ENV = "ROOST_URL"
TOKEN_ENV = "ROOST_TOKEN"


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``queues``/``jobs`` subcommand; its exit code."""
    url = args.url or os.environ.get(URL_ENV) or DEFAULT_URL
    try:
        check_url(url)
    except ValueError as exc:
        args.command_parser.error(str(exc))
    client = ServerClient(url, os.environ.get(TOKEN_ENV) or None, args.timeout)
    try:
        payload, text = args.handler(client, args)
    except ServerRefused as exc:
        hint = f" (set ${TOKEN_ENV} to the server's internal token)" if exc.status == 401 else ""
        _fail(f"{exc}{hint}")
        return EXIT_REFUSED
    except ServerUnreachable as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except (KeyError, TypeError, AttributeError) as exc:
        # An answer of another shape: a server of another version, or not Roost at all.
        _fail(f"the answer of {url} is not what this command expects ({type(exc).__name__}: {exc})")
        return EXIT_REFUSED
    try:
        print(json.dumps(payload, indent=2) if args.json else text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more to say, and nothing to flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _fail(message: str) -> None:
    print("roost: " + " ".join(message.split()), file=sys.stderr)
