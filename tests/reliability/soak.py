"""``make soak``: the long forms of the reliability checks, with their figures printed.

1. The crash loop with many ``kill -9`` (``crash_loop.py``) and the checker's table, then a
   disk that really fills up (``disk_full.py``, when a tmpfs can be mounted).
2. Load on the shop example (``examples/roost.toml``): many connections placing and reading
   orders through ``POST /orders`` and ``GET /orders/{id}``; statuses, p50/p99 latency and
   the server's memory. The server evicts idle actors after ``--idle-timeout`` seconds
   (10 here, so that the load outlasts it several times and memory reaches its level).
3. Backpressure: the payment queue's consumer is paused (a consumer that fell behind) while
   the same load goes on: the backlog grows and producers still get their durable acks;
   then many messages go into a paused queue to measure the memory a queued message costs
   (past the first 10,000, nothing: they wait on disk), and the payments drain after resuming.

Exits 1 if a guarantee was broken (anything lost, an error other than 429 under load).
Run from the repository root: ``python tests/reliability/soak.py [--kills N] ...``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio
from crash_loop import run_crash_loop
from disk_full import TMPFS_SIZE, fill_the_disk, mount_tmpfs, unmount
from load import Answer, LoadReport, run_load
from serve_process import ServeProcess

REPO = Path(__file__).resolve().parents[2]
PAYMENTS_QUEUE = "external-api-queue"
BULK_QUEUE = "reminders"
BULK_SENDERS = 8
BULK_SECONDS_MAX = 60.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50, help="kill -9 cycles (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7, help="crash schedule seed (default %(default)s)")
    parser.add_argument("--connections", type=int, default=256, help="load connections (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="load duration (default %(default)s)")
    parser.add_argument(
        "--backpressure-seconds",
        type=float,
        default=15.0,
        help="load with the consumer paused (default %(default)s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=10.0,
        help="the shop server's --idle-timeout (default %(default)s)",
    )
    parser.add_argument(
        "--backlog-messages",
        type=int,
        default=50_000,
        help="messages queued to measure memory (default %(default)s)",
    )
    args = parser.parse_args()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="roost-soak-") as scratch:
        root = Path(scratch)
        print(f"== crash loop: {args.kills} x kill -9 (seed {args.seed})", flush=True)
        (root / "crash").mkdir()
        report = run_crash_loop(root / "crash", kills=args.kills, seed=args.seed, life_seconds=(0.3, 2.0))
        print(report.table(), flush=True)
        problems += report.problems()
        problems += _disk_full(root / "tmpfs")
        problems += trio.run(_shop_load, root, args)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("soak: " + ("FAILED" if problems else "every guarantee held"))
    return 1 if problems else 0


def _disk_full(mount_point: Path) -> list[str]:
    print(f"\n== disk full: a runtime on a {TMPFS_SIZE} tmpfs", flush=True)
    if not mount_tmpfs(mount_point):
        print("not run: mounting a tmpfs needs root (test_faults.py's map ceiling stands in)")
        return []
    try:
        rows, problems = trio.run(fill_the_disk, mount_point / "data")
    finally:
        unmount(mount_point)
    _print(rows)
    return problems


async def _shop_load(root: Path, args: argparse.Namespace) -> list[str]:
    problems = []
    server = ServeProcess(
        REPO,
        root / "shop.log",
        "--config",
        "examples/roost.toml",
        "--data-dir",
        str(root / "shop-data"),
        "--idle-timeout",
        str(args.idle_timeout),
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as admin:
            print(
                f"\n== load: shop example, {args.connections} connections, {args.seconds:.0f} s", flush=True
            )
            load = await run_load(server, _orders("a"), connections=args.connections, seconds=args.seconds)
            _print(load.summary())
            problems += _load_problems("load", load)

            print(
                f"\n== backpressure: {PAYMENTS_QUEUE} paused, {args.backpressure_seconds:.0f} s", flush=True
            )
            (await admin.post(f"/queues/{PAYMENTS_QUEUE}/pause")).raise_for_status()
            before = await _queue(admin, PAYMENTS_QUEUE)
            pressed = await run_load(
                server, _orders("b"), connections=args.connections, seconds=args.backpressure_seconds
            )
            after = await _queue(admin, PAYMENTS_QUEUE)
            _print(pressed.summary())
            grown, accepted = after["backlog"] - before["backlog"], pressed.statuses[202]
            _print(
                [
                    (
                        "payment backlog before / after",
                        f"{before['backlog']} / {after['backlog']} (+{grown})",
                    ),
                    ("orders acknowledged meanwhile", str(accepted)),
                ]
            )
            problems += _load_problems("backpressure", pressed)
            # A batch in flight when the queue paused still completes, and its messages go.
            if grown < accepted - before["in_flight"]:
                problems.append(f"backpressure: {accepted} orders acknowledged, yet the backlog grew {grown}")

            print(
                f"\n== backlog memory: {args.backlog_messages} messages into paused {BULK_QUEUE}", flush=True
            )
            problems += await _backlog_memory(server, admin, args.backlog_messages)

            (await admin.post(f"/queues/{PAYMENTS_QUEUE}/resume")).raise_for_status()
            started = time.monotonic()
            await trio.sleep(args.backpressure_seconds)
            left = (await _queue(admin, PAYMENTS_QUEUE))["backlog"]
            elapsed = time.monotonic() - started
            drained = after["backlog"] - left
            _print(
                [
                    (
                        f"payments drained in {elapsed:.0f} s after resume",
                        f"{drained} ({drained / elapsed:.0f}/s), {left} left",
                    )
                ]
            )
    finally:
        status = server.stop()
    if status != 0:
        problems.append(f"the shop server exited {status} on SIGTERM")
    return problems


def _orders(prefix: str):
    """Each connection places orders (ids of our own) and reads back every fourth it placed."""

    def make(n: int, previous: Answer | None) -> tuple[str, str, object]:
        if n % 4 == 0 and previous is not None and previous.status == 202:
            return "GET", f"/orders/{previous.json()['order']['id']}", None
        return "POST", "/orders", {"amount": 100 + n % 9000, "id": f"soak-{prefix}-{n}"}

    return make


async def _queue(client: httpx.AsyncClient, name: str) -> dict:
    response = await client.get(f"/queues/{name}")
    response.raise_for_status()
    return response.json()


async def _backlog_memory(server: ServeProcess, admin: httpx.AsyncClient, messages: int) -> list[str]:
    """Queue ``messages`` (batches of 100, bounded in time) into a paused queue and report
    the server's RSS per queued message; then purge the queue and resume it."""
    (await admin.post(f"/queues/{BULK_QUEUE}/pause")).raise_for_status()
    start_backlog = (await _queue(admin, BULK_QUEUE))["backlog"]
    rss_before, anon_before = server.rss_bytes(), server.rss_bytes("RssAnon")
    started = time.monotonic()
    batch = {"messages": [{"body": {"order_id": f"bulk-{i}", "kind": "reminder"}} for i in range(100)]}
    sent = 0
    with trio.move_on_after(BULK_SECONDS_MAX):
        async with trio.open_nursery() as nursery:

            async def sender(count: int) -> None:
                nonlocal sent
                for _ in range(count):
                    (await admin.post(f"/queues/{BULK_QUEUE}/messages/batch", json=batch)).raise_for_status()
                    sent += 100

            for share in _shares(messages // 100, BULK_SENDERS):
                nursery.start_soon(sender, share)
    elapsed = time.monotonic() - started
    queued = (await _queue(admin, BULK_QUEUE))["backlog"] - start_backlog
    rss_after, anon_after = server.rss_bytes(), server.rss_bytes("RssAnon")
    _print(
        [
            ("acknowledged / queued", f"{sent} / {queued} in {elapsed:.1f} s ({sent / elapsed:.0f} msg/s)"),
            ("server RSS before / after", f"{rss_before / 2**20:.1f} / {rss_after / 2**20:.1f} MiB"),
            ("RSS per queued message", f"{(rss_after - rss_before) / max(1, queued):.0f} B"),
            ("  of which private (RssAnon)", f"{(anon_after - anon_before) / max(1, queued):.0f} B"),
        ]
    )
    (await admin.delete(f"/queues/{BULK_QUEUE}/messages")).raise_for_status()
    (await admin.post(f"/queues/{BULK_QUEUE}/resume")).raise_for_status()
    return [] if queued >= sent else [f"backlog memory: {sent} messages acknowledged, {queued} queued"]


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _load_problems(phase: str, report: LoadReport) -> list[str]:
    problems = []
    if report.errors:
        problems.append(f"{phase}: errors other than 429: {report.errors}")
    if not report.requests:
        problems.append(f"{phase}: no request answered")
    return problems


def _print(rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
