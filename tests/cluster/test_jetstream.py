"""The NATS layer against a real 3-node nats-server cluster (no mocks): appends fenced by the
expected last subject sequence, reads, KV compare-and-set and its watch, setup checks, time
limits with servers paused, and a stream leader's loss."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import nats
import pytest
import trio
from nats.js.api import StorageType

from runtime.cluster.bridge import AsyncioThread
from runtime.cluster.jetstream import (
    LEASES,
    NODES,
    STREAM,
    ClusterSetupError,
    Conflict,
    Fenced,
    NatsUnavailable,
    open_jetstream,
    subject,
)

TIMEOUT = 1.0
SLACK_SECONDS = 1.5


async def _wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    with trio.fail_after(timeout):
        while True:
            result = await predicate()
            if result:
                return result
            await trio.sleep(interval)


def test_subject_names():
    assert subject(7) == "roost.p.07"
    assert subject(63) == "roost.p.63"


async def test_bridge_propagates_results_errors_and_cancellation():
    cancelled = []

    async def add(a, b):
        return a + b

    async def fail():
        raise KeyError("x")

    async def hang():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with AsyncioThread() as bridge:
        assert await bridge.call(add, 2, 3) == 5
        with pytest.raises(KeyError):
            await bridge.call(fail)
        with trio.move_on_after(0.2) as scope:
            await bridge.call(hang)
        assert scope.cancelled_caught
        await _wait_until(lambda: _async_true(bool(cancelled)), timeout=5)


async def _async_true(value):
    return value


async def test_append_read_round_trip(jetstream_servers):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        assert await js.last_sequence(1) == 0
        assert await js.read(1, 0) == []
        written: dict[int, list[tuple[int, bytes]]] = {1: [], 2: []}
        last = {1: 0, 2: 0}
        for i in range(6):
            partition = 1 + i % 2
            payload = f"r{i}".encode()
            sequence = await js.append(partition, payload, expected=last[partition], msg_id=f"{partition}:1:{i}")
            assert sequence > max(last.values())
            last[partition] = sequence
            written[partition].append((sequence, payload))
        for partition in (1, 2):
            assert await js.last_sequence(partition) == last[partition]
            assert await js.read(partition, 0) == written[partition]
        first, second, third = written[1]
        assert await js.read(1, first[0]) == [second, third]
        assert await js.read(1, 0, upto=second[0]) == [first, second]
        assert await js.read(1, first[0], upto=second[0]) == [second]
        assert await js.read(1, third[0]) == []
        assert js.statistics["appends"] == 6


async def test_read_many_records_and_after_a_purge(jetstream_servers):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        count = 2500  # three read batches
        outcomes = await js.append_all([(3, b"x" * 64, 0, "3:first")])
        expected = outcomes[0]
        for i in range(1, count):
            expected = await js.append(3, b"%d" % i, expected=expected, msg_id=f"3:1:{i}")
        records = await js.read(3, 0)
        assert len(records) == count
        async with aclosing(js.read_batches(3, 0)) as batches:
            sizes = [len(batch) async for batch in batches]
        assert sizes == [1000, 1000, 500]
        async with aclosing(js.read_batches(3, 0)) as batches:
            async for batch in batches:
                assert batch == records[:1000]
                break  # an early stop ends the read
        assert [s for s, _ in records] == sorted(s for s, _ in records)
        assert records[-1][0] == expected
        middle = records[1000][0]
        await js.purge_up_to(3, middle)
        assert await js.first_sequence(3) == middle
        after_purge = await js.read(3, 0)  # `after` below the first sequence still stored
        assert after_purge == records[1000:]
        await js.purge_up_to(3, expected + 100)  # capped: the last record stays
        assert await js.read(3, 0) == [records[-1]]
        assert await js.last_sequence(3) == expected


async def test_two_writers_with_the_same_expected_sequence_one_wins(jetstream_servers):
    async with (
        open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT, name="a") as a,
        open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT, name="b") as b,
    ):
        expected = await a.append(5, b"start", expected=0, msg_id="5:0:0")
        for round_ in range(20):
            results: dict[str, int | Exception] = {}

            async def attempt(js, who):
                try:
                    results[who] = await js.append(5, who.encode(), expected=expected, msg_id=f"5:{who}:{round_}")
                except Fenced as exc:
                    results[who] = exc

            async with trio.open_nursery() as nursery:
                nursery.start_soon(attempt, a, "a")
                nursery.start_soon(attempt, b, "b")
            won = [s for s in results.values() if isinstance(s, int)]
            lost = [e for e in results.values() if isinstance(e, Fenced)]
            assert len(won) == 1 and len(lost) == 1, results
            assert lost[0].last == won[0]
            expected = won[0]
        # a stale expected sequence after a third party's append
        third = await b.append(5, b"fence", expected=expected, msg_id="5:fence")
        with pytest.raises(Fenced) as info:
            await a.append(5, b"stale", expected=expected, msg_id="5:stale")
        assert info.value.last == third


async def test_a_retried_append_returns_the_first_sequence(jetstream_servers):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        first = await js.append(4, b"one", expected=0, msg_id="4:1:1")
        assert await js.append(4, b"one", expected=0, msg_id="4:1:1") == first
        second = await js.append(4, b"two", expected=first, msg_id="4:1:2")
        # the retry of the first after the second landed: a duplicate, not a fence
        assert await js.append(4, b"one", expected=0, msg_id="4:1:1") == first
        assert await js.append(4, b"two", expected=first, msg_id="4:1:2") == second
        assert await js.read(4, 0) == [(first, b"one"), (second, b"two")]


async def test_append_all_gives_one_result_per_item(jetstream_servers):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        base = await js.append_all([(p, b"base", 0, f"{p}:base") for p in (10, 11, 12)])
        assert all(isinstance(s, int) for s in base)
        intruder = await js.append(11, b"other", expected=base[1], msg_id="11:other")
        outcomes = await js.append_all([(p, b"next", s, f"{p}:next") for p, s in zip((10, 11, 12), base)])
        assert isinstance(outcomes[0], int) and isinstance(outcomes[2], int)
        assert isinstance(outcomes[1], Fenced) and outcomes[1].last == intruder
        assert await js.read(10, base[0]) == [(outcomes[0], b"next")]
        assert await js.append_all([]) == []


async def test_kv_compare_and_set_and_the_watch(jetstream_servers):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        assert js.entries(LEASES) == {}
        assert await js.kv_get(LEASES, "p.01") is None
        changed = trio.Event()

        async def wait_for_change():
            await js.wait_changed(LEASES, 10)
            changed.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_change)
            await trio.sleep(0)
            created = await js.kv_create(LEASES, "p.01", b"a:1")
            with trio.fail_after(5):
                await changed.wait()
        with pytest.raises(Conflict):
            await js.kv_create(LEASES, "p.01", b"b:1")
        updated = await js.kv_update(LEASES, "p.01", b"a:2", revision=created)
        assert updated > created
        with pytest.raises(Conflict):
            await js.kv_update(LEASES, "p.01", b"b:2", revision=created)
        entry = await js.kv_get(LEASES, "p.01")
        assert (entry.value, entry.revision) == (b"a:2", updated)
        with pytest.raises(Conflict):
            await js.kv_delete(LEASES, "p.01", revision=created)
        await js.kv_delete(LEASES, "p.01", revision=updated)
        deleted = await js.kv_get(LEASES, "p.01")
        assert deleted.value is None and deleted.revision > updated
        again = await js.kv_create(LEASES, "p.01", b"b:3")
        assert again > deleted.revision

        async def watched():
            entry = js.entries(LEASES).get("p.01")
            return entry if entry is not None and entry.revision == again else None

        seen = await _wait_until(watched)
        assert seen.value == b"b:3"
        assert seen.seen_at <= time.monotonic()
        assert js.statistics["kv_spurious_refusals"] == 0
        # the watch saw every change in order; a second node sees the current table at once
        async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as other:
            assert other.entries(LEASES)["p.01"].revision == again
            assert other.entries(NODES) == {}
        start = trio.current_time()
        await js.wait_changed(NODES, 0.1)
        assert trio.current_time() - start >= 0.1


async def test_watch_sees_each_revision_with_increasing_seen_at(jetstream_servers):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        history = []
        revision = await js.kv_create(NODES, "a", b"1")
        for value in (b"2", b"3"):
            entry = await _wait_until(lambda: _async_true(_at(js, NODES, "a", revision)))
            history.append(entry)
            revision = await js.kv_update(NODES, "a", value, revision=revision)
        history.append(await _wait_until(lambda: _async_true(_at(js, NODES, "a", revision))))
        await js.kv_delete(NODES, "a", revision=revision)

        async def gone():
            entry = js.entries(NODES).get("a")
            return entry if entry is not None and entry.value is None else None

        history.append(await _wait_until(gone))
        assert [e.value for e in history] == [b"1", b"2", b"3", None]
        assert [e.revision for e in history] == sorted({e.revision for e in history})
        assert [e.seen_at for e in history] == sorted(e.seen_at for e in history)


def _at(js, bucket, key, revision):
    entry = js.entries(bucket).get(key)
    return entry if entry is not None and entry.revision == revision else None


async def test_setup_is_idempotent_and_checks_replicas(jetstream_servers, nats_cluster):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        sequence = await js.append(1, b"kept", expected=0, msg_id="1:kept")
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        assert await js.read(1, 0) == [(sequence, b"kept")]

    await on_asyncio(_recreate_stream, nats_cluster.urls, 1, StorageType.FILE)
    with pytest.raises(ClusterSetupError, match="1 replicas"):
        async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT):
            pass
    await on_asyncio(_recreate_stream, nats_cluster.urls, 3, StorageType.MEMORY)
    with pytest.raises(ClusterSetupError, match="has memory storage; Roost needs file storage"):
        async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT):
            pass


async def test_open_fails_in_time_when_nats_is_unreachable():
    start = trio.current_time()
    with pytest.raises(NatsUnavailable, match="could not connect"):
        async with open_jetstream(["nats://127.0.0.1:1"], timeout_seconds=0.5):
            pass
    assert trio.current_time() - start < 5 * 0.5 + SLACK_SECONDS


async def on_asyncio(coro_fn, *args):
    with AsyncioThread() as bridge:
        return await bridge.call(coro_fn, *args)


async def _recreate_stream(urls, replicas, storage, duplicate_window=0.0):
    nc = await nats.connect(servers=urls)
    try:
        js = nc.jetstream(timeout=5)
        try:
            await js.delete_stream(STREAM)
        except nats.js.errors.NotFoundError:
            pass
        await js.add_stream(
            name=STREAM,
            subjects=["roost.p.*"],
            num_replicas=replicas,
            storage=storage,
            duplicate_window=duplicate_window,
        )
    finally:
        await nc.close()


async def test_a_key_with_a_ttl_expires_into_a_delete_marker(jetstream_servers):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        created = await js.kv_create(NODES, "a", b"alive", ttl_seconds=1)

        async def expired():
            entry = js.entries(NODES).get("a")
            return entry if entry is not None and entry.value is None else None

        marker = await _wait_until(expired, timeout=10)
        assert marker.revision > created
        assert (await js.kv_get(NODES, "a")).value is None
        assert await js.kv_create(NODES, "a", b"again", ttl_seconds=1) > marker.revision


async def test_no_quorum_times_out_then_recovers(jetstream_servers, nats_cluster):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        expected = await js.append(2, b"before", expected=0, msg_id="2:before")
        paused = nats_cluster.nodes[1:]
        try:
            for node in paused:
                nats_cluster.pause(node)
            start = trio.current_time()
            with pytest.raises(NatsUnavailable):
                await js.append(2, b"during", expected=expected, msg_id="2:during")
            assert trio.current_time() - start < TIMEOUT + SLACK_SECONDS
            outcomes = await js.append_all([(2, b"during", expected, "2:during"), (6, b"x", 0, "6:x")])
            assert all(isinstance(o, NatsUnavailable) for o in outcomes)
            assert trio.current_time() - start < 2 * (TIMEOUT + SLACK_SECONDS)
            with pytest.raises(NatsUnavailable):
                await js.kv_create(LEASES, "p.02", b"x")
            with trio.move_on_after(0.1) as scope:  # a cancelled caller does not wait for NATS
                await js.append(7, b"cancelled", expected=0, msg_id="7:cancelled")
            assert scope.cancelled_caught
        finally:
            for node in paused:
                nats_cluster.resume(node)

        # the unknown outcome is settled by sending the same append again
        async def append_again():
            try:
                return await js.append(2, b"during", expected=expected, msg_id="2:during")
            except NatsUnavailable:
                return None

        during = await _wait_until(append_again, timeout=30)
        assert await js.read(2, 0) == [(expected, b"before"), (during, b"during")]
        # the create's outcome was unknown too: it landed or not, and the bucket works again
        entry = await js.kv_get(LEASES, "p.02")
        assert entry is None or entry.value == b"x"
        assert await js.kv_create(LEASES, "p.03", b"y") > 0


async def test_stream_leader_loss(jetstream_servers, nats_cluster):
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        acknowledged: list[tuple[int, bytes]] = []
        expected = 0
        for i in range(20):
            expected = await js.append(9, b"%d" % i, expected=expected, msg_id=f"9:1:{i}")
            acknowledged.append((expected, b"%d" % i))
        leader = nats_cluster.stream_leader(STREAM)
        assert leader is not None
        nats_cluster.kill(nats_cluster.node(leader))

        async def append(i):
            try:
                return await js.append(9, b"%d" % i, expected=expected, msg_id=f"9:1:{i}")
            except NatsUnavailable:
                return None  # outcome unknown: the same append again settles it

        for i in range(20, 40):
            expected = await _wait_until(lambda: append(i), timeout=30)
            acknowledged.append((expected, b"%d" % i))
        new_leader = nats_cluster.stream_leader(STREAM)
        assert new_leader not in (None, leader)

        async def read_back():
            try:
                return await js.read(9, 0)
            except NatsUnavailable:
                return None  # creating the reader's consumer waits for the meta group too

        assert await _wait_until(read_back, timeout=30) == acknowledged

        nats_cluster.restart(nats_cluster.node(leader))

        async def replica_current():
            info = nats_cluster.node(leader).monitor("/jsz?accounts=true&streams=true")
            streams = [s for a in info.get("account_details") or [] for s in a.get("stream_detail") or []]
            return any(s["name"] == STREAM and s["state"]["last_seq"] >= expected for s in streams)

        await _wait_until(replica_current, timeout=30, interval=0.2)


async def test_closing_is_bounded_when_no_server_answers(jetstream_servers, nats_cluster):
    try:
        async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
            await js.append(1, b"x", expected=0, msg_id="1:x")
            for node in nats_cluster.nodes:
                nats_cluster.pause(node)
            start = trio.current_time()
        assert trio.current_time() - start < 3 * TIMEOUT + 1 + SLACK_SECONDS
    finally:
        for node in nats_cluster.nodes:
            nats_cluster.resume(node)


async def test_a_retry_past_the_duplicate_window_finds_its_landed_append(jetstream_servers, nats_cluster):
    # the first attempt landed (its ack "lost"), another writer appended after it, and the
    # retry comes too late for deduplication: it is refused, and resolved as landed
    await on_asyncio(_recreate_stream, nats_cluster.urls, 3, StorageType.FILE, 0.2)
    async with open_jetstream(jetstream_servers, timeout_seconds=TIMEOUT) as js:
        landed = await js.append(8, b"mine", expected=0, msg_id="8:1:1")
        other = await js.append(8, b"fence", expected=landed, msg_id="8:2:fence")
        await trio.sleep(0.5)
        assert await js.append(8, b"mine", expected=0, msg_id="8:1:1") == landed
        with pytest.raises(Fenced) as info:
            await js.append(8, b"mine", expected=landed, msg_id="8:1:2")
        assert info.value.last == other
