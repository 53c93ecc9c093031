"""A closed-loop HTTP load: ``connections`` clients, each sending its next request when the
previous one answered, for a bounded time; latencies, statuses and the server's memory.

Bounded in time (``seconds``, plus one request timeout to finish) and in connections. Each
client is one keep-alive HTTP/1.1 connection speaking just enough HTTP for Roost's answers
(``content-length`` bodies): a full client library costs more CPU per request than the
server on a small machine, and would be measured instead of it.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from serve_process import ServeProcess

REQUEST_TIMEOUT_SECONDS = 30.0
# Statuses the HTTP reference documents for a healthy server under load: 2xx, and 429
# (an actor's inbox is full).
ACCEPTED_UNDER_LOAD = {200, 202, 429}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


# (method, path, JSON body or None) of a connection's next request, given a running request
# number and the connection's previous answer (None at first, or after a failed request).
RequestMaker = Callable[[int, Answer | None], tuple[str, str, object]]


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self._stream = stream
        self._host = host
        self._buffer = bytearray()

    @classmethod
    async def open(cls, url: str) -> Connection:
        host, port = url.removeprefix("http://").split(":")
        return cls(await trio.open_tcp_stream(host, int(port)), host)

    async def request(self, method: str, path: str, body: object) -> Answer:
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nhost: {self._host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\n\r\n"
        )
        await self._stream.send_all(head.encode() + payload)
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            await self._receive()
        lines = self._buffer[:end].decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers["content-length"])
        while len(self._buffer) < length:
            await self._receive()
        answer = Answer(int(lines[0].split(" ", 2)[1]), bytes(self._buffer[:length]))
        del self._buffer[:length]
        return answer

    async def _receive(self) -> None:
        chunk = await self._stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self._buffer += chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


@dataclass
class LoadReport:
    seconds: float
    connections: int
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int | str] = field(default_factory=Counter)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, bytes)
    # The private part of RSS (RssAnon): RSS also counts LMDB's mapped pages, which grow
    # with the data on disk and which the kernel can reclaim.
    private_samples: list[int] = field(default_factory=list)

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
            ("RSS every 5 s, MiB", " ".join(f"{r / 2**20:.0f}" for r in rss[::5])),
            ("  of which private, every 5 s", " ".join(f"{r / 2**20:.0f}" for r in self.private_samples[::5])),
        ]


async def run_load(
    server: ServeProcess, make_request: RequestMaker, *, connections: int, seconds: float
) -> LoadReport:
    report = LoadReport(seconds=seconds, connections=connections)
    counter = iter(range(10**12))
    started = time.monotonic()
    stop_at = started + seconds

    async def one_connection() -> None:
        connection = None
        answer = None
        while time.monotonic() < stop_at:
            method, path, body = make_request(next(counter), answer)
            sent = time.perf_counter()
            answer = None
            with trio.move_on_after(REQUEST_TIMEOUT_SECONDS) as timeout:
                try:
                    connection = connection or await Connection.open(server.url)
                    answer = await connection.request(method, path, body)
                except (OSError, KeyError, ValueError) as exc:
                    report.statuses[type(exc).__name__] += 1
            if timeout.cancelled_caught:
                report.statuses["timeout"] += 1
            if answer is None:
                if connection is not None:
                    await connection.aclose()
                connection = None
                continue
            report.latencies.append(time.perf_counter() - sent)
            report.statuses[answer.status] += 1
        if connection is not None:
            await connection.aclose()

    async def sample_memory() -> None:
        while time.monotonic() < stop_at:
            report.rss_samples.append((time.monotonic() - started, server.rss_bytes()))
            report.private_samples.append(server.rss_bytes("RssAnon"))
            await trio.sleep(1.0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sample_memory)
        for _ in range(connections):
            nursery.start_soon(one_connection)
    return report
