"""HTTP durable increments driven by wrk, a load generator in C, and the count check after.

wrk runs ``wrk_increments.lua``: every connection sends ``POST`` to an increment path,
cycling over the counters' names, for a fixed time. Its output is parsed (the script's
``wrk-json`` line, with wrk's own count of error answers as a cross-check), then every counter
is read back over HTTP. The check is honest about what wrk cannot tell: when its time is up, wrk
drops each connection's request in flight, and a socket error drops one too, so those
requests may or may not have been applied. The counted sum must lie in
[acknowledged, acknowledged + in doubt], where acknowledged is the number of 2xx answers and
in doubt the connections plus the read and write errors; below is a lost increment, above
a doubled one. An error answer (non-2xx) is not acknowledged, and is reported apart.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent / "wrk_increments.lua"
THREADS = 1  # wrk's threads: one is far more than these rates need, and leaves the server the rest
TIMEOUT_SECONDS = 60  # wrk's per-request timeout, far above any latency, so that none is dropped
_JSON_LINE = re.compile(r"^wrk-json (\{.*\})$", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")  # wrk counts the answers >= 400


@dataclass(frozen=True, slots=True)
class Counters:
    """Where a system keeps the benchmark's counters, as HTTP paths with ``{name}`` in them."""

    port: int
    increment_path: str  # POSTed with an empty body
    read_path: str  # GET: the JSON answer holds the count
    read_value: Callable[[Any], int]  # the count from that answer


@dataclass(slots=True)
class WrkRun:
    """What one wrk run reports, and the count read back after it."""

    connections: int
    seconds: float
    requests: int  # answers received, of any status
    statuses: dict[int, int]
    errors: dict[str, int]  # wrk's socket errors: connect, read, write, timeout; and status (>= 400)
    latency_ms: dict[str, float]  # p50, p99, max, mean
    summary_non_2xx: int  # wrk's own "Non-2xx or 3xx responses" line, answers >= 400 (0 when absent)
    counted: int | None = None  # the counters' sum read back after the run
    problems: list[str] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def acknowledged(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)

    @property
    def non_2xx(self) -> int:
        return self.requests - self.acknowledged

    @property
    def socket_errors(self) -> int:
        """Connections that failed to open, or broke while reading or writing (not timeouts)."""
        return self.errors["connect"] + self.errors["read"] + self.errors["write"]

    @property
    def in_doubt(self) -> int:
        """Requests sent whose answer never came: one per connection at the end, one per socket error."""
        return self.connections + self.errors["read"] + self.errors["write"]

    @property
    def count_ok(self) -> bool | None:
        """Whether the counted sum lies in [acknowledged, acknowledged + in doubt] (None: not read)."""
        if self.counted is None:
            return None
        return self.acknowledged <= self.counted <= self.acknowledged + self.in_doubt

    def as_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "seconds": self.seconds,
            "requests": self.requests,
            "statuses": self.statuses,
            "errors": self.errors,
            "latency_ms": self.latency_ms,
            "wrk_non_2xx_or_3xx": self.summary_non_2xx,
            "acknowledged": self.acknowledged,
            "in_doubt": self.in_doubt,
            "counted": self.counted,
            "counted_within_bounds": self.count_ok,
        }


def unavailable() -> str | None:
    if shutil.which("wrk") is None:
        return "wrk not found (the Debian package wrk: bash benchmarks/install_wrk.sh)"
    return None


def parse(output: str, connections: int) -> WrkRun:
    """A ``WrkRun`` from wrk's standard output; ``ValueError`` if the script's line is missing."""
    found = _JSON_LINE.search(output)
    if found is None:
        raise ValueError(f"no wrk-json line in wrk's output:\n{output[-2000:]}")
    data = json.loads(found.group(1))
    non_2xx = _NON_2XX.search(output)
    run = WrkRun(
        connections=connections,
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        statuses={int(status): count for status, count in data["statuses"].items()},
        errors=data["errors"],
        latency_ms={key: value / 1000 for key, value in data["latency_us"].items()},
        summary_non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )
    # The script's count by status against wrk's own counts: a mismatch is a broken script.
    if sum(run.statuses.values()) != run.requests:
        run.problems.append(f"the script counted {run.statuses} answers, wrk {run.requests}")
    at_least_400 = sum(count for status, count in run.statuses.items() if status >= 400)
    if at_least_400 != run.summary_non_2xx:
        run.problems.append(
            f"wrk printed {run.summary_non_2xx} non-2xx or 3xx answers,"
            f" the script counted {at_least_400} >= 400"
        )
    return run


def run_increments(counters: Counters, *, actors: int, connections: int, seconds: float) -> WrkRun:
    """Drive ``counters`` with wrk for ``seconds``, then read the counters back and check them."""
    prefix, _, suffix = counters.increment_path.partition("{name}")
    run = drive(counters.port, prefix, suffix, actors=actors, connections=connections, seconds=seconds)
    try:
        run.counted = read_back(counters, [f"c{n}" for n in range(actors)])  # the script's names
    except (OSError, http.client.HTTPException, ValueError) as exc:
        run.problems.append(f"the counters could not be read back: {exc}")
    if run.count_ok is False:
        run.problems.append(
            f"counters sum to {run.counted}, but {run.acknowledged} increments were answered 2xx"
            f" and at most {run.in_doubt} more were in doubt (cut off by the end or a socket error);"
            f" {run.non_2xx} answers were not 2xx"
        )
    return run


def drive(port: int, prefix: str, suffix: str, *, actors: int, connections: int, seconds: float) -> WrkRun:
    """wrk's POSTs to ``prefix`` + ``c<n>`` + ``suffix`` on ``port`` for ``seconds``, ``n``
    cycling over ``actors``; what wrk reports (nothing is read back)."""
    if (reason := unavailable()) is not None:
        raise RuntimeError(reason)
    command = [
        "wrk",
        f"--threads={THREADS}",
        f"--connections={connections}",
        f"--duration={seconds:g}s",
        f"--timeout={TIMEOUT_SECONDS}s",
        f"--script={SCRIPT}",
        f"http://127.0.0.1:{port}",
        "--",
        prefix,
        str(actors),
        suffix,
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if finished.returncode != 0:
        raise RuntimeError(f"wrk exited {finished.returncode}: {finished.stderr or finished.stdout}")
    return parse(finished.stdout, connections)


def read_back(counters: Counters, names: list[str]) -> int:
    """The sum of the named counters, each read with one GET over a kept-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", counters.port, timeout=30)
    total = 0
    try:
        for name in names:
            connection.request("GET", counters.read_path.format(name=name))
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise ValueError(f"reading counter {name} back answered {response.status}: {body[:200]!r}")
            total += counters.read_value(json.loads(body))
    finally:
        connection.close()
    return total
