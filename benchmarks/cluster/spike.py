"""The cluster spike's measurements of JetStream itself (docs/cluster.md), on the 3-node loopback
cluster of ``runtime.cluster.local_nats``: one stream ``ROOST`` with a subject per partition
(``roost.p.<partition>``), replicas 3, file storage, every server on ``sync_interval: always``.

- appends: one record per group commit (16 or 64 writes of ~100 B, msgpack), each published
  with ``Nats-Expected-Last-Subject-Sequence`` (the sequence the writer last appended) and a
  ``Nats-Msg-Id``; one partition sequentially, then 16 and 64 partitions in parallel;
- fencing: two writers with the same expected sequence race, N times: exactly one must win;
  and a takeover, N times: a new owner wins the lease by KV compare-and-set, appends its fence
  record, and the old owner's next append must be refused;
- the lease bucket: compare-and-set updates (``kv.update(last=revision)``), sequential and
  16 keys at once;
- the stream leader killed (``kill -9``) under a sequential appender: the longest gap between
  two acks, and whether every acknowledged record is still in the stream;
- replay: an ordered consumer reading one partition's subject from its start, as a new owner
  catches up.

Plain asyncio (no trio): these are the server's figures; ``bridge`` measures the trio hop.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import msgpack
import nats
from nats.js.api import Header
from nats.js.errors import APIError, KeyWrongLastSequenceError

STREAM = "ROOST"
SUBJECT = "roost.p.{}"
LEASES = "roost_leases"
WRONG_LAST_SEQUENCE = (10071, 10164)
VALUE_BYTES = 100


def _pct(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))] * 1e3, 3)


def commit_record(partition: int, epoch: int, commit: int, writes: int) -> bytes:
    """What a group commit of one partition appends: the lease revision it was made under
    (the epoch), the commit's number, and its writes as (actor prefix + key, value) pairs."""
    return msgpack.packb({
        "p": partition, "e": epoch, "c": commit,
        "w": [[b"\x00" * 40 + f"k{i}".encode(), os.urandom(VALUE_BYTES)] for i in range(writes)],
    })


class Appender:
    """One owner's appends to one partition's subject, each expecting the last sequence."""

    def __init__(self, js, partition: int, epoch: int = 1, last: int = 0) -> None:
        self.js, self.partition, self.epoch, self.last = js, partition, epoch, last
        self.subject = SUBJECT.format(partition)
        self.commit = 0

        self.spurious_refusals = 0

    async def append(self, payload: bytes, timeout: float = 5.0, resolve: bool = False) -> int:
        """Append one record expecting ``self.last``. With ``resolve``, a refusal for a wrong
        last sequence is checked against the subject's real last record: when that is still
        the one this owner expected (nobody else appended), the refusal was spurious, it is
        counted and the append sent again; any other refusal is raised (fenced)."""
        self.commit += 1
        while True:
            try:
                ack = await self.js.publish(self.subject, payload, timeout=timeout, headers={
                    Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(self.last),
                    Header.MSG_ID: f"{self.partition}:{self.epoch}:{self.commit}",
                })
            except APIError as e:
                if resolve and e.err_code in WRONG_LAST_SEQUENCE \
                        and await _last_subject_seq(self.js, self.partition) == self.last:
                    self.spurious_refusals += 1
                    continue
                raise
            self.last = ack.seq
            return ack.seq


async def _connect(cluster):
    nc = await nats.connect(servers=cluster.urls, connect_timeout=5, reconnect_time_wait=0.1,
                            max_reconnect_attempts=-1)
    return nc, nc.jetstream(timeout=5)


async def _reset_stream(js) -> None:
    for name in (STREAM, f"KV_{LEASES}"):
        try:
            await js.delete_stream(name)
        except Exception:  # noqa: BLE001 - absent on a fresh cluster
            pass
    await js.add_stream(name=STREAM, subjects=["roost.p.*"], num_replicas=3, storage="file")


async def _last_subject_seq(js, partition: int) -> int:
    try:
        return (await js.get_last_msg(STREAM, SUBJECT.format(partition))).seq
    except Exception:  # noqa: BLE001 - no message on the subject yet
        return 0


