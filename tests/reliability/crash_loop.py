"""Crash loop: a real ``roost serve`` killed with ``kill -9`` at random moments and restarted,
while clients record every acknowledgement; then a checker in the style of Jepsen's queue
checker compares what was acknowledged with what survived.

The workload, from several concurrent client tasks: durable counter increments over RPC,
queue messages (single and batches) whose consumer records each delivery in a ledger actor
(one RPC per message, so kills land mid-delivery), alarms whose handlers record their
firing in the same ledger (so kills land mid-alarm), and scheduled jobs due within a
second or two, which reach the same consumer through the queue. Group commits are always
in flight. After the last restart the queue drains, the due alarms fire and the due jobs
are sent; the checker then reads the counters and the ledger over HTTP.

With ``workers`` > 1 the server runs ``--workers N`` and each kill takes one worker at
random; the supervisor starts it again, while the other workers go on serving.
"""

from __future__ import annotations

import os
import random
import re
import signal
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio
from serve_process import ReaderTable, ServeProcess

APP = """
import runtime
from actors import MessageBatch, schedule_job
from runtime import Actor, AlarmInfo


class Counter(Actor):
    async def increment(self) -> int:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return n

    async def value(self) -> int:
        return await self.storage.get("n", 0)


class Ledger(Actor):
    async def record(self, key: str) -> None:
        await self.storage.put(key, await self.storage.get(key, 0) + 1)

    async def seen(self, prefix: str, start_after: str | None = None) -> dict:
        return await self.storage.list(prefix=prefix, start_after=start_after, limit=1000)


class Consumer(Actor):
    async def queue(self, batch: MessageBatch) -> None:
        ledger = self.env.LEDGER.get_by_name("ledger")
        for message in batch.messages:
            kind = "job" if message.body.get("scheduled") else "msg"
            await ledger.record(f"{kind}:{message.body['n']:08d}")


class Timer(Actor):
    async def arm(self, delay: float) -> float:
        when = runtime.now() + delay
        await self.storage.set_alarm(when)
        return when

    async def alarm(self, info: AlarmInfo) -> None:
        await self.env.LEDGER.get_by_name("ledger").record(f"alarm:{self.id.name}")

    async def schedule(self, n: int, delay: float) -> float:
        when = runtime.now() + delay
        await schedule_job(self.env, {"n": n, "scheduled": True}, when, queue="jobs")
        return when
"""

CONFIG = """
data_dir = "state"
[[durable_objects.bindings]]
name = "COUNTERS"
class_name = "crash_app:Counter"
[[durable_objects.bindings]]
name = "LEDGER"
class_name = "crash_app:Ledger"
[[durable_objects.bindings]]
name = "TIMERS"
class_name = "crash_app:Timer"
[[queues.producers]]
queue = "jobs"
binding = "JOBS"
[[queues.consumers]]
queue = "jobs"
class_name = "crash_app:Consumer"
max_batch_size = 10
max_batch_timeout = 0.05
# A kill mid-delivery costs the messages in flight an attempt, and this loop kills far more
# often than anything in production: the messages must outlast it, not their retries.
max_retries = 50
"""

CLIENT_TASKS = 8
COUNTER_NAMES = 5
MAX_ALARM_DELAY_SECONDS = 1.5
MAX_JOB_DELAY_SECONDS = 1.5
SETTLE_TIMEOUT_SECONDS = 60.0
RESTART_TIMEOUT_SECONDS = 30.0
CLIENT_STOP_SECONDS = 5.0


@dataclass
class Acknowledged:
    """What the server acknowledged, as the clients saw it."""

    increments: Counter[str] = field(default_factory=Counter)
    messages: set[int] = field(default_factory=set)
    alarms: dict[str, float] = field(default_factory=dict)  # timer name -> when it is due
    jobs: dict[int, float] = field(default_factory=dict)  # scheduled job's number -> when it is due
    issued: int = 0
    unknown_outcomes: int = 0  # requests cut off by a kill: applied or not, nobody knows

    def new_number(self) -> int:
        """A number never used before: a message's body, a timer's name."""
        self.issued += 1
        return self.issued


