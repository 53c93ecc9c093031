"""Miniflare (Cloudflare's workerd) serving ``miniflare/worker.mjs`` on a loopback port.

Durable Object storage is persisted to SQLite files under the run's directory (Miniflare's
``durableObjectsPersist``). Miniflare keeps queue messages in memory, in its queue broker,
so its queue figures do not include writing messages to disk; and it refuses sends while
it holds 10,000 messages, which the producers here answer by pausing and sending again (a refused batch may have
been partly enqueued, so that can deliver some messages twice; the tally counts those).
"""

from __future__ import annotations

import http.client
import json
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import trio

from ..queues import BATCH
from ..wrk import Counters
from .processes import Process
from .workloads import PRODUCERS, Peer, chunks

HERE = Path(__file__).resolve().parent
SERVE = HERE / "miniflare" / "serve.mjs"
PACKAGE = HERE / "node_modules" / "miniflare" / "package.json"
# Miniflare's queue broker sets a timer per message it holds, and workerd allows 10,000
# timers: when producers are that far ahead of the consumer, sendBatch fails, and the
# producer pauses and sends again (as a producer of a full queue would).
REFUSED_SEND_PAUSE = 0.01
ARMING_REQUESTS = 4  # requests of 100 alarms in flight at once


def unavailable() -> str | None:
    if shutil.which("node") is None:
        return "node not found"
    if not PACKAGE.exists():
        return "the npm package miniflare is not installed in benchmarks/peers (npm ci failed?)"
    return None


def version() -> str:
    try:
        return json.loads(PACKAGE.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


class _Miniflare:
    def __init__(self, directory: Path, *, fail_first_attempt: bool = False) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        mode = ["fail-first-attempt"] if fail_first_attempt else []
        self.process = Process(
            ["node", str(SERVE), str(directory / "persist"), *mode], directory / "miniflare.log"
        )
        found = self.process.wait_for_log(r"listening on http://127\.0\.0\.1:(\d+)")
        self.port = int(found.group(1))

    def request(self, method: str, path: str, body: object = None) -> object:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, body=payload)
            response = connection.getresponse()
            text = response.read()
            if response.status != 200:
                log = self.process.log()[-2000:]
                raise RuntimeError(
                    f"{method} {path}: {response.status} {text[:200]!r}; Miniflare's log ends:\n{log}"
                )
            return json.loads(text)
        finally:
            connection.close()

    def stop(self) -> int:
        return self.process.stop()


@contextmanager
def _started(directory: Path, **options: bool) -> Iterator[_Miniflare]:
    miniflare = _Miniflare(directory, **options)
    try:
        yield miniflare
    finally:
        miniflare.stop()


@contextmanager
def serve_http(directory: Path) -> Iterator[Counters]:
    with _started(directory) as miniflare:
        yield Counters(
            port=miniflare.port,
            increment_path="/actors/COUNTERS/{name}/increment",
            read_path="/actors/COUNTERS/{name}/",
            read_value=lambda answer: answer["value"],
        )


class _Queue:
    """Producers POST /queue/send (one ``sendBatch`` of 100); the consumer's tally counts acks."""

    def __init__(self, miniflare: _Miniflare) -> None:
        self.miniflare = miniflare
        self.refused_sends = 0
        self.duplicates = 0

    def send_all(self, count: int, deadline: float) -> None:
        trio.run(partial(self._send_all, count, deadline))

    async def _send_all(self, count: int, deadline: float) -> None:
        batches = count // BATCH
        trio_deadline = trio.current_time() + (deadline - time.monotonic())

        async def producer(index: int) -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", self.miniflare.port)
            buffer = b""
            async with stream:
                for batch in range(index, batches, PRODUCERS):
                    if trio.current_time() >= trio_deadline:
                        return
                    path = f"/queue/send?start={batch * BATCH}"
                    request = f"POST {path} HTTP/1.1\r\nHost: roost\r\nContent-Length: 0\r\n\r\n"
                    while True:
                        await stream.send_all(request.encode())
                        status, body, buffer, _ = await _read_response(stream, buffer)
                        if status == 200:
                            break
                        if status != 500 or b"sendBatch failed" not in body:
                            raise RuntimeError(f"sendBatch answered {status}: {body[:200]!r}")
                        if trio.current_time() >= trio_deadline:
                            return  # still full at the time limit
                        self.refused_sends += 1  # the broker is full: back off, send again
                        await trio.sleep(REFUSED_SEND_PAUSE)

        async with trio.open_nursery() as nursery:
            for index in range(PRODUCERS):
                nursery.start_soon(producer, index)

    def progress(self) -> tuple[int, int]:
        tally = self.miniflare.request("GET", "/queue/tally")
        self.duplicates = tally["duplicates"]
        return tally["acked"], tally["retried"]

    def problems(self) -> list[str]:
        found = [f"{self.duplicates} messages delivered again after being acked"] if self.duplicates else []
        if self.refused_sends:
            found.append(f"{self.refused_sends} sendBatch calls refused (queue full) and sent again")
        return found


@contextmanager
def serve_queue(directory: Path, fail_first_attempt: bool) -> Iterator[_Queue]:
    with _started(directory, fail_first_attempt=fail_first_attempt) as miniflare:
        yield _Queue(miniflare)


class _Alarms:
    """Durable Objects armed 100 per request; each alarm reports its lateness to a sink object."""

    def __init__(self, miniflare: _Miniflare) -> None:
        self.miniflare = miniflare

    def arm(self, group: str, items: list[tuple[str, float]], deadline: float) -> int:
        def arm_chunk(chunk: list[tuple[str, float]]) -> int:
            if time.monotonic() >= deadline:
                return 0
            body = [[name, round(due * 1000)] for name, due in chunk]
            self.miniflare.request("POST", f"/alarms/arm?group={group}", body)
            return len(chunk)

        with ThreadPoolExecutor(ARMING_REQUESTS) as pool:
            return sum(pool.map(arm_chunk, chunks(items)))

    def fired(self, group: str) -> int:
        return len(self.lateness(group))

    def lateness(self, group: str) -> list[float]:
        return [late / 1000 for late in self.miniflare.request("GET", f"/alarms/lateness?group={group}")]


@contextmanager
def serve_alarms(directory: Path) -> Iterator[_Alarms]:
    with _started(directory) as miniflare:
        yield _Alarms(miniflare)


PEER = Peer(
    name="Miniflare",
    setup=f"miniflare {version()} (workerd), Durable Objects persisted to disk, Queues in memory",
    unavailable=unavailable,
    http=serve_http,
    queue=serve_queue,
    alarms=serve_alarms,
)


async def _read_response(stream: trio.SocketStream, buffer: bytes) -> tuple[int, bytes, bytes, bool]:
    """(status, body, bytes left over, whether the server closes the connection) of the next
    response on ``stream``."""
    while True:
        head, separator, rest = buffer.partition(b"\r\n\r\n")
        if separator:
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    close = value.strip().lower() == b"close"
            if len(rest) >= length:
                return int(head.split(b" ", 2)[1]), rest[:length], rest[length:], close
        data = await stream.receive_some(65536)
        if not data:
            raise ConnectionError("the server closed the connection before its answer")
        buffer += data
