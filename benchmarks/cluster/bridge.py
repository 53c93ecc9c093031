"""The trio bridge measurement: nats-py runs on asyncio, Roost on trio. The same workload
(JetStream publishes of 1 KiB, each waiting for its ack, to a replicas-3 file stream with
``sync_interval: always``) is run through each way of reaching asyncio from trio, sequentially
and with 16 and 64 in flight; each run is a fresh process so that its CPU is its own.

- ``asyncio``: no trio at all, the baseline (what nats-py costs by itself);
- ``trio-asyncio``: an asyncio loop running inside trio's (``trio_asyncio.open_loop``), each
  publish awaited through ``aio_as_trio``;
- ``thread``: a dedicated asyncio loop in its own thread; a publish is handed over with
  ``asyncio.run_coroutine_threadsafe`` and its completion comes back with
  ``TrioToken.run_sync_soon`` setting a ``trio.Event`` (no trio worker thread per call): Roost's own
  ``runtime.cluster.bridge`` since it was chosen;
- ``thread+to_thread``: the same loop thread, but trio waits in ``trio.to_thread.run_sync
  (future.result)``, one trio worker thread blocked per call in flight.

Every mode sets ``sys.setswitchinterval(0.0005)``, as an open Roost runtime does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable

from runtime.cluster.bridge import AsyncioThread

PAYLOAD = os.urandom(1024)
STREAM = "BRIDGE"
MODES = ("asyncio", "trio-asyncio", "thread", "thread+to_thread")
CONCURRENCIES = (1, 16, 64)
WARMUP_SECONDS = 0.5


def _summary(latencies: list[float], elapsed: float, cpu: float) -> dict[str, Any]:
    latencies.sort()
    n = len(latencies)
    return {
        "publishes": n,
        "per_second": round(n / elapsed, 1),
        "p50_ms": round(latencies[n // 2] * 1e3, 3) if n else None,
        "p99_ms": round(latencies[min(n - 1, int(n * 0.99))] * 1e3, 3) if n else None,
        "cpu_us_per_publish": round(cpu / n * 1e6, 1) if n else None,
        "cpu_share": round(cpu / elapsed, 3),
    }


async def _connect(url: str):
    import nats

    nc = await nats.connect(servers=url.split(","), connect_timeout=5)
    js = nc.jetstream(timeout=10)
    return nc, js


# --- asyncio baseline ------------------------------------------------------------------------

async def _asyncio_main(url: str, concurrency: int, seconds: float) -> dict:
    nc, js = await _connect(url)
    latencies: list[float] = []
    measuring = False

    async def worker(i: int, deadline: float) -> None:
        subject = f"bridge.{i}"
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await js.publish(subject, PAYLOAD)
            if measuring:
                latencies.append(time.perf_counter() - t0)

    warm_until = time.perf_counter() + WARMUP_SECONDS
    await asyncio.gather(*(worker(i, warm_until) for i in range(concurrency)))
    measuring = True
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(i, t0 + seconds) for i in range(concurrency)))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await nc.close()
    return _summary(latencies, elapsed, cpu)


# --- trio side, shared by the three trio modes ---------------------------------------------

async def _trio_workload(publish: Callable[[str, bytes], Awaitable[Any]], concurrency: int,
                         seconds: float) -> dict:
    import trio

    latencies: list[float] = []
    measuring = False

    async def worker(i: int, deadline: float) -> None:
        subject = f"bridge.{i}"
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await publish(subject, PAYLOAD)
            if measuring:
                latencies.append(time.perf_counter() - t0)

    async with trio.open_nursery() as n:
        for i in range(concurrency):
            n.start_soon(worker, i, time.perf_counter() + WARMUP_SECONDS)
    measuring = True
    cpu0, t0 = time.process_time(), time.perf_counter()
    async with trio.open_nursery() as n:
        for i in range(concurrency):
            n.start_soon(worker, i, t0 + seconds)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return _summary(latencies, elapsed, cpu)


async def _trio_asyncio_main(url: str, concurrency: int, seconds: float) -> dict:
    import trio_asyncio

    async with trio_asyncio.open_loop():
        nc, js = await trio_asyncio.aio_as_trio(_connect)(url)
        publish = trio_asyncio.aio_as_trio(js.publish)
        result = await _trio_workload(publish, concurrency, seconds)
        await trio_asyncio.aio_as_trio(nc.close)()
    return result


class MeasuredThread(AsyncioThread):
    """Roost's bridge (``runtime.cluster.bridge``), plus the way of waiting it is compared
    with: a trio worker thread blocked on each call's future."""

    async def call_blocking(self, fn: Callable[..., Awaitable[Any]], *args: Any,
                            limiter: Any = None) -> Any:
        import trio

        future = asyncio.run_coroutine_threadsafe(fn(*args), self.loop)
        return await trio.to_thread.run_sync(future.result, limiter=limiter)


