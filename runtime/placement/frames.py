"""Messages between worker processes: values encoded as RPC values are (``codec``), in
frames of a 4-byte length and the body. A ``FrameWriter`` sends every frame queued while its
last send ran in the next one, so calls made in the same scheduling round share a system
call instead of paying one each.
"""

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


class FrameWriter:
    """The sending side of one stream. ``send`` never waits; ``run`` does the sending."""

    def __init__(self, stream: trio.abc.SendStream) -> None:
        self._stream = stream
        self._queued: list[bytes] = []
        self._wakeup = trio.Event()

    def send(self, message: Any) -> None:
        self._queued.append(frame(message))
        self._wakeup.set()

    async def run(self) -> None:
        """Send what is queued, as it is queued, until cancelled or the stream breaks."""
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            data = b"".join(self._queued)
            self._queued.clear()
            await self._stream.send_all(data)


async def messages(stream: trio.abc.ReceiveStream) -> AsyncIterator[Any]:
    """The messages arriving on ``stream`` until the peer closes it."""
    buffer = bytearray()
    while True:
        data = await stream.receive_some(_RECEIVE_BYTES)
        if not data:
            return
        buffer += data
        start = 0  # the frames before it are decoded; dropped once per receive, not per frame
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_FRAME_BYTES:
                raise ValueError(f"a frame of {length} bytes is over the limit of {MAX_FRAME_BYTES}")
            end = start + _LENGTH.size + length
            if len(buffer) < end:
                break
            message = codec.decode(bytes(buffer[start + _LENGTH.size : end]))
            start = end
            yield message
        del buffer[:start]
