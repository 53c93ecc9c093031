"""HTTP load on a real ``roost serve``: 64 keep-alive connections doing durable increments.

Starts ``roost serve`` as a subprocess on a free loopback port with the benchmark's counter
app, then this process drives it with a small HTTP/1.1 client on trio: each connection
sends ``POST /actors/COUNTERS/{name}/increment`` and waits for the answer, for a fixed time
and at most a fixed count. Two cases: every request to one actor, and spread over 1,000.
Afterwards the counters' sum must equal the number of 200 answers (nothing acknowledged lost,
nothing counted twice). A connection the server resets or refuses is counted as a connection
error and replaced by a new one; the request it carried is in doubt (it may have been applied
before the reset), so the sum may then exceed the 200 answers by at most the requests in doubt.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

from .counter import BINDING
from .figures import BenchmarkResult, Target
from .latency import summarize

ROOT = Path(__file__).resolve().parent.parent
CONFIG = f"""
[[durable_objects.bindings]]
name = "{BINDING}"
class_name = "benchmarks.counter:Counter"
"""
REQUESTS_PER_SECOND_TARGET = 2500.0
P99_TARGET_MS = 100.0
# After a broken or refused connection, so that a server that refuses every one is not
# hammered in a tight loop.
_RECONNECT_PAUSE_SECONDS = 0.01


class _Server:
    """``roost serve`` on a free port, its log in a file, stopped with SIGTERM."""

    def __init__(self, directory: Path) -> None:
        config = directory / "roost.toml"
        config.write_text(CONFIG)
        self.log_path = directory / "serve.log"
        roost = str(Path(sys.executable).with_name("roost"))
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [
                    roost,
                    "serve",
                    "--config",
                    str(config),
                    "--port",
                    "0",
                    "--data-dir",
                    str(directory / "data"),
                ],
                cwd=ROOT,
                stderr=log,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            found = re.search(r"serving on http://127\.0\.0\.1:(\d+)", self.log_path.read_text())
            if found:
                self.port = int(found.group(1))
                return
            time.sleep(0.05)
        self.process.kill()
        raise RuntimeError(f"roost serve did not start:\n{self.log_path.read_text()}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


class _Load:
    """One run's load: ``max_requests`` at most, over ``seconds``, and what came back."""

    def __init__(self, port: int, actors: int, seconds: float, max_requests: int) -> None:
        self.port = port
        self.actors = actors
        self.seconds = seconds
        self.remaining = max_requests
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.sent: dict[str, int] = {}  # answered 200, by counter
        self.in_doubt: dict[str, int] = {}  # sent, then the connection broke before the answer
        self.connection_errors = 0  # resets, refusals and closes mid-request

    @property
    def counters(self) -> list[str]:
        """Every counter a request may have reached."""
        return sorted(self.sent.keys() | self.in_doubt.keys())

    @property
    def doubtful(self) -> int:
        """Requests sent whose answer a broken connection cut off."""
        return sum(self.in_doubt.values())

    def check_counted(self, counted: int) -> str | None:
        """Why the counters' sum ``counted`` shows a lost or doubled increment, if it does."""
        acknowledged = self.statuses.get(200, 0)
        doubtful = self.doubtful
        # A 200 answer means applied; a request whose answer a broken connection cut off may or
        # may not have been, so only a range can be checked: fewer is a lost increment, more
        # than the requests in doubt allow is a doubled one.
        if acknowledged <= counted <= acknowledged + doubtful:
            return None
        return (
            f"counters sum to {counted}, but {acknowledged} increments were answered 200"
            f" (and {doubtful} more were cut off by a broken connection)"
        )

    async def verify(self) -> str | None:
        """What is wrong with the counters, read back over RPC after the run, if anything.

        A read-back that fails (a broken connection, an answer that is not the value) is
        reported, not raised, so that the run's figures survive it."""
        try:
            counted = await _counter_sum(self.port, self.counters)
        except (OSError, trio.BrokenResourceError, ValueError) as exc:
            return f"the counters could not be read back: {exc}"
        return self.check_counted(counted)

    async def run(self, connections: int) -> float:
        deadline = trio.current_time() + self.seconds
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(connections):
                nursery.start_soon(self._connection, random.Random(i), deadline)
        return time.perf_counter() - started

    async def _connection(self, rng: random.Random, deadline: float) -> None:
        while trio.current_time() < deadline and self.remaining > 0:
            # The server closes a keep-alive connection after so many requests (hypercorn:
            # 1,000), saying so on its last answer; a client then opens another, as it does
            # when the server resets or refuses one.
            try:
                async with await trio.open_tcp_stream("127.0.0.1", self.port) as stream:
                    await self._requests(stream, rng, deadline)
            except (OSError, trio.BrokenResourceError):  # refused, reset, or cut off by EOF
                self.connection_errors += 1
                await trio.sleep(_RECONNECT_PAUSE_SECONDS)

    async def _requests(self, stream: trio.SocketStream, rng: random.Random, deadline: float) -> None:
        buffer = b""
        while trio.current_time() < deadline and self.remaining > 0:
            self.remaining -= 1
            name = f"c{rng.randrange(self.actors)}"
            request = (
                f"POST /actors/{BINDING}/{name}/increment HTTP/1.1\r\n"
                "Host: roost\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            try:
                await stream.send_all(request)
                status, _, buffer, close = await _read_response(stream, buffer)
            except BaseException:
                self.in_doubt[name] = self.in_doubt.get(name, 0) + 1
                raise
            self.latencies.append(time.perf_counter() - started)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if status == 200:
                self.sent[name] = self.sent.get(name, 0) + 1
            if close:
                return


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


async def _counter_sum(port: int, names: list[str]) -> int:
    """The sum of the named counters, read back over RPC."""
    total = 0
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    buffer = b""
    async with stream:
        for name in names:
            request = f"POST /rpc/{BINDING}/{name}/value HTTP/1.1\r\nHost: roost\r\nContent-Length: 0\r\n\r\n"
            await stream.send_all(request.encode())
            status, body, buffer, _ = await _read_response(stream, buffer)
            if status != 200:
                raise ValueError(f"reading counter {name} back answered {status}: {body[:200]!r}")
            total += json.loads(body)["result"]
    return total


def http_increments(
    directory: Path, *, actors: int, connections: int, seconds: float, max_requests: int
) -> BenchmarkResult:
    spread = "1 actor" if actors == 1 else f"{actors:,} actors"
    result = BenchmarkResult(
        f"http-{actors}", f"HTTP durable increment, {connections} keep-alive connections, {spread}"
    )
    server = _Server(directory)
    try:
        load = _Load(server.port, actors, seconds, max_requests)
        elapsed = trio.run(load.run, connections)
        mismatch = trio.run(load.verify)
    finally:
        exit_code = server.stop()
    summary = summarize(load.latencies)
    errors = sum(count for status, count in load.statuses.items() if status != 200)
    target = Target(">=", REQUESTS_PER_SECOND_TARGET) if actors > 1 else None
    result.add("requests_per_second", "requests/s", len(load.latencies) / elapsed, "req/s", target)
    p99_target = Target("<=", P99_TARGET_MS) if actors > 1 else None
    result.add("p50", "latency p50", summary.p50_ms, "ms")
    result.add("p99", "latency p99", summary.p99_ms, "ms", p99_target)
    result.add("errors", "non-200 answers", errors, "responses", Target("<=", 0))
    result.add(
        "connection_errors",
        "connections reset or refused",
        load.connection_errors,
        "connections",
        Target("<=", 0),
    )
    result.details.update(
        statuses=load.statuses, requests=len(load.latencies), in_doubt=load.doubtful, seconds=elapsed
    )
    result.check(mismatch is None, mismatch or "")
    result.check(exit_code == 0, f"roost serve exited {exit_code} after SIGTERM")
    return result
