"""``Storage``: one actor's durable key-value store and alarm, as API.md section 3 describes.

Writes land in an in-memory ``WriteSet`` and the actor is marked dirty with the committer;
the committer takes the set at its next group commit (so writes made without yielding are
always committed together). Must stay true: no method but ``sync`` yields to trio, and
``wait_durable`` returns only once every earlier write is committed with sync.
"""

from __future__ import annotations

from collections.abc import Callable

from ..durability.committer import Batch, Committer
from ..durability.env import ActorWrites, Environment
from ..errors import ActorResetError, StorageError
from .operations import KeyValueOperations
from .transaction import Transaction
from .writeset import UNCHANGED, WriteSet, lookup_alarm


class Storage(KeyValueOperations):
    """The storage of one actor instance (``self.storage`` / ``ctx.storage``).

    Keys are str of at most 2048 bytes UTF-8; values msgpack-encodable, at most 131072 bytes
    encoded (``StorageLimitError`` otherwise, nothing written). Values come back as copies.
    """

    __slots__ = (
        "_env",
        "_committer",
        "_prefix",
        "_name",
        "_pending",
        "_in_flight",
        "_recent",
        "_committing",
        "_batch",
        "_registered",
        "_alarm",
        "_alarm_correlation_id",
        "_alarm_traceparent",
        "_on_alarm_committed",
        "_alarm_writes",
        "_alarm_firing",
        "_closed",
    )

    def __init__(
        self,
        env: Environment,
        committer: Committer,
        prefix: bytes,
        *,
        name: str | None,
        record: dict | None,
        on_alarm_committed: Callable[[bytes, float | None], None] | None = None,
    ) -> None:
        self._env = env
        self._committer = committer
        self._prefix = prefix
        self._name = name
        self._pending: WriteSet | None = None
        self._in_flight: WriteSet | None = None
        # The last committed write set, when small: read before LMDB, so a key written by the
        # last commit is read back without a read transaction (a counter's get before its put).
        self._recent: WriteSet | None = None
        self._committing: ActorWrites | None = None
        self._batch: Batch | None = None
        self._registered = record is not None and record.get("name") == name
        self._alarm: float | None = None if record is None else record.get("alarm")
        self._alarm_correlation_id: str | None = None if record is None else record.get("alarm_cid")
        self._alarm_traceparent: str | None = None if record is None else record.get("alarm_tp")
        self._on_alarm_committed = on_alarm_committed
        self._alarm_writes = 0
        self._alarm_firing = False
        self._closed = False

    # -- layering --------------------------------------------------------------------------

    def _layers(self) -> tuple[WriteSet | None, ...]:
        return (self._pending, self._in_flight, self._recent)

    def _write_target(self) -> WriteSet:
        if self._closed:
            raise ActorResetError("this actor instance was reset; its storage is closed")
        if self._pending is None:
            self._pending = WriteSet()
        committer = self._committer
        if self._batch is not committer.open_batch:
            self._batch = committer.mark_dirty(self)
        return self._pending

    def _durable_alarm(self) -> float | None:
        # While alarm() runs, the alarm being delivered is as good as gone.
        return None if self._alarm_firing else self._alarm

    def _note_alarm_write(self) -> None:
        self._alarm_writes += 1

    # -- API beyond the shared key-value methods --------------------------------------------

    async def delete_all(self) -> None:
        """Delete every key and the alarm."""
        self._write_target().clear()
        self._note_alarm_write()

    def transaction(self) -> Transaction:
        """``async with storage.transaction() as txn``: all of its writes or none.

        The block's writes become visible to the rest of the actor when it exits normally; an
        exception or ``txn.rollback()`` discards them, alarm changes included.
        """
        return Transaction(self, self.apply_transaction)

    async def sync(self) -> None:
        """Return once every write made before this call is durable."""
        await self.wait_durable()

    # -- for the runtime -------------------------------------------------------------------

    @property
    def prefix(self) -> bytes:
        return self._prefix

    def learn_name(self, name: str) -> None:
        """The actor's name became known: store it with the next write."""
        self._name = name
        self._registered = False

    @property
    def committed_alarm(self) -> float | None:
        """The alarm as of the last durable commit."""
        return self._alarm

    @property
    def alarm_correlation_id(self) -> str | None:
        """The correlation id of the event that set the committed alarm."""
        return self._alarm_correlation_id

    @property
    def alarm_traceparent(self) -> str | None:
        """The span (W3C traceparent) of the event that set the committed alarm, if traced."""
        return self._alarm_traceparent

    @property
    def last_batch(self) -> Batch | None:
        """The group commit holding this storage's latest write."""
        return self._batch

    @property
    def has_unflushed_writes(self) -> bool:
        batch = self._batch
        return batch is not None and not batch.done.is_set()

    async def wait_durable(self) -> None:
        """The output gate: wait for the commit holding this actor's latest write."""
        batch = self._batch
        if batch is None:
            return
        done = batch.done
        if not done.is_set():
            self._committer.start_commit()
            if not done.is_set():
                await done.wait()
        failure = batch.failure_of(self)
        if failure is not None:
            raise ActorResetError(f"commit failed: {failure}; the actor was reset")

    def close(self) -> None:
        """Drop writes not yet handed to the committer; later writes raise."""
        self._closed = True
        self._pending = None

    def apply_transaction(self, writes: WriteSet) -> None:
        writes.merge_into(self._write_target())
        if writes.cleared or writes.alarm is not UNCHANGED:
            self._note_alarm_write()

    def alarm_ready(self, now: float, *, force: bool = False) -> bool:
        """Whether the committed alarm should be delivered now: set, due (unless ``force``),
        and not changed by a write that is not durable yet (the scheduler will hear of that)."""
        found, _ = lookup_alarm(self._layers())
        return not found and self._alarm is not None and (force or self._alarm <= now)

    def begin_alarm(self) -> int:
        """``alarm()`` is about to run: ``get_alarm()`` reads None unless it sets a new one.

        Returns a mark for ``end_alarm``."""
        self._alarm_firing = True
        return self._alarm_writes

    def end_alarm(self, mark: int, *, succeeded: bool) -> bool:
        """``alarm()`` returned or raised; True if it set or deleted the alarm itself.

        After a success the delivered alarm is deleted, as an ordinary write, so it is gone
        only once that write is durable (at-least-once delivery)."""
        self._alarm_firing = False
        rearmed = self._alarm_writes != mark
        if succeeded and not rearmed:
            self._write_target().alarm = None
        return rearmed

    # -- the committer's side (Writer protocol) ---------------------------------------------

    def take_writes(self) -> ActorWrites:
        taken = self._pending if self._pending is not None else WriteSet()
        self._pending = None
        self._in_flight = taken
        if taken.alarm is UNCHANGED:
            alarm, alarm_cid, alarm_tp = self._alarm, self._alarm_correlation_id, self._alarm_traceparent
        else:
            alarm, alarm_cid, alarm_tp = taken.alarm, taken.alarm_correlation_id, taken.alarm_traceparent
        writes = ActorWrites(self._prefix, values=taken.values, clear=taken.cleared, alarm_after=alarm)  # type: ignore[arg-type]
        if alarm != self._alarm:
            writes.move_alarm = True
            writes.old_alarm, writes.new_alarm = self._alarm, alarm  # type: ignore[assignment]
        # The record (name and alarm) is written when it changes or the actor first stores
        # something; the writer removes it when the actor is left with no key and no alarm.
        if writes.move_alarm or (not self._registered and any(v is not None for v in taken.values.values())):
            record = {"name": self._name, "alarm": alarm, "alarm_cid": alarm_cid}
            if alarm_tp is not None:
                record["alarm_tp"] = alarm_tp
            writes.write_record, writes.record = True, record
        self._committing = writes
        return writes

    def writes_committed(self, batch: Batch) -> None:
        writes = self._committing
        self._recent = _small_or_none(self._in_flight)
        self._in_flight = self._committing = None
        if self._batch is batch:
            # Nothing newer is pending: let go of the batch (an idle actor keeps no commit state).
            self._batch = None
        if writes is None:
            raise StorageError("commit confirmed for a storage with nothing in flight")
        if writes.record_removed:
            self._registered = False
        elif writes.write_record:
            self._registered = True
        if writes.write_record:
            self._alarm_correlation_id = writes.record["alarm_cid"]
            self._alarm_traceparent = writes.record.get("alarm_tp")
        if writes.move_alarm:
            self._alarm = writes.new_alarm
            if self._on_alarm_committed is not None:
                self._on_alarm_committed(self._prefix, self._alarm)


# A committed write set stays readable in memory while it is at most this big.
RECENT_MAX_KEYS = 8
RECENT_MAX_BYTES = 1024


def _small_or_none(committed: WriteSet | None) -> WriteSet | None:
    """``committed`` as a read layer if it is small: it matches LMDB for its keys (and, when
    cleared, for the whole actor), and no longer speaks for the alarm."""
    if committed is None or len(committed.values) > RECENT_MAX_KEYS:
        return None
    size = 0
    for value in committed.values.values():
        if value is not None:
            size += len(value)
    if size > RECENT_MAX_BYTES:
        return None
    committed.alarm = UNCHANGED
    return committed
