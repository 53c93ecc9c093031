"""Every byte layout of the LMDB environment lives here.

Named databases:
    kv      actor prefix (namespace key 8 B | actor id 32 B) | user key  ->  value
    actors  actor prefix  ->  msgpack {"name": str | None}: the actors that have stored data
    alarms  due time (8 B big-endian float bits) | actor prefix  ->  b""   (the time index)
    meta    b"schema"  ->  version

LMDB refuses keys of 511 bytes or more, and user keys go up to 2048 bytes. A user key of at
most INLINE_KEY_BYTES is stored as it is. A longer one is stored as its first
INLINE_KEY_BYTES bytes plus a 16-byte hash, and its value is prefixed with the full key.
Since a stored short key is never longer than INLINE_KEY_BYTES, a stored key longer than that
is always a long one; long keys sharing their first INLINE_KEY_BYTES bytes sort by hash in
LMDB, and readers restore byte order among them (they are always adjacent).
"""

from __future__ import annotations

import hashlib
import struct

from ..limits import LMDB_MAX_KEY_BYTES
from ..model.ids import ID_BYTES, NAMESPACE_KEY_BYTES

SCHEMA_VERSION = 1
SCHEMA_KEY = b"schema"
DB_KV = b"kv"
DB_ACTORS = b"actors"
DB_ALARMS = b"alarms"
DB_META = b"meta"

ACTOR_PREFIX_BYTES = NAMESPACE_KEY_BYTES + ID_BYTES
HASH_BYTES = 16
INLINE_KEY_BYTES = 448
_LENGTH = struct.Struct(">H")
_TIME = struct.Struct(">d")

assert ACTOR_PREFIX_BYTES + INLINE_KEY_BYTES + HASH_BYTES < LMDB_MAX_KEY_BYTES


def actor_prefix(namespace_key: bytes, actor_id: bytes) -> bytes:
    return namespace_key + actor_id


def is_long(stored_user_key: bytes) -> bool:
    return len(stored_user_key) > INLINE_KEY_BYTES


def stored_key(user_key: bytes) -> bytes:
    """The user part of the LMDB key for ``user_key`` (UTF-8 bytes)."""
    if len(user_key) <= INLINE_KEY_BYTES:
        return user_key
    return user_key[:INLINE_KEY_BYTES] + hashlib.sha256(user_key).digest()[:HASH_BYTES]


def stored_value(user_key: bytes, value: bytes) -> bytes:
    if len(user_key) <= INLINE_KEY_BYTES:
        return value
    return _LENGTH.pack(len(user_key)) + user_key + value


def split_long_value(stored: bytes) -> tuple[bytes, bytes]:
    """(full user key, value) of a long key's stored value."""
    (length,) = _LENGTH.unpack_from(stored)
    end = _LENGTH.size + length
    return bytes(stored[_LENGTH.size : end]), bytes(stored[end:])


def prefix_of_row(database: bytes, key: bytes) -> bytes:
    """The actor prefix a key of ``database`` (kv, actors or alarms) belongs to."""
    if database == DB_ALARMS:
        return key[_TIME.size : _TIME.size + ACTOR_PREFIX_BYTES]
    return key[:ACTOR_PREFIX_BYTES]


def alarm_index_key(when: float, prefix: bytes) -> bytes:
    # Non-negative IEEE doubles order like their big-endian bits; alarms are epoch seconds.
    return _TIME.pack(max(when, 0.0)) + prefix


def split_alarm_index_key(key: bytes) -> tuple[float, bytes]:
    return _TIME.unpack_from(key)[0], bytes(key[_TIME.size :])