async def appends(cluster, js, partitions: int, writes: int, seconds: float,
                  first_partition: int) -> dict:
    """``partitions`` owners appending sequentially for ``seconds``, each to its own subject."""
    payload_len = len(commit_record(0, 1, 1, writes))
    latencies: list[float] = []
    cpu0, srv0 = time.process_time(), cluster.cpu_seconds()
    t0 = time.perf_counter()
    deadline = t0 + seconds

    spurious = 0

    async def owner(p: int) -> None:
        nonlocal spurious
        a = Appender(js, p, last=await _last_subject_seq(js, p))
        while time.perf_counter() < deadline:
            payload = commit_record(p, 1, a.commit + 1, writes)
            s = time.perf_counter()
            await a.append(payload, resolve=True)
            latencies.append(time.perf_counter() - s)
        spurious += a.spurious_refusals

    await asyncio.gather(*(owner(first_partition + i) for i in range(partitions)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    n = len(latencies)
    return {
        "partitions": partitions, "writes_per_append": writes, "record_bytes": payload_len,
        "appends": n, "appends_per_second": round(n / elapsed, 1),
        "writes_per_second": round(n * writes / elapsed),
        "p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99),
        "client_cpu_us_per_append": round((time.process_time() - cpu0) / max(n, 1) * 1e6, 1),
        "servers_cpu_us_per_append": round((cluster.cpu_seconds() - srv0) / max(n, 1) * 1e6, 1),
        "spurious_wrong_last_sequence": spurious,
    }


async def fencing_race(js, js2, rounds: int, partition: int) -> dict:
    """Two writers append with the same expected last sequence: exactly one may win."""
    one_winner = 0
    last = await _last_subject_seq(js, partition)
    subject = SUBJECT.format(partition)
    for r in range(rounds):
        async def attempt(j, who: str):
            try:
                ack = await j.publish(subject, who.encode(), headers={
                    Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last),
                    Header.MSG_ID: f"race:{r}:{who}"})
                return ack.seq
            except APIError as e:
                if e.err_code in WRONG_LAST_SEQUENCE:
                    return None
                raise
        results = await asyncio.gather(attempt(js, "a"), attempt(js2, "b"))
        winners = [s for s in results if s is not None]
        if len(winners) == 1:
            one_winner += 1
            last = winners[0]
        else:
            last = await _last_subject_seq(js, partition)
    return {"rounds": rounds, "exactly_one_won": one_winner}


async def fencing_takeover(js, js2, kv, kv2, rounds: int, partition: int) -> dict:
    """The old owner A appends; B takes the lease by compare-and-set and appends its fence
    record; A's next append (its expected sequence now stale) must be refused."""
    key = f"p{partition}"
    rev = await kv.create(key, b"A")
    refused = 0
    stale_lease_refused = 0
    old = Appender(js, partition, epoch=rev, last=await _last_subject_seq(js, partition))
    for _ in range(rounds):
        await old.append(commit_record(partition, old.epoch, old.commit + 1, 1))
        new_rev = await kv2.update(key, b"B", last=rev)
        new = Appender(js2, partition, epoch=new_rev, last=await _last_subject_seq(js2, partition))
        await new.append(msgpack.packb({"p": partition, "e": new_rev, "fence": True}))
        try:
            await old.append(commit_record(partition, old.epoch, old.commit + 1, 1))
        except APIError as e:
            if e.err_code in WRONG_LAST_SEQUENCE:
                refused += 1
        try:  # the old owner renewing its lease by its old revision must fail too
            await kv.update(key, b"A", last=rev)
        except KeyWrongLastSequenceError:
            stale_lease_refused += 1
        # the next round: B hands back to A (A takes the lease again and catches up)
        rev = await kv.update(key, b"A", last=new_rev)
        old = Appender(js, partition, epoch=rev, last=new.last)
    return {"rounds": rounds, "stale_append_refused": refused,
            "stale_lease_renewal_refused": stale_lease_refused}


async def kv_cas(kv, keys: int, seconds: float) -> dict:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()

    spurious = 0

    async def renew(k: int) -> None:
        nonlocal spurious
        key = f"cas{keys}-{k}"
        rev = await kv.put(key, b"lease")
        while time.perf_counter() < deadline:
            s = time.perf_counter()
            try:
                rev = await kv.update(key, b"lease", last=rev)
            except KeyWrongLastSequenceError:
                # nobody else writes this key: a refusal is spurious if the revision held
                current = (await kv.get(key)).revision
                if current != rev:
                    raise
                spurious += 1
                continue
            latencies.append(time.perf_counter() - s)

    await asyncio.gather(*(renew(k) for k in range(keys)))
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"keys": keys, "updates": len(latencies),
            "per_second": round(len(latencies) / elapsed, 1),
            "p50_ms": _pct(latencies, 0.5), "p99_ms": _pct(latencies, 0.99),
            "spurious_wrong_last_sequence": spurious}


