"""A prefix's user keys in true byte order, read from the stored layout (``keys``).

A user key up to ``keys.INLINE_KEY_BYTES`` is stored as it is; a longer one as its head and
a hash, with the whole key in the value. LMDB's order is therefore byte order except among
long keys sharing a head: ``raw_range`` walks the stored keys (forwards or backwards, from a
bound), and ``in_byte_order`` sorts those runs back into place.
"""

from __future__ import annotations

from collections.abc import Iterator

import lmdb

from . import keys

_ABOVE_ANY_HASH = b"\xff" * (keys.HASH_BYTES + 1)


def raw_range(
    txn: lmdb.Transaction, prefix: bytes, low: bytes | None, high: bytes | None, reverse: bool
) -> Iterator[tuple[bytes, bytes]]:
    """Decoded (user key, value) pairs in LMDB order: long keys sharing a head unsorted."""
    cursor = txn.cursor()
    cut = len(prefix)
    if reverse:
        if high is not None:
            # Every stored key whose user key is below ``high`` sorts below this seek point. A
            # bound that fits inline compares with stored keys as with user keys; a longer one
            # is cut to a head, and a long key with that head may still be below it.
            if len(high) <= keys.INLINE_KEY_BYTES:
                seek = prefix + high
            else:
                seek = prefix + high[: keys.INLINE_KEY_BYTES] + _ABOVE_ANY_HASH
            positioned = cursor.set_range(seek)
        else:
            positioned = cursor.set_range(next_prefix(prefix))
        if positioned:
            positioned = cursor.prev()
        else:
            positioned = cursor.last()
        iterator = cursor.iterprev() if positioned else iter(())
    else:
        start = prefix + (low[: keys.INLINE_KEY_BYTES] if low is not None else b"")
        iterator = cursor.iternext() if cursor.set_range(start) else iter(())
    for key, value in iterator:
        if not key.startswith(prefix):
            break
        stored = key[cut:]
        if keys.is_long(stored):
            yield keys.split_long_value(value)
        else:
            yield stored, value


def in_byte_order(pairs: Iterator[tuple[bytes, bytes]], reverse: bool) -> Iterator[tuple[bytes, bytes]]:
    """Restore true byte order among adjacent long keys that share their stored head."""
    run: list[tuple[bytes, bytes]] = []
    head: bytes | None = None
    for pair in pairs:
        if len(pair[0]) > keys.INLINE_KEY_BYTES:
            this_head = pair[0][: keys.INLINE_KEY_BYTES]
            if this_head == head:
                run.append(pair)
                continue
            yield from sorted(run, reverse=reverse)
            run, head = [pair], this_head
            continue
        yield from sorted(run, reverse=reverse)
        run, head = [], None
        yield pair
    yield from sorted(run, reverse=reverse)


def next_prefix(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\xff" * (len(prefix) + 1)
    return stripped[:-1] + bytes([stripped[-1] + 1])
