"""Durable queues end to end on the real clock.

1. Enqueue alone: 100,000 messages as ``send_batch`` of 100 into a paused queue.
2. End to end: the same while one consumer (batches of 100) acks them; messages/s from the
   first send to the last ack. Once with the default ``max_concurrency`` (1 batch in flight:
   each delivery waits for the commit that counts its attempt), once with 4.
3. 10,000 messages of which every one fails once (retried on its first delivery).

Each run checks that every message was delivered and acked, and nothing is left behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from actors import MessageBatch
from runtime import Actor, open_runtime

from .figures import BenchmarkResult, Target, add_event_loop_figures

BATCH = 100
END_TO_END_TARGET = 50_000.0


class BenchConsumer(Actor):
    """Acks every message, or retries those on their first attempt when told to."""

    received = 0
    fail_first_attempt = False
    done = trio.Event()
    expected = 0

    async def queue(self, batch: MessageBatch) -> None:
        cls = type(self)
        for message in batch.messages:
            if cls.fail_first_attempt and message.attempts == 1:
                message.retry(delay_seconds=0)
            else:
                message.ack()
                cls.received += 1
        if cls.received >= cls.expected:
            cls.done.set()


def _queues(max_concurrency: int = 1) -> list[dict]:
    return [
        {
            "queue": "bench",
            "consumer": BenchConsumer,
            "max_batch_size": BATCH,
            "max_batch_timeout": 0.05,
            "max_retries": 3,
            "retry_delay": 0,
            "max_concurrency": max_concurrency,
        }
    ]


async def _send_all(rt, messages: int, producers: int) -> None:
    queue = rt.queue("bench")
    batches = messages // BATCH

    async def producer(index: int) -> None:
        for b in range(index, batches, producers):
            await queue.send_batch([{"body": {"n": b * BATCH + i}} for i in range(BATCH)])

    async with trio.open_nursery() as nursery:
        for index in range(producers):
            nursery.start_soon(producer, index)


async def queue_throughput(
    directory: Path,
    *,
    messages: int = 100_000,
    failing: int = 10_000,
    producers: int = 4,
    timeout: float = 600,
) -> BenchmarkResult:
    result = BenchmarkResult("queues", "Durable queues, batches of 100")
    async with open_runtime(data_dir=str(directory / "enqueue"), queues=_queues()) as rt:
        await rt.queue("bench").pause()
        started = time.perf_counter()
        await _send_all(rt, messages, producers)
        enqueue_seconds = time.perf_counter() - started
        backlog = (await rt.queue("bench").metrics())["backlog"]
        result.check(backlog == messages, f"enqueue alone: backlog {backlog}, expected {messages}")
    result.add(
        "enqueue", "enqueue alone (send_batch of 100, paused queue)", messages / enqueue_seconds, "msg/s"
    )

    runs = (
        ("end_to_end", messages, False, 1),
        ("end_to_end_concurrency_4", messages, False, 4),
        ("fail_once", failing, True, 1),
    )
    for name, count, fail, concurrency in runs:
        BenchConsumer.received, BenchConsumer.expected = 0, count
        BenchConsumer.fail_first_attempt, BenchConsumer.done = fail, trio.Event()
        async with open_runtime(data_dir=str(directory / name), queues=_queues(concurrency)) as rt:
            started = time.perf_counter()
            cpu_started = time.thread_time()
            with trio.move_on_after(timeout):
                await _send_all(rt, count, producers)
                await BenchConsumer.done.wait()
            elapsed = time.perf_counter() - started
            event_loop_cpu = time.thread_time() - cpu_started
            await trio.sleep(0.2)  # let the last acks commit
            metrics = await rt.queue("bench").metrics()
        result.check(BenchConsumer.received == count, f"{name}: {BenchConsumer.received} of {count} acked")
        result.check(metrics["backlog"] == 0, f"{name}: {metrics['backlog']} messages left in the queue")
        if fail:
            result.check(
                metrics["retried"] == count, f"{name}: {metrics['retried']} retries, expected {count}"
            )
            label = f"{count:,} messages, each failing once: first send to last ack"
        else:
            label = f"{count:,} messages end to end, max_concurrency {concurrency}: first send to last ack"
        target = Target(">=", END_TO_END_TARGET) if name == "end_to_end" else None
        result.add(name, label, count / elapsed, "msg/s", target)
        if name == "end_to_end":
            add_event_loop_figures(result, event_loop_cpu, elapsed, count, "message")
        result.details[name] = {"seconds": elapsed, **metrics}
    return result
