"""The KV half of ``JetStream``: the buckets ``roost_leases`` and ``roost_nodes``, written by
compare-and-set, read from their leader, and each watched into a table this node reads
without a call (``entries``).

``KeyValue`` is a mixin of ``JetStream``: it uses the connection's context (``_js``), its
calls (``_call``, ``_retry``, ``_get_message``, ``_after_refusal``) and its counters, and
owns the tables and their watches; ``nats_setup`` creates the buckets.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import nats.js.errors
import trio
from nats.js.api import Header

from .nats_errors import REFUSALS, ClusterError, Conflict

LEASES = "roost_leases"
NODES = "roost_nodes"
BUCKETS = (LEASES, NODES)
_KV_OPERATION = "KV-Operation"
_KV_DELETED = ("DEL", "PURGE")
_MARKER_REASON = "Nats-Marker-Reason"

log = logging.getLogger("roost.cluster")


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


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a KV watch stopped; its table no longer changes", exc_info=task.exception())


class KeyValue:
    _js: Any
    _timeout: float
    _attempt: float
    _token: trio.lowlevel.TrioToken
    statistics: dict[str, int]

    def _init_buckets(self) -> None:
        self._watchers: list[Any] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._lock = threading.Lock()
        self._tables: dict[str, dict[str, Entry]] = {bucket: {} for bucket in BUCKETS}
        self._changed_events: dict[str, trio.Event] = {bucket: trio.Event() for bucket in BUCKETS}

    # --- the trio side ---------------------------------------------------------------------

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

    # --- the asyncio side ------------------------------------------------------------------

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
