"""Actor identities: 32-byte ids bound to the namespace that made them.

An id is 24 bytes of body and an 8-byte tag, an HMAC of the body keyed by the namespace, so
a namespace recognises its own ids (``id_from_string``) and refuses another's. Named ids
are derived from the name, so the same name gives the same id across restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from ..limits import MAX_ACTOR_NAME_BYTES

ID_BYTES = 32
_BODY_BYTES = 24
_TAG_BYTES = ID_BYTES - _BODY_BYTES
NAMESPACE_KEY_BYTES = 8


def namespace_key(binding: str) -> bytes:
    """The 8-byte prefix of every LMDB key of the namespace bound as ``binding``."""
    return hashlib.sha256(b"roost-namespace\0" + binding.encode()).digest()[:NAMESPACE_KEY_BYTES]


@dataclass(frozen=True, slots=True)
class ActorId:
    """The identity of one actor in one namespace.

    ``str(id)`` and ``id.hex`` are 64 lowercase hex characters; ``id.name`` is the name the
    id was made from, or None when it is not known. Equality and hashing use the bytes only.
    """

    raw: bytes
    namespace: str = field(compare=False)
    name: str | None = field(default=None, compare=False)

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def __str__(self) -> str:
        return self.raw.hex()

    def __repr__(self) -> str:
        suffix = f" name={self.name!r}" if self.name is not None else ""
        return f"<ActorId {self.namespace}:{self.raw.hex()}{suffix}>"


class IdScheme:
    """Makes and checks the ids of one namespace."""

    __slots__ = ("binding", "_secret")

    def __init__(self, binding: str) -> None:
        self.binding = binding
        self._secret = hashlib.sha256(b"roost-id-scheme\0" + binding.encode()).digest()

    def from_name(self, name: str) -> ActorId:
        if not isinstance(name, str):
            raise TypeError(f"actor name must be str, not {type(name).__name__}")
        encoded = name.encode()
        if len(encoded) > MAX_ACTOR_NAME_BYTES:
            raise ValueError(
                f"actor name is {len(encoded)} bytes UTF-8, over the limit of {MAX_ACTOR_NAME_BYTES}"
            )
        body = hashlib.sha256(self._secret + b"name\0" + encoded).digest()[:_BODY_BYTES]
        return ActorId(body + self._tag(body), self.binding, name)

    def unique(self) -> ActorId:
        body = os.urandom(_BODY_BYTES)
        return ActorId(body + self._tag(body), self.binding, None)

    def from_string(self, hex64: str) -> ActorId:
        if not isinstance(hex64, str) or len(hex64) != 2 * ID_BYTES:
            raise ValueError(f"actor id must be {2 * ID_BYTES} hex characters, got {hex64!r}")
        try:
            raw = bytes.fromhex(hex64)
        except ValueError:
            raise ValueError(f"actor id is not hexadecimal: {hex64!r}") from None
        self.check(raw)
        return ActorId(raw, self.binding, None)

    def check(self, raw: bytes) -> None:
        """Raise ``ValueError`` unless ``raw`` was made by this namespace."""
        if len(raw) != ID_BYTES or not hmac.compare_digest(raw[_BODY_BYTES:], self._tag(raw[:_BODY_BYTES])):
            raise ValueError(f"actor id {raw.hex()} was not made by namespace {self.binding!r}")

    def _tag(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:_TAG_BYTES]
