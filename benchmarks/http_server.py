"""The HTTP server alone: a no-op ASGI app on Roost's server and on hypercorn, side by side.

Each server runs in a process of its own (benchmarks/noop_server.py) and is driven by wrk with
the HTTP benchmarks' connections and time, POSTs with empty bodies. The figure is the rate of
Roost's server over hypercorn's: what an HTTP request costs before any actor runs, which caps
every ``roost serve`` process.
"""

from __future__ import annotations

import sys
from pathlib import Path

from . import wrk
from .figures import BenchmarkResult
from .http_wrk import add_run_figures
from .noop_server import SERVERS
from .peers.processes import Process
from .roost_server import ROOT, free_port, healthy

START_SECONDS = 30.0


def noop_servers(directory: Path, *, connections: int, seconds: float) -> BenchmarkResult:
    result = BenchmarkResult(
        "http-server", f"HTTP server alone: a no-op ASGI app (wrk), {connections} connections"
    )
    rates: dict[str, float] = {}
    directory.mkdir(parents=True, exist_ok=True)
    for server in SERVERS:
        port = free_port()
        process = Process(
            [sys.executable, "-m", "benchmarks.noop_server", server, str(port)],
            directory / f"{server}.log",
            cwd=ROOT,
        )
        try:
            process.wait_until(lambda: healthy(port), START_SECONDS, f"{server} answering")
            run = wrk.drive(port, "/", "", actors=1, connections=connections, seconds=seconds)
        finally:
            exit_code = process.stop()
        result.check(exit_code == 0, f"the {server} process exited {exit_code} after SIGTERM")
        add_run_figures(result, server, f"{server}: ", run, counted=False)
        rates[server] = run.requests_per_second
    result.add("ratio", "Roost's server / hypercorn, requests/s", rates["roost"] / rates["hypercorn"], "x")
    return result
