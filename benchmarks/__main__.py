"""``python -m benchmarks``: run the benchmarks, print the JSON and the table, save the JSON.

Exit status is 0 when every benchmark ran without crashing and without problems (runtime
misbehaviour such as wrong counts); missed targets are reported, not treated as failures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .machine import machine_info
from .report import build_document, render_table, summary, write_document
from .suite import BENCHMARKS, GROUPS, Settings, run_one, select

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest.json"


def _parser() -> argparse.ArgumentParser:
    names = ", ".join([*BENCHMARKS, *(f"{g} ({'+'.join(m)})" for g, m in GROUPS.items())])
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="~1 s per measurement, 10k/100k actors for memory"
    )
    parser.add_argument("--only", metavar="NAMES", help=f"comma-separated benchmarks or groups: {names}")
    parser.add_argument("--seconds", type=float, help="duration of each timed RPC measurement")
    parser.add_argument("--disk-seconds", type=float, help="duration of each disk measurement")
    parser.add_argument("--resident-actors", type=int, help="actors kept resident for memory-resident")
    parser.add_argument(
        "--resident-call", choices=["increment", "ping"], help="call touching each resident actor"
    )
    parser.add_argument("--bounded-actors", type=int, help="actors touched for memory-bounded")
    parser.add_argument(
        "--bounded-call", choices=["increment", "ping"], help="call touching each actor there"
    )
    parser.add_argument("--bounded-seconds", type=float, help="time limit of memory-bounded")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON path (default {DEFAULT_OUTPUT})"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        chosen = select(args.only)
    except ValueError as exc:
        _parser().error(str(exc))
    settings = (Settings.quick() if args.quick else Settings()).with_overrides(
        seconds=args.seconds,
        disk_seconds=args.disk_seconds,
        resident_actors=args.resident_actors,
        resident_call=args.resident_call,
        bounded_actors=args.bounded_actors,
        bounded_call=args.bounded_call,
        bounded_seconds=args.bounded_seconds,
    )
    date = datetime.now(timezone.utc).isoformat(timespec="seconds")
    log_path = args.output.with_suffix(".log")
    _log_to(log_path)
    load_at_start = os.getloadavg()
    results = []
    for benchmark in chosen:
        print(f"running {benchmark.name} ...", file=sys.stderr, flush=True)
        result = run_one(benchmark, settings)
        print(f"  done in {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
    document = build_document(
        results,
        settings=settings,
        machine=machine_info(Path(os.getcwd()), load_at_start=load_at_start),
        date=date,
        command=[Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]],
    )
    print(write_document(document, args.output))
    print()
    print(_machine_line(document["machine"]))
    print(render_table(results))
    print(f"JSON written to {args.output}; the runtime's log lines (such as each failed delivery) to {log_path}")
    counts = summary(results)
    return 1 if counts["problems"] or counts["errors"] else 0


def _log_to(path: Path) -> None:
    """Send the runtime's log lines to a file, as a server would: they are part of the cost
    measured (a warning per failed delivery, for one), without flooding the table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def _machine_line(machine: dict[str, Any]) -> str:
    filesystem = machine["data_filesystem"] or {}
    load = machine["load_average"]
    return (
        f"{machine['nproc']} CPUs ({machine['cpu_model']}), Python {machine['python']}, "
        f"data on {filesystem.get('type', '?')} {filesystem.get('device', '?')}; "
        f"1-min load average {load['start'][0]:.2f} at start, {load['end'][0]:.2f} at end"
    )


if __name__ == "__main__":
    sys.exit(main())
