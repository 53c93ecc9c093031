"""A closed-loop HTTP load: ``connections`` clients, each sending its next request when the
previous one answered, for a bounded time; latencies, statuses and the server's memory.

Bounded in time (``seconds``, plus one request timeout to finish) and in connections.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import trio
from serve_process import ServeProcess

REQUEST_TIMEOUT_SECONDS = 30.0
# Statuses the HTTP reference documents for a healthy server under load: 2xx, and 429
# (an actor's inbox is full).
ACCEPTED_UNDER_LOAD = {200, 202, 429}

# (method, path, JSON body) of a connection's next request, given a running request number
# and the connection's previous response (None at first, or after a failed request).
RequestMaker = Callable[[int, httpx.Response | None], tuple[str, str, object]]


@dataclass
class LoadReport:
    seconds: float
    connections: int
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, bytes)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> dict[int | str, int]:
        return {status: n for status, n in self.statuses.items() if status not in ACCEPTED_UNDER_LOAD}

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def rss_growth(self) -> float:
        """Median RSS of the last third of the run over that of the first third, minus 1."""
        samples = [rss for _, rss in self.rss_samples]
        third = max(1, len(samples) // 3)
        return statistics.median(samples[-third:]) / statistics.median(samples[:third]) - 1

    def summary(self) -> list[tuple[str, str]]:
        rss = [rss for _, rss in self.rss_samples]
        return [
            ("connections x seconds", f"{self.connections} x {self.seconds:.0f}"),
            ("requests", f"{self.requests} ({self.requests / self.seconds:.0f}/s)"),
            ("statuses", ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items(), key=str))),
            ("errors (not 2xx or 429)", str(sum(self.errors.values()))),
            (
                "latency p50 / p99 / max",
                f"{self.percentile(0.5) * 1000:.0f} / {self.percentile(0.99) * 1000:.0f} / "
                f"{max(self.latencies, default=float('nan')) * 1000:.0f} ms",
            ),
            (
                "server RSS min / max",
                f"{min(rss) / 2**20:.1f} / {max(rss) / 2**20:.1f} MiB" if rss else "not sampled",
            ),
            ("RSS growth, last third over first", f"{self.rss_growth() * 100:+.1f} %" if rss else "n/a"),
        ]


async def run_load(
    server: ServeProcess, make_request: RequestMaker, *, connections: int, seconds: float
) -> LoadReport:
    report = LoadReport(seconds=seconds, connections=connections)
    counter = iter(range(10**12))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    started = time.monotonic()
    stop_at = started + seconds
    async with httpx.AsyncClient(
        base_url=server.url, timeout=REQUEST_TIMEOUT_SECONDS, limits=limits
    ) as client:

        async def one_connection() -> None:
            response = None
            while time.monotonic() < stop_at:
                method, path, body = make_request(next(counter), response)
                sent = time.perf_counter()
                try:
                    response = await client.request(method, path, json=body)
                except httpx.HTTPError as exc:
                    report.statuses[type(exc).__name__] += 1
                    response = None
                    continue
                report.latencies.append(time.perf_counter() - sent)
                report.statuses[response.status_code] += 1

        async def sample_memory() -> None:
            while time.monotonic() < stop_at:
                report.rss_samples.append((time.monotonic() - started, server.rss_bytes()))
                await trio.sleep(1.0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample_memory)
            for _ in range(connections):
                nursery.start_soon(one_connection)
    return report