async def leader_kill(cluster, js, seconds: float, kill_after: float, partition: int) -> dict:
    """A sequential appender while the stream leader is killed with ``kill -9``. An append
    that times out or errors is retried with the same message id and expected sequence; a
    retry refused for a wrong last sequence is resolved by reading the subject's last record."""
    info = await js.stream_info(STREAM)
    leader = info.cluster.leader
    a = Appender(js, partition, last=await _last_subject_seq(js, partition))
    acked: dict[int, int] = {}
    ack_times: list[float] = []
    unknown_resolved = 0
    t0 = time.perf_counter()
    killed_at = None
    while time.perf_counter() - t0 < seconds:
        if killed_at is None and time.perf_counter() - t0 >= kill_after:
            cluster.kill(cluster.node(leader))
            killed_at = time.perf_counter()
        a.commit += 1
        payload = msgpack.packb({"p": partition, "e": 1, "c": a.commit})
        msg_id = f"{partition}:1:{a.commit}"
        while True:
            try:
                ack = await js.publish(a.subject, payload, timeout=1.0, headers={
                    Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(a.last), Header.MSG_ID: msg_id})
                seq = ack.seq
                break
            except APIError as e:
                if e.err_code in WRONG_LAST_SEQUENCE:
                    last = await js.get_last_msg(STREAM, a.subject)
                    if (last.headers or {}).get(Header.MSG_ID) == msg_id:
                        seq = last.seq
                        unknown_resolved += 1
                        break
                    raise
                await asyncio.sleep(0.05)
            except Exception:  # noqa: BLE001 - timeouts and reconnects while the leader moves
                await asyncio.sleep(0.05)
        a.last = seq
        acked[a.commit] = seq
        ack_times.append(time.perf_counter())
    gaps = [b - x for x, b in zip(ack_times, ack_times[1:])]
    new_leader = (await js.stream_info(STREAM)).cluster.leader
    missing = 0
    for commit, seq in acked.items():
        msg = await js.get_msg(STREAM, seq)
        if msgpack.unpackb(msg.data).get("c") != commit:
            missing += 1
    dead = cluster.node(leader)
    cluster.start(dead)
    return {"killed": leader, "new_leader": new_leader, "acked_appends": len(acked),
            "longest_gap_between_acks_s": round(max(gaps), 3) if gaps else None,
            "acked_missing_or_wrong": missing,
            "unknown_outcomes_resolved_as_landed": unknown_resolved}


async def replay(js, partition: int, expected: int) -> dict:
    sub = await js.subscribe(SUBJECT.format(partition), stream=STREAM, ordered_consumer=True)
    count = 0
    t0 = time.perf_counter()
    try:
        while count < expected:
            msg = await sub.next_msg(timeout=5)
            msgpack.unpackb(msg.data)
            count += 1
    except Exception:  # noqa: BLE001 - stops at the end of what was there
        pass
    elapsed = time.perf_counter() - t0
    await sub.unsubscribe()
    return {"records": count, "records_per_second": round(count / elapsed, 1),
            "seconds": round(elapsed, 3)}


async def run(cluster, seconds: float = 5.0, log=print) -> dict[str, Any]:
    nc, js = await _connect(cluster)
    nc2, js2 = await _connect(cluster)
    await _reset_stream(js)
    kv = await js.create_key_value(bucket=LEASES, replicas=3, history=1, storage="file")
    kv2 = await js2.key_value(LEASES)
    out: dict[str, Any] = {"appends": []}
    for partitions, writes, first in ((1, 16, 0), (1, 64, 1), (16, 16, 100), (64, 16, 200)):
        row = await appends(cluster, js, partitions, writes, seconds, first)
        out["appends"].append(row)
        log(f"  appends x{partitions:<2} partitions, {writes} writes/append: "
            f"{row['appends_per_second']}/s ({row['writes_per_second']} writes/s) "
            f"p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms")
    out["fencing_race"] = await fencing_race(js, js2, 200, 300)
    log(f"  fencing race: {out['fencing_race']}")
    out["fencing_takeover"] = await fencing_takeover(js, js2, kv, kv2, 100, 301)
    log(f"  fencing takeover: {out['fencing_takeover']}")
    out["kv_cas"] = [await kv_cas(kv, 1, seconds), await kv_cas(kv, 16, seconds)]
    for row in out["kv_cas"]:
        log(f"  KV compare-and-set, {row['keys']} keys: {row['per_second']}/s "
            f"p50 {row['p50_ms']} ms p99 {row['p99_ms']} ms")
    first = out["appends"][0]
    out["replay"] = await replay(js, 0, first["appends"])
    log(f"  replay of partition 0: {out['replay']}")
    out["leader_kill"] = await leader_kill(cluster, js, 2 * seconds, seconds / 2, 400)
    log(f"  stream leader kill -9: {out['leader_kill']}")
    await nc.close()
    await nc2.close()
    return out


def main() -> None:
    import json

    from runtime.cluster.local_nats import open_cluster

    with open_cluster() as cluster:
        print(json.dumps(asyncio.run(run(cluster, 3.0)), indent=1))


if __name__ == "__main__":
    main()
