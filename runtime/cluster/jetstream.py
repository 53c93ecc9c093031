"""``JetStream``: Roost's trio-facing view of NATS JetStream (with ``kv``, ``nats_setup``
and ``snapshot_store``, the only modules that import nats-py).

It owns the stream ``ROOST`` (a subject per partition: appends fenced by the expected last
subject sequence, reads, purges) and, through the ``kv.KeyValue`` mixin, the KV buckets
``roost_leases`` and ``roost_nodes`` (compare-and-set writes, reads from the leader, a
watched table); ``nats_setup`` creates or checks them and the object store
``roost_snapshots`` when it connects. nats-py runs on an ``AsyncioThread``; every call has
its own time limit and raises ``NatsUnavailable`` past it.
It decides nothing about ownership: refusals are resolved (docs/cluster.md, "What a refusal
means") and reported, never acted on; ``nats_errors`` has what it raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import trio
from nats.js.api import ConsumerConfig, DeliverPolicy, Header

from .bridge import AsyncioThread
from .kv import BUCKETS, LEASES, NODES, Entry, KeyValue
from .nats_errors import (
    NO_MESSAGE_FOUND,
    REFUSALS,
    WRONG_LAST_SEQUENCE_IN_PROCESS,
    ClusterError,
    ClusterSetupError,
    Conflict,
    Fenced,
    NatsUnavailable,
)
from .nats_setup import SNAPSHOTS, STREAM, ensure_bucket, ensure_object_store, ensure_stream, retry
from .options import shown

__all__ = [  # what the other modules of the cluster import from here
    "BUCKETS", "LEASES", "NODES", "SNAPSHOTS", "STREAM", "ClusterError", "ClusterSetupError", "Conflict",
    "Entry", "Fenced", "JetStream", "NatsUnavailable", "open_jetstream", "subject",
]  # fmt: skip

MAX_REFUSALS_RESENT = 5  # pausing 10, 20, 40, 80 ms between them
REFUSAL_PAUSE_SECONDS = 0.01
READ_BATCH_RECORDS = 1000  # a read's time limit is timeout_seconds per batch
OPEN_TIMEOUT_FACTOR = 5  # connecting and setting up may take 5 calls' limits
# the trio side waits this much longer than the loop's own limit, so that the loop's answer
# (with its cause) normally wins, and a wedged loop still cannot hang trio
GUARD_SECONDS = 0.5

log = logging.getLogger("roost.cluster")
T = TypeVar("T")


def subject(partition: int) -> str:
    """The subject of a partition's log: ``roost.p.07``."""
    return f"roost.p.{partition:02d}"


@dataclass(slots=True)
class _Read:
    subscription: Any
    target: int


