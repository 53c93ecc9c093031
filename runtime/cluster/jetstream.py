"""``JetStream``: Roost's trio-facing view of NATS JetStream (with ``snapshot_store``, the
only modules that import nats-py).

It owns the stream ``ROOST`` (a subject per partition: appends fenced by the expected last
subject sequence, reads, purges) and the KV buckets ``roost_leases`` and ``roost_nodes``
(compare-and-set writes, reads from the leader, a watched table), and creates the object
store ``roost_snapshots``. nats-py runs on an
``AsyncioThread``; every call has its own time limit and raises ``NatsUnavailable`` past it.
It decides nothing about ownership: refusals are resolved (docs/cluster.md, "What a refusal
means") and reported, never acted on.

Errors::

    ClusterError
    ├── NatsUnavailable     no answer within the call's limit (an append's outcome is unknown)
    ├── Fenced              the subject's last record is another writer's (.last)
    ├── Conflict            a KV compare-and-set was refused
    └── ClusterSetupError   the existing stream or a bucket does not match the configuration
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import trio
from nats.js.api import ConsumerConfig, DeliverPolicy, Header, ObjectStoreConfig, StorageType, StreamConfig

from .bridge import AsyncioThread
from .options import shown

STREAM = "ROOST"
LEASES = "roost_leases"
NODES = "roost_nodes"
BUCKETS = (LEASES, NODES)
SNAPSHOTS = "roost_snapshots"  # an object store: the partitions' snapshots (snapshot_store)
DUPLICATE_WINDOW_SECONDS = 120.0
# how long the server keeps the delete marker it writes when a key's per-message TTL expires
MARKER_TTL_SECONDS = 60.0
WRONG_LAST_SEQUENCE = 10071  # "wrong last sequence: N"
# "wrong last sequence" without N: the leader refuses while another write to the subject is
# still being proposed, before it knows whether that one lands
WRONG_LAST_SEQUENCE_IN_PROCESS = 10164
REFUSALS = (WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_IN_PROCESS)
NO_MESSAGE_FOUND = 10037
STREAM_NAME_IN_USE = 10058
DUPLICATE_IN_PROCESS = 10158
NO_SUITABLE_PEERS = 10005
MAX_REFUSALS_RESENT = 5  # pausing 10, 20, 40, 80 ms between them
REFUSAL_PAUSE_SECONDS = 0.01
RETRY_PAUSE_SECONDS = 0.05
READ_BATCH_RECORDS = 1000  # a read's time limit is timeout_seconds per batch
OPEN_TIMEOUT_FACTOR = 5  # connecting and setting up may take 5 calls' limits
# the trio side waits this much longer than the loop's own limit, so that the loop's answer
# (with its cause) normally wins, and a wedged loop still cannot hang trio
GUARD_SECONDS = 0.5

_KV_OPERATION = "KV-Operation"
_KV_DELETED = ("DEL", "PURGE")
_MARKER_REASON = "Nats-Marker-Reason"
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoRespondersError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.NoStreamResponseError,
)

log = logging.getLogger("roost.cluster")
T = TypeVar("T")


def subject(partition: int) -> str:
    """The subject of a partition's log: ``roost.p.07``."""
    return f"roost.p.{partition:02d}"


class ClusterError(Exception):
    """Base of the errors of the NATS layer."""


class NatsUnavailable(ClusterError, TimeoutError):
    """NATS did not answer within the call's time limit, or is unreachable. For an append or
    a KV write the outcome is unknown: it may have landed."""


class Fenced(ClusterError):
    """An append was refused: the subject's last record, at ``last``, is not the expected one
    and not ours. Another writer appended since."""

    def __init__(self, partition: int, expected: int, last: int) -> None:
        super().__init__(
            f"{subject(partition)}: expected last sequence {expected}, the log's is {last} (another writer's)"
        )
        self.last = last


class Conflict(ClusterError):
    """A KV compare-and-set was refused: the key's revision is not the one given (after
    resolving spurious refusals)."""


class ClusterSetupError(ClusterError):
    """The existing stream or bucket does not match what Roost is configured for."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A KV key's value at a revision; ``value`` None means deleted or purged."""

    key: str
    value: bytes | None
    revision: int
    seen_at: float  # time.monotonic() when this node first saw this revision (via its watch)


@dataclass(slots=True)
class _Stored:
    revision: int
    value: bytes | None
    msg_id: str | None


@dataclass(slots=True)
class _Read:
    subscription: Any
    target: int