@dataclass
class Report:
    """The checker's findings; ``problems()`` lists what breaks a guarantee."""

    kills: int
    acked_increments: int
    counters_below_acked: dict[str, tuple[int, int]]
    acked_messages: int
    lost_messages: list[int]
    duplicated_messages: int
    acked_alarms: int
    alarms_never_fired: list[str]
    alarms_fired_more_than_once: int
    acked_jobs: int
    jobs_never_sent: list[int]
    jobs_sent_more_than_once: int
    jobs_counted_pending_at_end: int  # the scheduler's own count, once every job was sent
    unknown_outcomes: int
    stale_reader_slots_after_kills: int
    stale_reader_slots_after_restarts: int
    exit_status: int
    log_errors: list[str]

    def problems(self) -> list[str]:
        found = []
        if not (self.acked_increments and self.acked_messages and self.acked_alarms and self.acked_jobs):
            found.append("the clients got too little acknowledged to test anything")
        if self.counters_below_acked:
            found.append(f"counters below their acknowledged increments: {self.counters_below_acked}")
        if self.lost_messages:
            found.append(f"acknowledged messages never delivered: {self.lost_messages[:20]}")
        if self.alarms_never_fired:
            found.append(f"acknowledged alarms that never fired: {self.alarms_never_fired[:20]}")
        if self.jobs_never_sent:
            found.append(f"acknowledged scheduled jobs never delivered: {self.jobs_never_sent[:20]}")
        if self.jobs_counted_pending_at_end:
            found.append(f"the scheduler still counts {self.jobs_counted_pending_at_end} jobs pending")
        if not self.stale_reader_slots_after_kills:
            found.append("no kill left a stale LMDB reader slot: their clearing went untested")
        if self.stale_reader_slots_after_restarts:
            found.append(f"{self.stale_reader_slots_after_restarts} LMDB reader slots of dead processes left")
        if self.exit_status != 0:
            found.append(f"the last server exited {self.exit_status} on SIGTERM, not 0")
        if self.log_errors:
            found.append(f"errors in the server's logs: {self.log_errors[:5]}")
        return found

    def table(self) -> str:
        rows = [
            ("kill -9 survived", self.kills, ""),
            ("increments acknowledged", self.acked_increments, ""),
            ("  counters below acknowledged", len(self.counters_below_acked), "must be 0"),
            ("messages acknowledged", self.acked_messages, ""),
            ("  lost", len(self.lost_messages), "must be 0"),
            ("  delivered more than once", self.duplicated_messages, "allowed (at-least-once)"),
            ("alarms acknowledged", self.acked_alarms, ""),
            ("  never fired", len(self.alarms_never_fired), "must be 0"),
            ("  fired more than once", self.alarms_fired_more_than_once, "allowed (at-least-once)"),
            ("scheduled jobs acknowledged", self.acked_jobs, ""),
            ("  never delivered", len(self.jobs_never_sent), "must be 0"),
            ("  delivered more than once", self.jobs_sent_more_than_once, "allowed (at-least-once)"),
            ("  still counted pending at the end", self.jobs_counted_pending_at_end, "must be 0"),
            ("requests cut off by a kill", self.unknown_outcomes, "outcome unknown, not counted"),
            ("stale LMDB reader slots after kills", self.stale_reader_slots_after_kills, ""),
            ("  left after restarts", self.stale_reader_slots_after_restarts, "must be 0"),
            ("exit status on the final SIGTERM", self.exit_status, "must be 0"),
            ("error lines in server logs", len(self.log_errors), "must be 0"),
        ]
        width = max(len(name) for name, _, _ in rows)
        return "\n".join(f"{name:<{width}}  {value:>8}  {note}".rstrip() for name, value, note in rows)


