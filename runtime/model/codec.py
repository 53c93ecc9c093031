"""Copying values through msgpack: the one encoding of RPC arguments, results and stored values.

Supported: None, bool, int (64-bit), float, str, bytes, list/tuple (decoded as list, except
tuples used as dict keys, which stay tuples), dict, and timezone-aware ``datetime`` (decoded
in UTC). Anything else raises ``DataCloneError``.
Pure functions: no trio, no I/O.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..errors import DataCloneError

_packer = msgpack.Packer(datetime=True, use_bin_type=True)


def encode(value: Any) -> bytes:
    """Encode ``value``; raise ``DataCloneError`` naming the offending type if it cannot be."""
    try:
        return _packer.pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataCloneError(f"cannot copy value: {exc}") from None


def decode(data: bytes) -> Any:
    """Decode bytes made by ``encode``. Every call returns a fresh copy."""
    try:
        return msgpack.unpackb(data, timestamp=3, strict_map_key=False)
    except TypeError:
        # A tuple used as a dict key was packed as an array, which decodes as an unhashable
        # list: decode again, turning such keys back into tuples (slower, and rare).
        return msgpack.unpackb(data, timestamp=3, strict_map_key=False, object_pairs_hook=_dict_from_pairs)


def _dict_from_pairs(pairs: list[tuple[Any, Any]]) -> dict:
    return {_hashable(key): value for key, value in pairs}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def copy(value: Any) -> Any:
    """A structured-clone style copy: what the other side of an RPC boundary receives."""
    if is_plain_scalar(value):
        return value
    return decode(encode(value))


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def is_plain_scalar(value: Any) -> bool:
    """True for a value that a copy would give back equal and that nobody can change: None, a
    bool, a float, an int msgpack can hold, or an ASCII str. Copying such a value is skipped."""
    kind = type(value)
    if kind is int:
        return _INT_MIN <= value <= _INT_MAX
    if kind is str:
        return value.isascii()
    return kind is float or kind is bool or value is None
