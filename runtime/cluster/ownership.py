"""Which partitions this node owns: a lease per partition, taking over (fence, then catch-up
from the log), renewing, pausing and handing partitions off.

Every ``renew_seconds`` the node rewrites its key in ``roost_nodes`` (``membership``) and renews each lease it
holds by compare-and-set; a lease is valid for the owner until ``lease_seconds`` minus a
margin after the renewal was *sent*, and expired for an observer after ``lease_seconds``
without a new revision, counted only while the observer's own writes succeed (a NATS stall is
not an expiry). The partitions are spread by rendezvous hashing over the live nodes: each node
takes the free or expired partitions it ranks first for, and hands off those another live node
ranks first for. docs/cluster.md gives the reasons.

Leases are durations between processes, so this module (with ``replication`` and
``jetstream``) measures them on ``time.monotonic()``, not on the runtime's clock: a cluster
never runs in virtual time, and a lease must not jump with ``MockClock``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import aclosing
from functools import partial

import trio

from ..durability.partitions import partition_of
from ..errors import StorageError
from ..model.host import Host
from . import records
from .jetstream import LEASES, ClusterError, Conflict, Entry, Fenced, JetStream, NatsUnavailable
from .membership import Membership, pack_value, unpack_value
from .options import Timing
from .replication import Owned
from .shards import ClusterShards, applied_key
from .snapshots import Snapshots

log = logging.getLogger("roost.cluster")

# The owner stops believing in its lease this long before an observer may take it.
LEASE_MARGIN_SECONDS = 1.0
# How many records one LMDB transaction of a catch-up applies.
CATCH_UP_RECORDS_PER_TRANSACTION = 500
# How many times a catch-up reads again when the log was trimmed past it while it read.
CATCH_UP_ATTEMPTS = 3
FENCE_ATTEMPTS = 5
# How long a hand-off lets the partition's running events finish.
HAND_OFF_WAIT_SECONDS = 1.0
def lease_key(partition: int) -> str:
    return f"p.{partition:02d}"


def rank(partition: int, node: str) -> bytes:
    """Rendezvous hashing: the node with the highest rank for a partition is its home."""
    return hashlib.blake2b(f"{partition}/{node}".encode(), digest_size=8).digest()


class Ownership:
    def __init__(
        self,
        jetstream: JetStream,
        node: str,
        advertise: str,
        shards: ClusterShards,
        host: Host,
        rescan_alarms: Callable[[], None],
        snapshots: Snapshots,
        timing: Timing = Timing(),
    ) -> None:
        self.jetstream = jetstream
        self.snapshots = snapshots
        self.node = node
        self.shards = shards
        self.host = host
        self.timing = timing
        self.membership = Membership(jetstream, node, advertise, timing)
        self.owned: dict[int, Owned] = {}
        self._rescan_alarms = rescan_alarms
        self._taking: set[int] = set()
        self.statistics = {"takeovers": 0, "hand_offs": 0, "lost": 0, "records_replayed": 0}

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                started = time.monotonic()
                await self.membership.beat()
                await self._renew_all()
                self._balance(nursery)
                self.snapshots.start_due(self.owned, nursery)
                await trio.sleep(max(0.0, self.timing.renew_seconds - (time.monotonic() - started)))

    async def _renew_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for partition in list(self.owned):
                nursery.start_soon(self._renew, partition)

    async def _renew(self, partition: int) -> None:
        owned = self.owned.get(partition)
        if owned is None:
            return
        sent = time.monotonic()
        value = pack_value({"node": self.node, "epoch": owned.epoch})
        try:
            revision = await self.jetstream.kv_update(LEASES, lease_key(partition), value, revision=owned.revision)
        except NatsUnavailable:
            return  # its deadline passes by itself: the partition pauses until a renewal lands
        except Conflict:
            found = await self._lease(partition)
            if found is None or found[0] != self.node or found[1] != owned.epoch:
                self.give_up(partition, f"its lease was taken ({found})")
                return
            revision = found[2]
        if self.owned.get(partition) is not owned:
            return
        owned.revision = revision
        owned.deadline = sent + self.timing.lease_seconds - LEASE_MARGIN_SECONDS
        if owned.ready:
            self.shards.serve(partition, owned.deadline)

    async def _lease(self, partition: int) -> tuple[str | None, int, int] | None:
        entry = await self.jetstream.kv_get(LEASES, lease_key(partition))
        if entry is None or entry.value is None:
            return None
        data = unpack_value(entry.value)
        return data.get("node"), data.get("epoch", 0), entry.revision

    # -- balancing --------------------------------------------------------------------------

    def home_of(self, partition: int, live: dict[str, str]) -> str:
        return max(live, key=lambda node: rank(partition, node))

    def owner_of(self, partition: int) -> str | None:
        """The node holding the partition's lease, as this node's watch last saw it."""
        entry = self.jetstream.entries(LEASES).get(lease_key(partition))
        if entry is None or entry.value is None:
            return None
        return unpack_value(entry.value).get("node")

    def _balance(self, nursery: trio.Nursery) -> None:
        live = self.membership.live_nodes()
        leases = self.jetstream.entries(LEASES)
        now = time.monotonic()
        settled = self.timing.lease_seconds
        for partition in range(self.shards.partitions):
            home = self.home_of(partition, live)
            owned = self.owned.get(partition)
            if home == self.node:
                lease = leases.get(lease_key(partition))
                if owned is None and partition not in self._taking and self._takeable(lease, now):
                    self._taking.add(partition)
                    nursery.start_soon(self._take, partition)
            elif owned is not None and owned.ready and self.membership.live_for(home, now) >= settled:
                if self.owner_of(partition) == self.node:
                    nursery.start_soon(self._hand_off, partition, home)

    def _takeable(self, entry: Entry | None, now: float) -> bool:
        if entry is None or entry.value is None:
            return True
        holder = unpack_value(entry.value).get("node")
        if holder is None or holder == self.node:
            return True  # released, or held by an earlier life of this node
        ok_since = self.membership.writes_ok_since
        lease = self.timing.lease_seconds
        return ok_since is not None and now - entry.seen_at > lease and now - ok_since > lease

    # -- taking over ------------------------------------------------------------------------

    async def _take(self, partition: int) -> None:
        try:
            await self._take_over(partition)
        except ClusterError as exc:
            log.warning("partition %d: not taken this time: %s", partition, exc)
            self.owned.pop(partition, None)
        finally:
            self._taking.discard(partition)

    async def _take_over(self, partition: int) -> None:
        key = lease_key(partition)
        entry = await self.jetstream.kv_get(LEASES, key)
        sent = time.monotonic()
        if entry is None:
            epoch = 1
            revision = await self.jetstream.kv_create(LEASES, key, pack_value({"node": self.node, "epoch": epoch}))
        else:
            epoch = (unpack_value(entry.value).get("epoch", 0) if entry.value else 0) + 1
            value = pack_value({"node": self.node, "epoch": epoch})
            revision = await self.jetstream.kv_update(LEASES, key, value, revision=entry.revision)
        owned = Owned(epoch, revision, 0, sent + self.timing.lease_seconds - LEASE_MARGIN_SECONDS)
        self.owned[partition] = owned  # renewed from now on, served once ready
        fence_at = await self._fence(partition, epoch)
        replayed = await self._catch_up(partition, fence_at)
        if self.owned.get(partition) is not owned:
            return
        owned.expected = fence_at
        owned.since_snapshot = replayed
        owned.ready = True
        self.shards.serve(partition, owned.deadline)
        self._rescan_alarms()
        self.statistics["takeovers"] += 1
        log.info(
            "partition %d taken over (epoch %d, %d records caught up)",
            partition,
            epoch,
            replayed,
            extra={"event": "cluster.partition_taken", "partition": partition, "epoch": epoch},
        )

    async def _fence(self, partition: int, epoch: int) -> int:
        """Append the epoch's fence record; its sequence. After it, no older epoch appends."""
        last = await self.jetstream.last_sequence(partition)
        payload = records.fence(partition, epoch, self.node)
        for _ in range(FENCE_ATTEMPTS):
            try:
                return await self.jetstream.append(
                    partition, payload, expected=last, msg_id=f"{partition}:{epoch}:fence"
                )
            except Fenced as fenced:
                last = fenced.last  # the old owner appended once more: it will be replayed
        raise ClusterError(f"partition {partition}: the fence did not land in {FENCE_ATTEMPTS} attempts")

    async def _catch_up(self, partition: int, upto: int) -> int:
        """Apply every record after the local copy's position, up to ``upto``; from the
        latest snapshot if the log was trimmed past that position."""
        env = self.shards.shard.env
        after = self.shards.applied(partition)
        replayed = 0
        for _ in range(CATCH_UP_ATTEMPTS):
            if not await self.snapshots.intact_after(partition, after):
                after = await self.snapshots.restore(partition, after)
            start = after
            async with aclosing(self.jetstream.read_batches(partition, after, upto)) as batches:
                async for batch in batches:  # applied as read: memory holds one batch
                    await self._apply_records(partition, batch)
                    after, replayed = batch[-1][0], replayed + len(batch)
            if await self.snapshots.intact_after(partition, start):
                break  # no trim cut into what the read returned (else the snapshot replaces it)
        else:
            raise ClusterError(f"partition {partition}: its log was trimmed during each of {CATCH_UP_ATTEMPTS} reads")
        if after < upto:
            await trio.to_thread.run_sync(lambda: env.apply_batch([], meta={applied_key(partition): b"%d" % upto}))
        self.statistics["records_replayed"] += replayed
        return replayed

    async def _apply_records(self, partition: int, found: list[tuple[int, bytes]]) -> None:
        """Apply ``found`` in order, a transaction per ``CATCH_UP_RECORDS_PER_TRANSACTION``,
        each setting the partition's applied position."""
        env = self.shards.shard.env
        for start in range(0, len(found), CATCH_UP_RECORDS_PER_TRANSACTION):
            chunk = found[start : start + CATCH_UP_RECORDS_PER_TRANSACTION]
            writes = [w for _, payload in chunk for w in records.decode(payload).writes]
            meta = {applied_key(partition): b"%d" % chunk[-1][0]}
            try:
                await trio.to_thread.run_sync(partial(env.apply_batch, writes, meta=meta))
            except StorageError as exc:  # whole or nothing: the copy stays at the last record applied
                raise ClusterError(f"partition {partition}: a record could not be applied: {exc}") from None

    # -- giving partitions up ---------------------------------------------------------------

    def give_up(self, partition: int, reason: str, *, planned: bool = False) -> None:
        """Stop serving ``partition`` now and reset its live actors (it may be taken again);
        ``planned``: a hand-off, not a loss."""
        if self.owned.pop(partition, None) is None:
            return
        self.shards.stop_serving(partition)
        count = self.shards.partitions
        reset = self.host.reset_where(
            lambda prefix: partition_of(prefix, count) == partition, f"partition {partition} moved: {reason}"
        )
        if planned:
            log.info(
                "partition %d handed off %s",
                partition,
                reason,
                extra={"event": "cluster.partition_handed_off", "partition": partition},
            )
            return
        self.statistics["lost"] += 1
        log.warning(
            "partition %d given up: %s (%d live actors reset)",
            partition,
            reason,
            reset,
            extra={"event": "cluster.partition_lost", "partition": partition, "reason": reason},
        )

    async def _hand_off(self, partition: int, to: str) -> None:
        """A planned move: stop taking events, let the last commit land, release the lease."""
        owned = self.owned.get(partition)
        if owned is None or not owned.ready:
            return
        owned.ready = False
        self.shards.stop_serving(partition)
        # Events already running finish (new ones are forwarded, and wait for the new owner).
        count = self.shards.partitions
        with trio.move_on_after(HAND_OFF_WAIT_SECONDS):
            while self.host.busy_where(lambda prefix: partition_of(prefix, count) == partition):
                await trio.sleep(0.01)
        batch = self.shards.shard.committer.open_batch
        if batch.writers:
            await batch.done.wait()
        if self.owned.get(partition) is not owned:
            return
        self.give_up(partition, f"to node {to}, its home", planned=True)
        self.statistics["hand_offs"] += 1
        await self._release(partition, owned)

    async def release_all(self) -> None:
        """At shutdown, after the last commit: let every lease go, so others need not wait."""
        for partition, owned in list(self.owned.items()):
            self.owned.pop(partition, None)
            self.shards.stop_serving(partition)
            await self._release(partition, owned)

    async def _release(self, partition: int, owned: Owned) -> None:
        """Mark the lease released (its epoch kept, so the next owner's is higher)."""
        value = pack_value({"node": None, "epoch": owned.epoch})
        try:
            await self.jetstream.kv_update(LEASES, lease_key(partition), value, revision=owned.revision)
        except ClusterError as exc:
            log.info("partition %d: its release did not land (%s); it expires instead", partition, exc)