def write_app(directory: Path) -> None:
    (directory / "crash_app.py").write_text(textwrap.dedent(APP))
    (directory / "roost.toml").write_text(textwrap.dedent(CONFIG))


def run_crash_loop(
    directory: Path, *, kills: int, seed: int, life_seconds: tuple[float, float], workers: int = 1
) -> Report:
    """Serve, load and ``kill -9`` the app in ``directory`` ``kills`` times, then check."""
    write_app(directory)
    return trio.run(_crash_loop, directory, kills, random.Random(seed), life_seconds, workers)


async def _crash_loop(
    directory: Path, kills: int, rng: random.Random, life_seconds: tuple[float, float], workers: int
) -> Report:
    """A restart that fails raises, with the server's log."""
    acked = Acknowledged()
    stale_after_kills = stale_after_restarts = 0
    flags = ("--workers", str(workers))
    server = ServeProcess(directory, directory / "serve-0.log", *flags)
    readers = ReaderTable(directory / "state")
    try:
        for life in range(1, kills + 1):
            async with trio.open_nursery() as nursery:
                for task in range(CLIENT_TASKS):
                    nursery.start_soon(_client, server.url, acked, random.Random(rng.random() + task))
                await trio.sleep(rng.uniform(*life_seconds))
                # At a random moment: mid-commit, mid-delivery, mid-alarm.
                if workers == 1:
                    server.kill_9()
                    # Clients see their connections cut and stop; a hung one is cut off here.
                    nursery.cancel_scope.deadline = trio.current_time() + CLIENT_STOP_SECONDS
                else:
                    victim = rng.choice(server.worker_pids())
                    os.kill(victim, signal.SIGKILL)
                    stale_after_kills += await _stale_slots_until_restarted(readers, server, life, workers)
                    nursery.cancel_scope.cancel()
            if workers == 1:
                stale_after_kills += readers.stale_slots()
                server = ServeProcess(directory, directory / f"serve-{life}.log", *flags)
            stale_after_restarts += readers.stale_slots()
    finally:
        readers.close()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await _settle(client, acked)
            values = {name: await _rpc(client, "COUNTERS", name, "value") for name in acked.increments}
            delivered = await _ledger(client, "msg:")
            fired = await _ledger(client, "alarm:")
            sent = await _ledger(client, "job:")
            metrics = (await client.get("/metrics")).text
            counted = re.search(r"^roost_scheduled_jobs_pending (\d+)$", metrics, re.M)
    finally:
        exit_status = server.stop()
    log_errors = [
        line
        for path in sorted(directory.glob("serve-*.log"))
        for line in path.read_text().splitlines()
        if " ERROR " in line or " CRITICAL " in line or "Traceback" in line
    ]
    return Report(
        kills=kills,
        acked_increments=sum(acked.increments.values()),
        counters_below_acked={
            name: (values[name], count) for name, count in acked.increments.items() if values[name] < count
        },
        acked_messages=len(acked.messages),
        lost_messages=sorted(n for n in acked.messages if f"msg:{n:08d}" not in delivered),
        duplicated_messages=sum(count - 1 for count in delivered.values()),
        acked_alarms=len(acked.alarms),
        alarms_never_fired=sorted(name for name in acked.alarms if f"alarm:{name}" not in fired),
        alarms_fired_more_than_once=sum(1 for count in fired.values() if count > 1),
        acked_jobs=len(acked.jobs),
        jobs_never_sent=sorted(n for n in acked.jobs if f"job:{n:08d}" not in sent),
        jobs_sent_more_than_once=sum(count - 1 for count in sent.values()),
        jobs_counted_pending_at_end=int(counted[1]) if counted else -1,
        unknown_outcomes=acked.unknown_outcomes,
        stale_reader_slots_after_kills=stale_after_kills,
        stale_reader_slots_after_restarts=stale_after_restarts,
        exit_status=exit_status,
        log_errors=log_errors,
    )