class JetStream(KeyValue):
    """The connection's calls; built by ``open_jetstream``. Every async method is a trio
    checkpoint, has its own time limit (``timeout_seconds`` unless said) and raises
    ``NatsUnavailable`` past it; cancelling the caller cancels the NATS call."""

    def __init__(self, bridge: AsyncioThread, timeout_seconds: float, token: trio.lowlevel.TrioToken) -> None:
        self._bridge = bridge
        self._timeout = timeout_seconds
        self._attempt = timeout_seconds / 2  # a publish attempt: leaves time for a retry
        self._token = token
        self._nc: Any = None
        # Tells this stream from an earlier one of the same name (deleted and created again):
        # a digest of its creation time. Snapshots and local copies belong to one of them.
        self.log_incarnation = ""
        self._js: Any = None
        self._init_buckets()
        self.statistics: dict[str, int] = dict.fromkeys(
            (
                "appends",
                "append_retries",
                "spurious_refusals",
                "refusals_in_process",
                "kv_spurious_refusals",
                "kv_refusals_in_process",
                "calls_timed_out",
            ),
            0,
        )

    # --- the trio side ---------------------------------------------------------------------

    async def run(self, coro_fn: Callable[..., Awaitable[T]], *args: Any, limit: float | None = None) -> T:
        """``await coro_fn(context, *args)`` on the NATS thread, with nats-py's JetStream
        context; sent again while NATS is briefly unavailable, within ``limit`` (default
        ``timeout_seconds``), then ``NatsUnavailable``. For the modules built on this one."""
        return await self._call(limit or self._timeout, self._retry, lambda: coro_fn(self._js, *args))

    async def _call(self, limit: float, coro_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        with trio.move_on_after(limit + GUARD_SECONDS):
            return await self._bridge.call(self._limited, limit, coro_fn, *args)
        self.statistics["calls_timed_out"] += 1
        raise NatsUnavailable(f"NATS did not answer within {limit} s (the asyncio thread is stuck)")

    async def last_sequence(self, partition: int) -> int:
        """The stream sequence of the subject's last message, 0 if it has none."""
        return await self._call(self._timeout, self._last_sequence, subject(partition))

    async def first_sequence(self, partition: int) -> int:
        """The stream sequence of the subject's first message still stored, 0 if none."""
        return await self._call(self._timeout, self._first_sequence, subject(partition))

    async def append(self, partition: int, payload: bytes, *, expected: int, msg_id: str) -> int:
        """Append ``payload`` to the partition's subject if its last sequence is ``expected``;
        return the new record's sequence. A retry with the same ``msg_id`` (within the
        2-minute duplicate window) returns the first landing's sequence. Raises ``Fenced`` if
        another writer's record is last, ``NatsUnavailable`` (outcome unknown) past the limit."""
        return await self._call(self._timeout, self._append, partition, payload, expected, msg_id)

    async def append_all(self, appends: list[tuple[int, bytes, int, str]]) -> list[int | ClusterError]:
        """Many appends ``(partition, payload, expected, msg_id)`` at once, in one hop to the
        NATS thread, each resolved as ``append``; one result per item, in order: the sequence
        or the error (``Fenced``, ``NatsUnavailable``, ``ClusterError``). Never raises those."""
        with trio.move_on_after(self._timeout + GUARD_SECONDS):
            return await self._bridge.call(self._append_all, appends)
        self.statistics["calls_timed_out"] += len(appends)
        return [NatsUnavailable(f"NATS did not answer within {self._timeout} s") for _ in appends]

    async def read(self, partition: int, after: int, upto: int | None = None) -> list[tuple[int, bytes]]:
        """Every record of the subject with a sequence ``> after`` (and ``<= upto``), in
        order, as ``(sequence, payload)``. Records purged below the subject's first sequence
        are silently absent (compare ``first_sequence``). The limit is ``timeout_seconds`` per
        1,000 records."""
        async with aclosing(self.read_batches(partition, after, upto)) as batches:
            return [record async for batch in batches for record in batch]

    async def read_batches(
        self, partition: int, after: int, upto: int | None = None
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        """``read``'s records in batches of up to 1,000, each non-empty, as they arrive; use
        it with ``contextlib.aclosing`` so that an early stop ends the read on the server."""
        read = await self._call(self._timeout, self._read_start, subject(partition), after, upto)
        if read is None:
            return
        try:
            while True:
                batch, done = await self._call(self._timeout, self._read_batch, read)
                if batch:
                    yield batch
                if done:
                    return
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self._timeout):
                await self._bridge.call(self._read_stop, read)

    async def purge_up_to(self, partition: int, sequence: int) -> None:
        """Remove the subject's records with a sequence ``< sequence``. The subject's last
        record is always kept (``sequence`` is capped at it), so that the fence still holds."""
        await self._call(self._timeout, self._purge_up_to, subject(partition), sequence)

    # --- the asyncio side: opening and closing ---------------------------------------------

    async def _limited(self, limit: float, coro_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        deadline = asyncio.timeout(limit)
        try:
            async with deadline:
                return await coro_fn(*args)
        except TimeoutError:
            if not deadline.expired():
                raise  # a NatsUnavailable of the call itself
            self.statistics["calls_timed_out"] += 1
            raise NatsUnavailable(f"NATS did not answer within {limit} s") from None

    async def _open(self, servers: list[str], replicas: int, name: str) -> None:
        async def on_error(exc: Exception) -> None:
            log.debug("NATS connection: %r", exc)

        async def on_disconnected() -> None:
            log.info("NATS connection lost; reconnecting")

        try:
            self._nc = await nats.connect(
                servers=servers,
                name=name,
                connect_timeout=max(1, int(self._timeout)),
                reconnect_time_wait=0.1,
                max_reconnect_attempts=-1,
                ping_interval=max(1, int(self._timeout)),
                max_outstanding_pings=2,
                drain_timeout=max(1, int(self._timeout)),
                error_cb=on_error,
                disconnected_cb=on_disconnected,
            )
        except (nats.errors.Error, OSError) as exc:
            raise NatsUnavailable(f"cannot connect to NATS at {shown(servers)}: {exc!r}") from exc
        self._js = self._nc.jetstream(timeout=self._timeout)
        self.log_incarnation = await ensure_stream(self._js, replicas)
        for bucket in BUCKETS:
            await ensure_bucket(self._js, bucket, replicas)
        await ensure_object_store(self._js, SNAPSHOTS, replicas)
        for bucket in BUCKETS:
            await self._watch(bucket)

    async def _close(self) -> None:
        for pump in self._pumps:
            pump.cancel()
        if self._nc is None:
            return
        try:  # nats-py's drain has its own limit (drain_timeout): let it answer first
            async with asyncio.timeout(self._timeout + 1):
                for watcher in self._watchers:
                    await watcher.stop()
                await self._nc.drain()
        except (TimeoutError, nats.errors.Error) as exc:
            log.info("NATS connection did not drain (%r); closing it", exc)
            try:
                async with asyncio.timeout(self._timeout):
                    await self._nc.close()
            except (TimeoutError, nats.errors.Error):
                pass  # the bridge's close cancels whatever is left

    # --- the asyncio side: the calls --------------------------------------------------------

    async def _retry(
        self, coro_fn: Callable[..., Awaitable[T]], *args: Any, counter: str | None = None, **kwargs: Any
    ) -> T:
        """``nats_setup.retry``, counting each retry under ``counter``."""
        on_retry = None if counter is None else partial(self._count, counter)
        return await retry(coro_fn, *args, on_retry=on_retry, **kwargs)

    def _count(self, counter: str) -> None:
        self.statistics[counter] += 1

    async def _get_message(self, stream: str, **query: Any) -> Any:
        """A stream message through the stream's leader (never a direct get, which a replica
        may answer from behind), or None."""
        try:
            return await self._retry(self._js.get_msg, stream, **query)
        except nats.js.errors.NotFoundError as exc:
            if exc.err_code == NO_MESSAGE_FOUND:
                return None
            raise ClusterError(f"{stream}: {exc.description}") from exc

    async def _last_sequence(self, name: str) -> int:
        last = await self._get_message(STREAM, subject=name)
        return 0 if last is None else last.seq

    async def _first_sequence(self, name: str) -> int:
        first = await self._get_message(STREAM, seq=1, subject=name, next=True)
        return 0 if first is None else first.seq

    async def _append(self, partition: int, payload: bytes, expected: int, msg_id: str) -> int:
        name = subject(partition)
        headers = {Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(expected), Header.MSG_ID: msg_id}
        self.statistics["appends"] += 1
        refusals = 0
        while True:
            try:
                ack = await self._retry(
                    self._js.publish,
                    name,
                    payload,
                    timeout=self._attempt,
                    headers=dict(headers),
                    counter="append_retries",
                )
                return ack.seq  # a duplicate's ack carries the first landing's sequence
            except nats.js.errors.APIError as exc:
                if exc.err_code not in REFUSALS:
                    raise ClusterError(f"{name}: append refused: {exc.description}") from exc
                code = exc.err_code
            last = await self._get_message(STREAM, subject=name)
            last_sequence = 0 if last is None else last.seq
            if last is not None and (last.headers or {}).get(Header.MSG_ID) == msg_id:
                return last_sequence  # an earlier attempt landed, its ack was lost
            if last_sequence != expected:
                # an earlier attempt whose answer was lost can have landed right after
                # `expected`, before the other writer's records: then it is in the log (and the
                # other writer, which expected it, replays it), so it counts as appended
                following = await self._get_message(STREAM, seq=expected + 1, subject=name, next=True)
                if following is not None and (following.headers or {}).get(Header.MSG_ID) == msg_id:
                    return following.seq
                raise Fenced(name, expected, last_sequence)
            refusals += 1
            why = f"{name}: append refused although the last sequence is still {expected}"
            await self._after_refusal(code, refusals, "", why)

    async def _append_all(self, appends: list[tuple[int, bytes, int, str]]) -> list[int | ClusterError]:
        async def one(partition: int, payload: bytes, expected: int, msg_id: str) -> int | ClusterError:
            try:
                return await self._limited(self._timeout, self._append, partition, payload, expected, msg_id)
            except ClusterError as exc:
                return exc

        return list(await asyncio.gather(*(one(*item) for item in appends)))

    async def _read_start(self, name: str, after: int, upto: int | None) -> _Read | None:
        last = await self._last_sequence(name)
        target = last if upto is None else min(last, upto)
        if target <= after:
            return None
        subscription = await self._retry(
            self._js.subscribe,
            name,
            stream=STREAM,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1),
        )
        return _Read(subscription, target)

    async def _read_batch(self, read: _Read) -> tuple[list[tuple[int, bytes]], bool]:
        batch: list[tuple[int, bytes]] = []
        while len(batch) < READ_BATCH_RECORDS:
            msg = await read.subscription.next_msg(timeout=None)
            sequence = msg.metadata.sequence.stream
            if sequence > read.target:
                return batch, True
            batch.append((sequence, msg.data))
            if sequence == read.target or msg.metadata.num_pending == 0:
                return batch, True
        return batch, False

    async def _read_stop(self, read: _Read) -> None:
        try:
            await read.subscription.unsubscribe()
        except nats.errors.Error:
            pass  # the ephemeral consumer expires on the server by itself

    async def _purge_up_to(self, name: str, sequence: int) -> None:
        last = await self._last_sequence(name)
        upto = min(sequence, last)
        if upto > 1:
            await self._retry(self._js.purge_stream, STREAM, seq=upto, subject=name)

    async def _after_refusal(self, code: int, refusals: int, prefix: str, what: str) -> None:
        """A refusal although the expected record is still the last one. Mostly another
        write to the subject being proposed (10164): it lands (the next attempt is refused
        with its sequence) or fails (the next attempt lands). Rarely a spurious 10071. Either
        way: pause, growing, and send again; after ``MAX_REFUSALS_RESENT`` give up."""
        in_process = code == WRONG_LAST_SEQUENCE_IN_PROCESS
        self.statistics[f"{prefix}{'refusals_in_process' if in_process else 'spurious_refusals'}"] += 1
        if not in_process:
            log.warning("%s (error %d); sending it again", what, code)
        if refusals >= MAX_REFUSALS_RESENT:
            raise NatsUnavailable(f"{what}, {refusals} times")
        await asyncio.sleep(REFUSAL_PAUSE_SECONDS * 2 ** (refusals - 1))


@asynccontextmanager
async def open_jetstream(
    servers: list[str], *, timeout_seconds: float = 2.0, replicas: int = 3, name: str = "roost"
) -> AsyncIterator[JetStream]:
    """Connect to NATS, create or check the stream and buckets, watch both buckets, and yield
    once each watch has delivered its initial values. Raises ``NatsUnavailable`` if that takes
    longer than 5 calls' limits, ``ClusterSetupError`` on a mismatching stream or bucket. On
    exit the watches stop and the connection drains (bounded), then the thread stops."""
    bridge = AsyncioThread()
    try:
        jetstream = JetStream(bridge, timeout_seconds, trio.lowlevel.current_trio_token())
        try:
            limit = timeout_seconds * OPEN_TIMEOUT_FACTOR
            try:
                await jetstream._call(limit, jetstream._open, servers, replicas, name)
            except NatsUnavailable as exc:
                where = shown(servers)
                why = f"could not connect to NATS at {where} and set up within {limit} s: {exc}"
                raise NatsUnavailable(why) from exc
            yield jetstream
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(3 * timeout_seconds + 1 + GUARD_SECONDS):
                await bridge.call(jetstream._close)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(bridge.close)
