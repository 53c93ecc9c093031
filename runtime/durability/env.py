"""The one LMDB environment of a data directory: owning it, opening it, reads, and applying
write sets.

This is the only module that touches ``lmdb`` and the only place its errors are translated
into ``StorageError``. Reads run inline in short read transactions and never yield; the
write half (``apply_batch``) runs inside one call on whichever thread the committer uses, and
never across an ``await``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import lmdb

from ..errors import StorageError
from ..limits import DEFAULT_MAX_DBS
from ..model import codec
from . import keys
from .key_ranges import in_byte_order, raw_range
from .lock import DirectoryLock

# A value in a write set that means "delete this key".
DELETE = None
# A row of the actors' databases, as ``dump`` yields it: (database name, key, value).
Row = tuple[bytes, bytes, bytes]
Meta = dict[bytes, bytes]  # meta records: a cluster's applied log positions


@dataclass(slots=True)
class ActorWrites:
    """One actor's writes in one group commit.

    ``values`` maps user keys (UTF-8 bytes) to new values or DELETE; ``clear`` deletes every
    key of the actor first. With ``write_record``, ``record`` replaces the actor's metadata
    record. With ``move_alarm``, the alarm index entry moves from ``old_alarm`` to
    ``new_alarm`` (None: no entry).
    """

    prefix: bytes
    values: dict[bytes, bytes | None] = field(default_factory=dict)
    clear: bool = False
    record: Any = None
    write_record: bool = False
    old_alarm: float | None = None
    new_alarm: float | None = None
    move_alarm: bool = False
    # The alarm once these writes are applied; with no key left either, the record goes.
    alarm_after: float | None = None
    # Set by the writer: the actor was left with no data, so its record was removed.
    record_removed: bool = False


class MapFull(Exception):
    """Raised inside ``apply_batch`` when the map is full, so the caller can grow it and retry."""


class Environment:
    """An open LMDB environment with Roost's named databases."""

    def __init__(
        self, path: str, *, map_size_bytes: int, max_map_size_bytes: int, lock: bool = True
    ) -> None:
        # Taken first: a second opener must not touch the environment at all. ``lock=False``
        # is for a caller that holds the directory's lock already (splitting it in partitions).
        self._lock = DirectoryLock(path) if lock else None
        try:
            self._env = lmdb.open(
                path,
                map_size=map_size_bytes,
                max_dbs=DEFAULT_MAX_DBS,
                sync=True,
                metasync=True,
                writemap=False,
                readahead=False,
                max_spare_txns=4,
            )
            self._env.reader_check()
            self.kv = self._env.open_db(keys.DB_KV)
            self.actors = self._env.open_db(keys.DB_ACTORS)
            self.alarms = self._env.open_db(keys.DB_ALARMS)
            self.meta = self._env.open_db(keys.DB_META)
            self._check_schema()
        except lmdb.Error as exc:
            self._release_lock()
            raise StorageError(f"cannot open LMDB environment at {path!r}: {exc}") from exc
        except BaseException:
            self._release_lock()
            raise
        self.path = path
        self.max_map_size_bytes = max(map_size_bytes, max_map_size_bytes)

    def _check_schema(self) -> None:
        with self._env.begin(db=self.meta, write=True) as txn:
            found = txn.get(keys.SCHEMA_KEY)
            if found is None:
                txn.put(keys.SCHEMA_KEY, str(keys.SCHEMA_VERSION).encode())
            elif int(found) != keys.SCHEMA_VERSION:
                raise StorageError(
                    f"data directory has schema {int(found)}, this Roost reads {keys.SCHEMA_VERSION}"
                )

    def close(self) -> None:
        self._env.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    # -- reads: inline, short transactions, never across an await --------------------------

    def get(self, prefix: bytes, user_key: bytes) -> bytes | None:
        stored = keys.stored_key(user_key)
        with _failing("read"), self._env.begin(db=self.kv) as txn:
            value = txn.get(prefix + stored)
        if value is None or not keys.is_long(stored):
            return value
        full_key, data = keys.split_long_value(value)
        return data if full_key == user_key else None

    def scan(
        self,
        prefix: bytes,
        low: bytes | None,
        high: bytes | None,
        *,
        reverse: bool,
        limit: int | None,
    ) -> list[tuple[bytes, bytes]]:
        """(user key, value) pairs with ``low <= key < high`` in byte order (or reversed).

        ``low``/``high`` are user keys; None means unbounded. At most ``limit`` pairs.
        """
        out: list[tuple[bytes, bytes]] = []
        with _failing("read"), self._env.begin(db=self.kv) as txn:
            for pair in in_byte_order(raw_range(txn, prefix, low, high, reverse), reverse):
                user_key = pair[0]
                if low is not None and user_key < low:
                    if reverse:
                        break
                    continue
                if high is not None and user_key >= high:
                    if reverse:
                        continue
                    break
                out.append(pair)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def get_record(self, prefix: bytes) -> dict | None:
        with _failing("read"), self._env.begin(db=self.actors) as txn:
            raw = txn.get(prefix)
        return None if raw is None else codec.decode(raw)

    def records(self, namespace_key: bytes) -> list[tuple[bytes, dict]]:
        """(actor id, record) of every actor with stored data in one namespace."""
        out = []
        with _failing("read"), self._env.begin(db=self.actors) as txn:
            cursor = txn.cursor()
            if cursor.set_range(namespace_key):
                for key, raw in cursor:
                    if not key.startswith(namespace_key):
                        break
                    out.append((key[len(namespace_key) :], codec.decode(raw)))
        return out

    def alarms_due(self, resume_key: bytes, until: float, limit: int) -> list[tuple[bytes, bytes]]:
        """(index key, actor prefix) of entries at or after ``resume_key`` and due by ``until``."""
        out: list[tuple[bytes, bytes]] = []
        with _failing("read"), self._env.begin(db=self.alarms) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(resume_key):
                return out
            for key in cursor.iternext(keys=True, values=False):
                due, prefix = keys.split_alarm_index_key(key)
                if due > until or len(out) >= limit:
                    break
                out.append((bytes(key), prefix))
        return out

    def next_alarm(self, resume_key: bytes) -> float | None:
        """The due time of the first index entry at or after ``resume_key``."""
        with _failing("read"), self._env.begin(db=self.alarms) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(resume_key):
                return None
            return keys.split_alarm_index_key(cursor.key())[0]

    def alarm_count(self) -> int:
        with self._env.begin() as txn:
            return txn.stat(self.alarms)["entries"]

    # -- writes: one call, one thread ------------------------------------------------------

    def apply_batch(
        self,
        batch: list[ActorWrites],
        fault: Callable[[ActorWrites | None], None] | None = None,
        filled: Callable[[], None] | None = None,
        *,
        meta: Meta | None = None,
    ) -> list[tuple[ActorWrites, Exception]]:
        """Commit every actor's writes in one durable transaction, with ``meta``'s records
        (a cluster's applied log positions) in the same one. With ``meta`` the commit is
        whole or nothing (``StorageError`` if one actor's part fails): a position is true
        only of a copy that holds every write up to it.

        Returns the actors whose own part failed (their writes are not in the commit): the
        writes go in together, and only if one actor's part fails are they applied again one
        child transaction per actor, so that part alone is left out. Raises ``MapFull`` when
        the map is full, ``StorageError`` when the whole commit failed. ``filled`` is called
        once every write is in the transaction, before the commit syncs. ``fault`` is the
        test hook of ``runtime.testing.inject_commit_failure``.
        """
        failed: list[tuple[ActorWrites, Exception]] = []
        try:
            with self._env.begin(write=True) as txn:
                try:
                    if fault is not None or not self._fill_together(txn, batch):
                        failed = self._fill_apart(txn, batch, fault)
                        if failed and meta:
                            raise StorageError(
                                f"an actor's writes could not be applied ({failed[0][1]}), so none of"
                                " the commit was: its log position would not be true"
                            )
                    for key, value in (meta or {}).items():
                        txn.put(key, value, db=self.meta)
                finally:
                    if filled is not None:
                        filled()
        except lmdb.MapFullError as exc:
            raise MapFull(str(exc)) from exc
        except lmdb.Error as exc:
            # The host prefixes "commit failed: " when it resets the actors; say what it means.
            raise StorageError(
                f"LMDB could not write the commit (a full disk shows as an I/O error): {exc}"
            ) from exc
        return failed

    def _fill_together(self, txn: lmdb.Transaction, batch: list[ActorWrites]) -> bool:
        """Every actor's writes in one child transaction; False, with none written, if one fails."""

        def apply_all(child: lmdb.Transaction) -> None:
            for writes in batch:
                self._apply_actor(child, writes)

        return self._in_child(txn, apply_all) is None

    def _fill_apart(
        self,
        txn: lmdb.Transaction,
        batch: list[ActorWrites],
        fault: Callable[[ActorWrites | None], None] | None,
    ) -> list[tuple[ActorWrites, Exception]]:
        """Each actor's writes in a child transaction of its own; the parts that failed."""
        failed = []
        for writes in batch:

            def apply_one(child: lmdb.Transaction, writes: ActorWrites = writes) -> None:
                if fault is not None:
                    fault(writes)
                self._apply_actor(child, writes)

            error = self._in_child(txn, apply_one)
            if error is not None:
                failed.append((writes, error))
        if fault is not None:
            fault(None)
        return failed

    def _in_child(self, txn: lmdb.Transaction, apply: Callable[[lmdb.Transaction], None]) -> Exception | None:
        """Run ``apply`` in a child transaction of ``txn``: committed, or aborted with its error
        returned (a full map aborts the whole commit: ``MapFullError`` propagates)."""
        child = self._env.begin(write=True, parent=txn)
        try:
            apply(child)
        except lmdb.MapFullError:
            child.abort()
            raise
        except (lmdb.Error, StorageError) as exc:
            child.abort()
            return exc
        child.commit()
        return None

    def _apply_actor(self, txn: lmdb.Transaction, writes: ActorWrites) -> None:
        prefix = writes.prefix
        writes.record_removed = False
        if writes.clear:
            cursor = txn.cursor(db=self.kv)
            if cursor.set_range(prefix):
                while cursor.key().startswith(prefix):
                    if not cursor.delete():
                        break
        for user_key, value in writes.values.items():
            stored = prefix + keys.stored_key(user_key)
            if value is DELETE:
                txn.delete(stored, db=self.kv)
            else:
                txn.put(stored, keys.stored_value(user_key, value), db=self.kv)
        if writes.move_alarm:
            if writes.old_alarm is not None:
                txn.delete(keys.alarm_index_key(writes.old_alarm, prefix), db=self.alarms)
            if writes.new_alarm is not None:
                txn.put(keys.alarm_index_key(writes.new_alarm, prefix), b"", db=self.alarms)
        if writes.write_record and writes.record is not None:
            txn.put(prefix, codec.encode(writes.record), db=self.actors)
        emptied = writes.clear or any(value is DELETE for value in writes.values.values())
        if (
            (emptied or writes.move_alarm)
            and writes.alarm_after is None
            and not _has_keys(txn, self.kv, prefix)
        ):
            writes.record_removed = txn.delete(prefix, db=self.actors)

    def get_meta(self, key: bytes) -> bytes | None:
        with _failing("read"), self._env.begin(db=self.meta) as txn:
            return txn.get(key)

    def holds_actor_data(self) -> bool:
        """Whether any actor has a record here."""
        with _failing("read"), self._env.begin(db=self.actors) as txn:
            return txn.stat(self.actors)["entries"] > 0

    def grow(self) -> bool:
        """Double the map size up to the maximum. Call only with no transaction open."""
        current = self._env.info()["map_size"]
        if current >= self.max_map_size_bytes:
            return False
        self._env.set_mapsize(min(current * 2, self.max_map_size_bytes))
        return True

    # -- moving data between environments (``migrate``) and a cluster's snapshots ----------

    def dump(self) -> Iterator[Row]:
        """Every (database name, key, value) of the actors' databases, in one read transaction."""
        with _failing("read"), self._env.begin() as txn:
            yield from self._rows(txn)

    def dump_where(self, belongs: Callable[[bytes], bool], meta_key: bytes) -> tuple[bytes | None, list[Row]]:
        """The rows of the actors whose prefix ``belongs``, and the meta record ``meta_key``,
        read in one transaction (so they agree); a pass over every row."""
        with _failing("read"), self._env.begin() as txn:
            rows = [row for row in self._rows(txn) if belongs(keys.prefix_of_row(row[0], row[1]))]
            return txn.get(meta_key, db=self.meta), rows

    def _rows(self, txn: lmdb.Transaction) -> Iterator[Row]:
        for name, db in ((keys.DB_KV, self.kv), (keys.DB_ACTORS, self.actors), (keys.DB_ALARMS, self.alarms)):
            for key, value in txn.cursor(db=db):
                yield name, bytes(key), bytes(value)

    def load(
        self, rows: list[Row], *, replacing: Callable[[bytes], bool] | None = None, meta: Meta | None = None
    ) -> None:
        """Write ``rows`` (as ``dump`` yields them) and ``meta`` in one synced transaction,
        after deleting every row of the actors whose prefix ``replacing`` accepts."""
        databases = {keys.DB_KV: self.kv, keys.DB_ACTORS: self.actors, keys.DB_ALARMS: self.alarms}
        with _failing("write"), self._env.begin(write=True) as txn:
            if replacing is not None:
                for name, db in databases.items():
                    _delete_where(txn.cursor(db=db), name, replacing)
            for name, key, value in rows:
                txn.put(key, value, db=databases[name])
            for key, value in (meta or {}).items():
                txn.put(key, value, db=self.meta)

    def stats(self) -> dict[str, int]:
        info = self._env.info()
        return {"map_size_bytes": info["map_size"], "last_txn_id": info["last_txnid"]}


@contextmanager
def _failing(what: str) -> Iterator[None]:
    """LMDB's errors as ``StorageError``: "read failed: ..." or "write failed: ..."."""
    try:
        yield
    except lmdb.Error as exc:
        raise StorageError(f"{what} failed: {exc}") from exc


def _has_keys(txn: lmdb.Transaction, db: Any, prefix: bytes) -> bool:
    cursor = txn.cursor(db=db)
    return cursor.set_range(prefix) and cursor.key().startswith(prefix)


def _delete_where(cursor: lmdb.Cursor, database: bytes, belongs: Callable[[bytes], bool]) -> None:
    """Delete the rows of ``database`` whose actor prefix ``belongs``."""
    cursor.first()
    while cursor.key():
        if belongs(keys.prefix_of_row(database, bytes(cursor.key()))):
            if not cursor.delete():
                break
        elif not cursor.next():
            break