async def _stale_slots_until_restarted(readers: ReaderTable, server: ServeProcess, kills: int, workers: int) -> int:
    """The most stale reader slots seen between a worker's kill (the ``kills``-th) and its
    replacement serving (it clears them as it opens its partitions)."""
    most = 0
    deadline = time.monotonic() + RESTART_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        most = max(most, readers.stale_slots())
        if server.log().count("serves again") == kills and len(server.worker_pids()) == workers:
            await trio.sleep(0.2)  # the new worker's first answers
            return most
        await trio.sleep(0.005)
    raise AssertionError(f"the killed worker was not replaced:\n{server.log()}")


async def _client(url: str, acked: Acknowledged, rng: random.Random) -> None:
    """Send a random mix of increments, messages and alarms until cancelled or cut off."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        while True:
            choice = rng.random()
            try:
                if choice < 0.4:
                    name = f"c{rng.randrange(COUNTER_NAMES)}"
                    response = await client.post(f"/rpc/COUNTERS/{name}/increment")
                    if response.status_code == 200:
                        acked.increments[name] += 1
                elif choice < 0.6:
                    n = acked.new_number()
                    response = await client.post("/queues/jobs/messages", json={"body": {"n": n}})
                    if response.status_code == 202:
                        acked.messages.add(n)
                elif choice < 0.75:
                    numbers = [acked.new_number() for _ in range(rng.randint(2, 10))]
                    response = await client.post(
                        "/queues/jobs/messages/batch",
                        json={"messages": [{"body": {"n": n}} for n in numbers]},
                    )
                    if response.status_code == 202:
                        acked.messages.update(numbers)
                elif choice < 0.9:
                    name = f"t{acked.new_number()}"
                    delay = rng.uniform(0, MAX_ALARM_DELAY_SECONDS)
                    response = await client.post(f"/rpc/TIMERS/{name}/arm", json={"args": [delay]})
                    if response.status_code == 200:
                        acked.alarms[name] = response.json()["result"]
                else:
                    n = acked.new_number()
                    delay = rng.uniform(0, MAX_JOB_DELAY_SECONDS)
                    response = await client.post(f"/rpc/TIMERS/t{n}/schedule", json={"args": [n, delay]})
                    if response.status_code == 200:
                        acked.jobs[n] = response.json()["result"]
            except httpx.HTTPError:
                acked.unknown_outcomes += 1
                return


async def _settle(client: httpx.AsyncClient, acked: Acknowledged) -> None:
    """Wait until the queue is drained and every acknowledged alarm and scheduled job has
    been delivered (the scheduler's alarms count among the pending ones)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    last_due = max([*acked.alarms.values(), *acked.jobs.values()], default=0.0)
    while time.monotonic() < deadline:
        backlog = (await client.get("/queues/jobs")).json()["backlog"]
        pending = re.findall(r"^roost_alarms_pending(?:\{[^}]*\})? (\d+)$", (await client.get("/metrics")).text, re.M)
        if backlog == 0 and pending and not any(map(int, pending)) and time.time() > last_due:
            return
        await trio.sleep(0.05)


async def _rpc(client: httpx.AsyncClient, binding: str, name: str, method: str, *args: object) -> object:
    response = await client.post(f"/rpc/{binding}/{name}/{method}", json={"args": list(args)})
    response.raise_for_status()
    return response.json()["result"]


async def _ledger(client: httpx.AsyncClient, prefix: str) -> dict[str, int]:
    """Every ``prefix`` entry of the ledger, paged."""
    seen: dict[str, int] = {}
    after = None
    while True:
        page = await _rpc(client, "LEDGER", "ledger", "seen", prefix, after)
        seen.update(page)
        if len(page) < 1000:
            return seen
        after = max(page)
