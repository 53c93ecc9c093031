"""``python -m benchmarks.peers``: Roost and its peers on the same workloads, side by side.

For each workload, the systems run in alternation (Roost, then each peer, repeated), each
run in a fresh scratch directory. Prints the table at the end and writes it as JSON and
Markdown. A peer that is not installed is reported in the table, not left out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from ..machine import machine_info
from ..suite import BENCHMARKS, Benchmark, Settings, run_one
from . import job_queues, miniflare, restate_peer, workloads
from .comparison import ROOST, Runs, compare, render_markdown, render_text, rows
from .workloads import Peer

RESULTS = Path(__file__).resolve().parent.parent / "results"
WORKLOADS = ("http-1", "http-1000", "queues", "alarms")
PEERS: tuple[Peer, ...] = (miniflare.PEER, restate_peer.PEER, job_queues.HUEY, job_queues.RQ)
WATCHDOG_SECONDS = 600.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer messages, 1 repetition")
    parser.add_argument("--repetitions", type=int, help="runs per system and workload (default 3, quick 1)")
    parser.add_argument("--only", metavar="WORKLOADS", help=f"comma-separated, from {', '.join(WORKLOADS)}")
    parser.add_argument("--queue-timeout", type=float, help="time limit of each peer queue case, seconds")
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "peers.json", help="JSON path (.md beside it)"
    )
    return parser


def _peer_benchmark(peer: Peer, workload: str, settings: Settings, queue_timeout: float) -> Benchmark | None:
    if workload.startswith("http-") and peer.http:
        run = partial(workloads.http_increments, peer.http, actors=int(workload.split("-")[1]))
    elif workload == "queues" and peer.queue:
        run = partial(workloads.queue_throughput, peer.queue, timeout=queue_timeout)
    elif workload == "alarms" and peer.alarms:
        run = partial(workloads.alarm_lateness, peer.alarms)
    else:
        return None
    return Benchmark(
        f"{workload}-{peer.name.lower()}", f"{workload} on {peer.name}", run, lambda s: WATCHDOG_SECONDS
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.quick() if args.quick else Settings()
    repetitions = args.repetitions or (1 if args.quick else 3)
    queue_timeout = args.queue_timeout or (15.0 if args.quick else 30.0)
    chosen = WORKLOADS if args.only is None else tuple(w.strip() for w in args.only.split(","))
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        _parser().error(f"unknown workloads {sorted(unknown)}; known: {', '.join(WORKLOADS)}")

    missing = {peer.name: reason for peer in PEERS if (reason := peer.unavailable())}
    for name, reason in missing.items():
        print(f"{name} is not installed: {reason}", file=sys.stderr)
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_at_start = os.getloadavg()
    runs = Runs()
    taking_part: dict[str, list[str]] = {}
    for workload in chosen:
        systems: list[tuple[str, Benchmark]] = [(ROOST, BENCHMARKS[workload])]
        for peer in PEERS:
            benchmark = _peer_benchmark(peer, workload, settings, queue_timeout)
            if benchmark is not None:
                taking_part.setdefault(workload, []).append(peer.name)
                if peer.name not in missing:
                    systems.append((peer.name, benchmark))
        for repetition in range(1, repetitions + 1):
            for system, benchmark in systems:
                print(
                    f"{workload}, run {repetition} of {repetitions}: {system} ...",
                    file=sys.stderr,
                    flush=True,
                )
                result = run_one(benchmark, settings)
                print(f"  done in {result.seconds:.1f} s", file=sys.stderr, flush=True)
                runs.add(workload, system, result)

    table = compare(
        rows(
            settings.queue_messages,
            settings.queue_failing,
            settings.alarm_actors,
            settings.http_connections,
            settings.http_seconds,
        ),
        runs,
        {w: p for w, p in taking_part.items() if w in chosen},
        missing,
    )
    machine = machine_info(Path.cwd(), load_at_start=load_at_start)
    notes = _notes(runs, taking_part, missing)
    document = {
        "date": date,
        "command": [Path(sys.executable).name, "-m", "benchmarks.peers", *sys.argv[1:]],
        "repetitions": repetitions,
        "queue_timeout_seconds": queue_timeout,
        "machine": machine,
        "systems": {ROOST: "roost serve / open_runtime, LMDB with fsync", **{p.name: p.setup for p in PEERS}},
        "not_installed": missing,
        "table": table,
        "problems": notes,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    markdown = _markdown(document)
    args.output.with_suffix(".md").write_text(markdown)
    print()
    print(f"{date}, {_machine_line(machine)}; median of {repetitions} run(s)")
    print(render_text(table))
    for line in notes:
        print(line)
    print(f"written to {args.output} and {args.output.with_suffix('.md')}")
    return 0


def _notes(runs: Runs, taking_part: dict[str, list[str]], missing: dict[str, str]) -> list[str]:
    notes = [f"{name}: not installed: {reason}" for name, reason in missing.items()]
    for workload, peers in taking_part.items():
        for system in (ROOST, *peers):
            notes += [f"{system}, {workload}: {note}" for note in runs.notes(workload, system)]
            notes += [f"{system}, {workload}: {problem}" for problem in runs.problems(workload, system)]
    return notes


def _machine_line(machine: dict[str, Any]) -> str:
    load = machine["load_average"]
    return (
        f"{machine['nproc']} CPUs ({machine['cpu_model']}), Python {machine['python']}; "
        f"1-min load average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end"
    )


def _markdown(document: dict[str, Any]) -> str:
    lines = [
        f"{document['date'][:10]}, {_machine_line(document['machine'])}, "
        f"median of {document['repetitions']} run(s), `{' '.join(document['command'])}`:",
        "",
        render_markdown(document["table"]),
        "",
        *(f"- {name}: {setup}" for name, setup in document["systems"].items()),
    ]
    if document["problems"]:
        lines += ["", "Problems seen:", "", *(f"- {note}" for note in document["problems"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
