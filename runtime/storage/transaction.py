"""Explicit transactions: a private write set over the storage, merged on a clean exit.

Reads inside the block see the block's own writes first. Merging is synchronous, so the
transaction's writes always reach the same group commit together.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from ..errors import StorageError
from .operations import KeyValueOperations
from .writeset import WriteSet


class Transaction(KeyValueOperations):
    """``async with storage.transaction() as txn``; ``txn.rollback()`` discards its writes."""

    __slots__ = ("_storage", "_merge", "_env", "_prefix", "_writes", "_state")

    def __init__(self, storage: KeyValueOperations, merge: Callable[[WriteSet], None]) -> None:
        """A transaction over ``storage``, whose clean exit hands its writes to ``merge``."""
        self._storage = storage
        self._merge = merge
        self._env = storage._env
        self._prefix = storage._prefix
        self._writes = WriteSet()
        self._state = "new"

    async def __aenter__(self) -> Transaction:
        if self._state != "new":
            raise StorageError("a transaction can be entered once")
        self._state = "open"
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None and self._state == "open":
            self._merge(self._writes)
        self._state = "done" if self._state == "open" else self._state

    def rollback(self) -> None:
        """Discard every write of this transaction; further writes in it raise."""
        self._writes = WriteSet()
        self._state = "rolled back"

    def _layers(self) -> tuple[WriteSet | None, ...]:
        return (self._writes, *self._storage._layers())

    def _write_target(self) -> WriteSet:
        if self._state != "open":
            raise StorageError(f"transaction is {self._state}; it takes no more writes")
        return self._writes

    def _durable_alarm(self) -> float | None:
        return self._storage._durable_alarm()
