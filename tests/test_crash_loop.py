"""Crash loop: ``kill -9`` a real ``roost serve`` at random moments, restart it, and check
that nothing it acknowledged was lost.

A client sends durable increments and queue messages over HTTP and records every 200/202.
The queue's consumer records each message it acks in a ledger actor. After the last restart
the queue drains, and a checker in the style of Jepsen's queue checker reports: counters
lower than their acknowledged increments (must be none), acknowledged messages never
consumed (must be none), and messages consumed more than once (allowed, reported).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx

ROOST = str(Path(sys.executable).with_name("roost"))
CYCLES = 4

APP = """
from actors import MessageBatch
from runtime import Actor


class Counter(Actor):
    async def increment(self) -> int:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return n

    async def value(self) -> int:
        return await self.storage.get("n", 0)


class Ledger(Actor):
    async def record(self, n: int) -> None:
        await self.storage.put(f"seen:{n:08d}", await self.storage.get(f"seen:{n:08d}", 0) + 1)

    async def seen(self, start_after: str | None = None) -> dict:
        return await self.storage.list(prefix="seen:", start_after=start_after, limit=1000)


class Consumer(Actor):
    async def queue(self, batch: MessageBatch) -> None:
        for message in batch.messages:
            await self.env.LEDGER.get_by_name("ledger").record(message.body["n"])
"""

CONFIG = """
data_dir = "state"
[[durable_objects.bindings]]
name = "COUNTERS"
class_name = "crash_app:Counter"
[[durable_objects.bindings]]
name = "LEDGER"
class_name = "crash_app:Ledger"
[[queues.producers]]
queue = "jobs"
binding = "JOBS"
[[queues.consumers]]
queue = "jobs"
class_name = "crash_app:Consumer"
max_batch_size = 10
max_batch_timeout = 0.05
"""


def start(cwd: Path, life: int) -> tuple[subprocess.Popen, str]:
    log_path = cwd / f"serve-{life}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([ROOST, "serve", "--port", "0"], cwd=cwd, stderr=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        found = re.search(r"serving on (http://127\.0\.0\.1:\d+)", log_path.read_text())
        if found:
            return process, found.group(1)
        time.sleep(0.02)
    process.kill()
    raise AssertionError("roost serve did not start:\n" + log_path.read_text())


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    (tmp_path / "crash_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "roost.toml").write_text(textwrap.dedent(CONFIG))
    rng = random.Random(int(os.environ.get("ROOST_CRASH_SEED", "1")))
    acked_increments: dict[str, int] = {}
    acked_messages: set[int] = set()
    next_message = 0
    for life in range(CYCLES):
        process, url = start(tmp_path, life)
        kill_at = time.monotonic() + rng.uniform(0.3, 1.0)
        with httpx.Client(base_url=url, timeout=5) as client:
            while time.monotonic() < kill_at:
                try:
                    if rng.random() < 0.5:
                        name = f"c{rng.randrange(5)}"
                        if client.post(f"/rpc/COUNTERS/{name}/increment").status_code == 200:
                            acked_increments[name] = acked_increments.get(name, 0) + 1
                    else:
                        n, next_message = next_message, next_message + 1
                        if client.post("/queues/jobs/messages", json={"body": {"n": n}}).status_code == 202:
                            acked_messages.add(n)
                except httpx.HTTPError:
                    break
        process.send_signal(signal.SIGKILL)  # at a random moment: mid-commit, mid-delivery
        process.wait()
    process, url = start(tmp_path, CYCLES)
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and client.get("/queues/jobs").json()["backlog"]:
                time.sleep(0.05)
            assert client.get("/queues/jobs").json()["backlog"] == 0
            values = {
                name: client.post(f"/rpc/COUNTERS/{name}/value").json()["result"] for name in acked_increments
            }
            seen: dict[int, int] = {}
            after = None
            while True:
                page = client.post("/rpc/LEDGER/ledger/seen", json={"args": [after]}).json()["result"]
                seen.update({int(key.split(":")[1]): count for key, count in page.items()})
                if len(page) < 1000:
                    break
                after = max(page)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    lower = {name: (values[name], count) for name, count in acked_increments.items() if values[name] < count}
    lost = sorted(acked_messages - set(seen))
    duplicates = sum(count - 1 for count in seen.values())
    print(
        f"acked increments {sum(acked_increments.values())}, acked messages {len(acked_messages)}, "
        f"consumed more than once {duplicates}"
    )
    assert acked_increments and acked_messages, "the client got nothing acknowledged: no test"
    assert lower == {}, f"counters below their acknowledged increments: {lower}"
    assert lost == [], f"acknowledged messages never consumed: {lost[:20]}"
