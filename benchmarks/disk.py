"""The disk's physical limits: fsync rate and raw LMDB synced commits, without Roost.

A durable write cannot be acknowledged faster than one fsync, so these figures bound
sequential durable RPC; group commit is how throughput goes past them. The scattered loops
bound the 64-caller increment benchmark: its callers fall into two halves that take turns,
so a commit carries about 32 actors' writes, each to its own place in the B-tree, and a sync
costs per page written. LMDB is opened as the runtime opens it (sync, metasync, no
writemap). Each loop stops at a time or count bound.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import lmdb

from .figures import BenchmarkResult
from .latency import summarize

_BLOCK = b"r" * 512
_VALUE = b"v" * 16
_MAP_SIZE_BYTES = 1 << 32
BATCH_PUTS = 1000
# The increment benchmark's shape: 1,000 actors' counters, keys about as long as the runtime's.
SCATTERED_KEYS = 1000
SCATTERED_PUTS = (32, 64)


def measure_disk(directory: Path, *, seconds: float, max_ops: int) -> BenchmarkResult:
    """fsync rate of a small block, LMDB commits/s with one put each, and batched puts/s."""
    result = BenchmarkResult("disk", "Disk limits (data dir's filesystem)")
    _measure_fsync(result, directory / "fsync.bin", seconds=seconds, max_ops=max_ops)
    _measure_lmdb(result, directory / "lmdb", seconds=seconds, max_ops=max_ops)
    return result


def _measure_fsync(result: BenchmarkResult, path: Path, *, seconds: float, max_ops: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    durations: list[float] = []
    try:
        # The first fsync allocates the block; the loop measures overwrite + fsync.
        os.pwrite(fd, _BLOCK, 0)
        os.fsync(fd)
        deadline = time.perf_counter() + seconds
        while len(durations) < max_ops:
            started = time.perf_counter()
            os.pwrite(fd, _BLOCK, 0)
            os.fsync(fd)
            ended = time.perf_counter()
            durations.append(ended - started)
            if ended >= deadline:
                break
    finally:
        os.close(fd)
    latency = summarize(durations)
    result.add("fsync_rate", "write 512 B + os.fsync", len(durations) / sum(durations), "fsyncs/s")
    result.add("fsync_p50", "  fsync p50 latency", latency.p50_ms, "ms")
    result.details["fsync"] = {"ops": len(durations), "p99_ms": latency.p99_ms, "max_ms": latency.max_ms}


def _measure_lmdb(result: BenchmarkResult, path: Path, *, seconds: float, max_ops: int) -> None:
    env = lmdb.open(str(path), map_size=_MAP_SIZE_BYTES, sync=True, metasync=True, writemap=False)
    try:
        commits, commit_seconds = _commit_loop(env, puts_per_commit=1, seconds=seconds, max_ops=max_ops)
        batches, batch_seconds = _commit_loop(
            env, puts_per_commit=BATCH_PUTS, seconds=seconds, max_ops=max(1, max_ops // BATCH_PUTS)
        )
    finally:
        env.close()
    result.add("lmdb_commits", "LMDB sync commits, 1 put each", commits / commit_seconds, "commits/s")
    result.add(
        "lmdb_batched_puts",
        f"LMDB puts, {BATCH_PUTS} per sync commit",
        batches * BATCH_PUTS / batch_seconds,
        "puts/s",
    )
    result.details["lmdb"] = {"single_put_commits": commits, "batched_commits": batches}
    _measure_scattered(result, path.with_name("lmdb-scattered"), seconds=seconds, max_ops=max_ops)


def _measure_scattered(result: BenchmarkResult, path: Path, *, seconds: float, max_ops: int) -> None:
    env = lmdb.open(str(path), map_size=_MAP_SIZE_BYTES, sync=True, metasync=True, writemap=False)
    keys = [os.urandom(40) for _ in range(SCATTERED_KEYS)]
    picker = random.Random(0)
    try:
        with env.begin(write=True) as txn:
            for key in keys:
                txn.put(key, _VALUE)
        for puts in SCATTERED_PUTS:
            durations: list[float] = []
            deadline = time.perf_counter() + seconds
            while len(durations) < max_ops:
                chosen = picker.sample(keys, puts)
                started = time.perf_counter()
                with env.begin(write=True) as txn:
                    for key in chosen:
                        txn.put(key, _VALUE)
                ended = time.perf_counter()
                durations.append(ended - started)
                if ended >= deadline:
                    break
            result.add(
                f"lmdb_scattered_{puts}",
                f"LMDB puts, {puts} per sync commit, scattered over {SCATTERED_KEYS:,} keys",
                len(durations) * puts / sum(durations),
                "puts/s",
            )
            result.add(f"lmdb_scattered_{puts}_ms", "  commit p50", summarize(durations).p50_ms, "ms")
    finally:
        env.close()


def _commit_loop(
    env: lmdb.Environment, *, puts_per_commit: int, seconds: float, max_ops: int
) -> tuple[int, float]:
    """Run write transactions of ``puts_per_commit`` puts; returns (commits, elapsed seconds)."""
    key = 0
    commits = 0
    started = time.perf_counter()
    deadline = started + seconds
    while commits < max_ops:
        with env.begin(write=True) as txn:
            for _ in range(puts_per_commit):
                txn.put(key.to_bytes(8, "big"), _VALUE)
                key += 1
        commits += 1
        if time.perf_counter() >= deadline:
            break
    return commits, time.perf_counter() - started