def _transient_api_error(exc: nats.js.errors.APIError) -> bool:
    # 503: no leader now, JetStream temporarily unavailable; 10158: an earlier attempt with
    # this message id is still being proposed, and will be answered as a duplicate once done;
    # 10005: creating a replicated stream while a server is (or looks) offline
    return exc.code == 503 or exc.err_code in (DUPLICATE_IN_PROCESS, NO_SUITABLE_PEERS)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a KV watch stopped; its table no longer changes", exc_info=task.exception())


class JetStream:
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
        self._watchers: list[Any] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._lock = threading.Lock()
        self._tables: dict[str, dict[str, Entry]] = {bucket: {} for bucket in BUCKETS}
        self._changed_events: dict[str, trio.Event] = {bucket: trio.Event() for bucket in BUCKETS}
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

    async def kv_create(self, bucket: str, key: str, value: bytes, *, ttl_seconds: float | None = None) -> int:
        """Create ``key`` (also over a deleted or purged one); return its revision. Raises
        ``Conflict`` if it holds a live value. ``ttl_seconds``: the server deletes it after."""
        return await self._call(self._timeout, self._kv_write, bucket, key, value, 0, None, ttl_seconds, True)

    async def kv_update(
        self, bucket: str, key: str, value: bytes, *, revision: int, ttl_seconds: float | None = None
    ) -> int:
        """Set ``key`` if its revision is still ``revision``; return the new revision. Raises
        ``Conflict`` otherwise."""
        return await self._call(self._timeout, self._kv_write, bucket, key, value, revision, None, ttl_seconds, False)

    async def kv_delete(self, bucket: str, key: str, *, revision: int) -> None:
        """Delete ``key`` if its revision is still ``revision``; raises ``Conflict`` otherwise."""
        await self._call(self._timeout, self._kv_write, bucket, key, b"", revision, "DEL", None, False)

    async def kv_get(self, bucket: str, key: str) -> Entry | None:
        """The key's current entry, read from the bucket's leader (not the watch); None if the
        key never existed or its delete marker is gone; ``value`` None if deleted."""
        stored = await self._call(self._timeout, self._kv_read, bucket, key)
        if stored is None:
            return None
        with self._lock:
            seen = self._tables[bucket].get(key)
        seen_at = seen.seen_at if seen is not None and seen.revision == stored.revision else time.monotonic()
        return Entry(key, stored.value, stored.revision, seen_at)

    def entries(self, bucket: str) -> dict[str, Entry]:
        """A copy of the bucket's watched table, key -> entry (deleted keys with value None).
        Does not block and is not a checkpoint; safe from any thread."""
        with self._lock:
            return dict(self._tables[bucket])

    async def wait_changed(self, bucket: str, timeout: float) -> None:
        """Return when the bucket's watched table changes next, or after ``timeout`` seconds."""
        event = self._changed_events[bucket]
        with trio.move_on_after(timeout):
            await event.wait()

    def _changed(self, bucket: str) -> None:
        event, self._changed_events[bucket] = self._changed_events[bucket], trio.Event()
        event.set()

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
        await self._ensure_stream(replicas)
        for bucket in BUCKETS:
            await self._ensure_bucket(bucket, replicas)
        await self._ensure_object_store(SNAPSHOTS, replicas)
        for bucket in BUCKETS:
            await self._watch(bucket)

    async def _stream_info(self, name: str) -> Any:
        try:
            return await self._retry(self._js.stream_info, name)
        except nats.js.errors.NotFoundError:
            return None

    async def _ensure(self, name: str, what: str, create: Callable[[], Awaitable[Any]], replicas: int) -> Any:
        info = await self._stream_info(name)
        if info is None:
            try:
                info = await self._retry(create)
            except nats.js.errors.APIError as exc:
                if exc.err_code != STREAM_NAME_IN_USE:  # another node created it meanwhile
                    raise ClusterSetupError(f"cannot create {what}: {exc.description}") from exc
                info = await self._stream_info(name)
        config = info.config
        if config.storage != StorageType.FILE:
            storage = getattr(config.storage, "value", config.storage)
            raise ClusterSetupError(
                f"{what} has {storage} storage; Roost needs file storage. Storage cannot be "
                f"changed in place: back it up, delete it (nats stream rm {name}) and let Roost create it"
            )
        if config.num_replicas != replicas:
            raise ClusterSetupError(
                f"{what} has {config.num_replicas} replicas, Roost is configured for {replicas}: "
                f"run `nats stream edit {name} --replicas {replicas}` or start Roost with --replicas {config.num_replicas}"
            )
        return info

    async def _ensure_stream(self, replicas: int) -> None:
        config = StreamConfig(
            name=STREAM,
            subjects=["roost.p.*"],
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
        )
        info = await self._ensure(STREAM, f"the stream {STREAM}", lambda: self._js.add_stream(config), replicas)
        created = info.created.isoformat() if info.created is not None else ""
        self.log_incarnation = hashlib.blake2b(created.encode(), digest_size=4).hexdigest()

    async def _ensure_bucket(self, bucket: str, replicas: int) -> None:
        async def create() -> Any:
            await self._js.create_key_value(
                bucket=bucket,
                history=1,
                storage=StorageType.FILE,
                replicas=replicas,
                limit_marker_ttl=MARKER_TTL_SECONDS,
            )
            return await self._js.stream_info(f"KV_{bucket}")

        await self._ensure(f"KV_{bucket}", f"the KV bucket {bucket}", create, replicas)

    async def _ensure_object_store(self, bucket: str, replicas: int) -> None:
        async def create() -> Any:
            config = ObjectStoreConfig(storage=StorageType.FILE, replicas=replicas)
            await self._js.create_object_store(bucket, config=config)
            return await self._js.stream_info(f"OBJ_{bucket}")

        await self._ensure(f"OBJ_{bucket}", f"the object store {bucket}", create, replicas)

    async def _watch(self, bucket: str) -> None:
        kv = await self._retry(self._js.key_value, bucket)
        watcher = await self._retry(kv.watchall)
        self._watchers.append(watcher)
        initial = asyncio.Event()

        async def pump() -> None:
            async for update in watcher:
                if update is None:  # the end of the initial values
                    initial.set()
                    continue
                deleted = update.operation in _KV_DELETED
                self._record(bucket, update.key, None if deleted else update.value, update.revision)

        task = asyncio.get_running_loop().create_task(pump())
        task.add_done_callback(_log_failure)
        self._pumps.append(task)
        await initial.wait()

    def _record(self, bucket: str, key: str, value: bytes | None, revision: int) -> None:
        with self._lock:
            table = self._tables[bucket]
            seen = table.get(key)
            if seen is not None and seen.revision >= revision:
                return
            table[key] = Entry(key, value, revision, time.monotonic())
        try:
            self._token.run_sync_soon(self._changed, bucket)
        except trio.RunFinishedError:
            pass

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
        """``coro_fn`` again while NATS is briefly unavailable (a reconnect, an election),
        until the call's limit cancels it; other errors propagate."""
        while True:
            try:
                return await coro_fn(*args, **kwargs)
            except nats.js.errors.APIError as exc:
                if not _transient_api_error(exc):
                    raise
            except _TRANSIENT:
                pass
            if counter is not None:
                self.statistics[counter] += 1
            await asyncio.sleep(RETRY_PAUSE_SECONDS)

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
                raise Fenced(partition, expected, last_sequence)
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

    async def _kv_read(self, bucket: str, key: str) -> _Stored | None:
        msg = await self._get_message(f"KV_{bucket}", subject=f"$KV.{bucket}.{key}")
        if msg is None:
            return None
        headers = msg.headers or {}
        # a delete or purge, or the marker the server leaves where a message's TTL expired
        deleted = headers.get(_KV_OPERATION) in _KV_DELETED or _MARKER_REASON in headers
        value = None if deleted else (msg.data or b"")
        return _Stored(msg.seq, value, headers.get(Header.MSG_ID))

    async def _kv_write(
        self,
        bucket: str,
        key: str,
        value: bytes,
        revision: int,
        operation: str | None,
        ttl_seconds: float | None,
        create: bool,
    ) -> int:
        # a message id per logical write: a retry after a lost ack is a duplicate, and finding
        # it as the key's current message proves that the write landed
        msg_id = uuid.uuid4().hex
        refusals = 0
        while True:
            headers = {Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(revision), Header.MSG_ID: msg_id}
            if operation is not None:
                headers[_KV_OPERATION] = operation
            try:
                ack = await self._retry(
                    self._js.publish,
                    f"$KV.{bucket}.{key}",
                    value,
                    timeout=self._attempt,
                    headers=headers,
                    msg_ttl=ttl_seconds,
                )
                return ack.seq
            except nats.js.errors.APIError as exc:
                if exc.err_code not in REFUSALS:
                    raise ClusterError(f"{bucket}/{key}: write refused: {exc.description}") from exc
                code = exc.err_code
            current = await self._kv_read(bucket, key)
            if current is not None and current.msg_id == msg_id:
                return current.revision
            if create and current is not None and current.value is None and current.revision != revision:
                revision = current.revision  # created over a delete marker: expect the marker
                continue
            current_revision = 0 if current is None else current.revision
            if current_revision != revision:
                what = "exists" if create else f"is at revision {current_revision}, not {revision}"
                raise Conflict(f"{bucket}/{key} {what}")
            refusals += 1
            why = f"{bucket}/{key}: write refused although the revision is still {revision}"
            await self._after_refusal(code, refusals, "kv_", why)

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
