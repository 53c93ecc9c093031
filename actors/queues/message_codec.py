"""Message bodies: their content types, encoding, size limits (Cloudflare's), and decoding.

``json`` bodies are any JSON value, ``text`` a str, ``bytes`` bytes, ``msgpack`` any value
msgpack encodes. A body's size is its encoded size; the limits are checked before anything
is enqueued, and raise ``QueueLimitError``.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

from ..errors import QueueLimitError

CONTENT_TYPES = ("json", "text", "bytes", "msgpack")
MAX_MESSAGE_BYTES = 128_000
MAX_BATCH_MESSAGES = 100
MAX_BATCH_BYTES = 256_000
MAX_DELAY_SECONDS = 43_200  # 12 hours, Cloudflare's cap on a send's or a retry's delay

# Made once: ``json.dumps`` with options builds a new encoder on every call.
_json_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_json_decoder = json.JSONDecoder()


def encode_body(body: Any, content_type: str) -> bytes:
    """``body`` encoded for storage; ``QueueLimitError`` for a wrong type or size."""
    if content_type not in CONTENT_TYPES:
        raise QueueLimitError(f"content_type must be one of {', '.join(CONTENT_TYPES)}, not {content_type!r}")
    try:
        if content_type == "json":
            data = _json_encoder.encode(body).encode()
        elif content_type == "text":
            if not isinstance(body, str):
                raise TypeError(f"a text body must be str, not {type(body).__name__}")
            data = body.encode("utf-8")
        elif content_type == "bytes":
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise TypeError(f"a bytes body must be bytes, not {type(body).__name__}")
            data = bytes(body)
        else:
            data = msgpack.packb(body, datetime=True, use_bin_type=True)
    except (TypeError, ValueError, OverflowError, UnicodeEncodeError) as exc:
        raise QueueLimitError(f"cannot encode the body as {content_type}: {exc}") from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise QueueLimitError(f"message is {len(data)} bytes encoded; the limit is {MAX_MESSAGE_BYTES}")
    return data


def decode_body(data: bytes, content_type: str) -> Any:
    """A fresh copy of the body stored as ``data``."""
    if content_type == "json":
        # encode_body made it: UTF-8, no surrounding whitespace, so the plain scan is enough.
        return _json_decoder.raw_decode(data.decode("utf-8"))[0]
    if content_type == "text":
        return data.decode("utf-8")
    if content_type == "bytes":
        return bytes(data)
    return msgpack.unpackb(data, timestamp=3, strict_map_key=False)


def check_delay(delay_seconds: Any) -> float:
    """``delay_seconds`` as a float; ``QueueLimitError`` unless a number within
    0..``MAX_DELAY_SECONDS`` (NaN is not)."""
    if isinstance(delay_seconds, bool) or not isinstance(delay_seconds, (int, float)):
        raise QueueLimitError(f"delay_seconds must be a number, not {type(delay_seconds).__name__}")
    if not 0 <= delay_seconds <= MAX_DELAY_SECONDS:
        raise QueueLimitError(
            f"delay_seconds is {delay_seconds}; it must be within 0..{MAX_DELAY_SECONDS} s (12 hours)"
        )
    return float(delay_seconds)


def check_batch(sizes: list[int]) -> None:
    if len(sizes) > MAX_BATCH_MESSAGES:
        raise QueueLimitError(f"a batch has {len(sizes)} messages; the limit is {MAX_BATCH_MESSAGES}")
    if sum(sizes) > MAX_BATCH_BYTES:
        raise QueueLimitError(f"a batch is {sum(sizes)} bytes encoded; the limit is {MAX_BATCH_BYTES}")
