"""Messages between worker processes: values encoded as RPC values are (``codec``), in
frames of a 4-byte length and the body."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Any

import trio

from ..model import codec

_LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 64 * 1024 * 1024
_RECEIVE_BYTES = 256 * 1024


def frame(message: Any) -> bytes:
    body = codec.encode(message)
    return _LENGTH.pack(len(body)) + body


async def messages(stream: trio.abc.ReceiveStream) -> AsyncIterator[Any]:
    """The messages arriving on ``stream`` until the peer closes it."""
    buffer = bytearray()
    while True:
        data = await stream.receive_some(_RECEIVE_BYTES)
        if not data:
            return
        buffer += data
        while len(buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer)
            if length > MAX_FRAME_BYTES:
                raise ValueError(f"a frame of {length} bytes is over the limit of {MAX_FRAME_BYTES}")
            end = _LENGTH.size + length
            if len(buffer) < end:
                break
            message = codec.decode(bytes(buffer[_LENGTH.size : end]))
            del buffer[:end]
            yield message