async def _thread_main(url: str, concurrency: int, seconds: float, blocking: bool) -> dict:
    import trio

    bridge = MeasuredThread()
    try:
        nc, js = await bridge.call(_connect, url)
        if blocking:
            limiter = trio.CapacityLimiter(max(concurrency, 1))

            async def publish(subject: str, payload: bytes) -> Any:
                return await bridge.call_blocking(js.publish, subject, payload, limiter=limiter)
        else:
            async def publish(subject: str, payload: bytes) -> Any:
                return await bridge.call(js.publish, subject, payload)

        result = await _trio_workload(publish, concurrency, seconds)
        await bridge.call(nc.close)
    finally:
        bridge.close()
    return result


def run_one(mode: str, url: str, concurrency: int, seconds: float) -> dict:
    sys.setswitchinterval(0.0005)
    if mode == "asyncio":
        return asyncio.run(_asyncio_main(url, concurrency, seconds))
    import trio

    if mode == "trio-asyncio":
        return trio.run(_trio_asyncio_main, url, concurrency, seconds)
    if mode == "thread":
        return trio.run(_thread_main, url, concurrency, seconds, False)
    if mode == "thread+to_thread":
        return trio.run(_thread_main, url, concurrency, seconds, True)
    raise ValueError(f"unknown mode {mode!r}; one of {MODES}")


async def _create_stream(url: str) -> None:
    nc, js = await _connect(url)
    try:
        await js.delete_stream(STREAM)
    except Exception:  # noqa: BLE001 - absent on a fresh cluster
        pass
    await js.add_stream(name=STREAM, subjects=["bridge.>"], num_replicas=3, storage="file",
                        max_msgs_per_subject=1000)
    await nc.close()


def measure(cluster, seconds: float = 4.0, modes=MODES, concurrencies=CONCURRENCIES) -> list[dict]:
    """Every mode at every concurrency against ``cluster``, each in a fresh process."""
    url = ",".join(cluster.urls)
    asyncio.run(_create_stream(url))
    rows = []
    for concurrency in concurrencies:
        for mode in modes:
            cpu0 = cluster.cpu_seconds()
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.cluster.bridge", "--mode", mode, "--url", url,
                 "--concurrency", str(concurrency), "--seconds", str(seconds)],
                capture_output=True, text=True, timeout=seconds * 4 + 30,
            )
            if out.returncode != 0:
                rows.append({"mode": mode, "in_flight": concurrency, "error": out.stderr[-500:]})
                continue
            row = {"mode": mode, "in_flight": concurrency, **json.loads(out.stdout)}
            row["servers_cpu_us_per_publish"] = round(
                (cluster.cpu_seconds() - cpu0) / max(row["publishes"], 1) * 1e6, 1)
            rows.append(row)
            print(f"  bridge {mode:>16} x{concurrency:<3} {row['per_second']:>8}/s "
                  f"p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms "
                  f"client CPU {row['cpu_us_per_publish']} us/publish", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=MODES)
    p.add_argument("--url")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--seconds", type=float, default=4.0)
    a = p.parse_args()
    if a.mode and a.url:
        print(json.dumps(run_one(a.mode, a.url, a.concurrency, a.seconds)))
        return
    from runtime.cluster.local_nats import open_cluster

    with open_cluster() as cluster:
        print(json.dumps(measure(cluster, a.seconds), indent=1))


if __name__ == "__main__":
    main()
