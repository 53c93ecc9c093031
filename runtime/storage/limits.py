"""Checks of storage arguments: keys, values, batch sizes. Raise before anything is written."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import StorageLimitError
from ..limits import MAX_KEY_BYTES, MAX_KEYS_PER_CALL, MAX_VALUE_BYTES
from ..model import codec


def key_bytes(key: Any) -> bytes:
    """The UTF-8 bytes of a storage key; ``TypeError`` or ``StorageLimitError`` if invalid."""
    if not isinstance(key, str):
        raise TypeError(f"storage keys must be str, not {type(key).__name__}")
    try:
        data = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StorageLimitError(f"storage key is not valid UTF-8 (lone surrogate?): {exc}") from None
    if len(data) > MAX_KEY_BYTES:
        raise StorageLimitError(f"storage key is {len(data)} bytes UTF-8; the limit is {MAX_KEY_BYTES}")
    return data


def value_bytes(key: str, value: Any) -> bytes:
    """``value`` encoded; ``DataCloneError`` or ``StorageLimitError`` if it cannot be stored."""
    data = codec.encode(value)
    if len(data) > MAX_VALUE_BYTES:
        raise StorageLimitError(
            f"value for key {key[:64]!r} is {len(data)} bytes encoded; the limit is {MAX_VALUE_BYTES}"
        )
    return data


def key_list(keys: Iterable[str]) -> list[bytes]:
    if isinstance(keys, (str, bytes)):
        raise TypeError("expected a list of keys, not a single key")
    checked = [key_bytes(k) for k in keys]
    _count(len(checked))
    return checked


def entry_list(mapping: Any) -> list[tuple[bytes, bytes]]:
    if not hasattr(mapping, "items"):
        raise TypeError(f"put_many takes a mapping, not {type(mapping).__name__}")
    entries = [(key_bytes(k), value_bytes(k, v)) for k, v in mapping.items()]
    _count(len(entries))
    return entries


def _count(n: int) -> None:
    if n > MAX_KEYS_PER_CALL:
        raise StorageLimitError(f"{n} keys in one call; the limit is {MAX_KEYS_PER_CALL}")
