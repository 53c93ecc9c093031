"""Verifying webhook signatures: Stripe's ``Stripe-Signature: t=...,v1=...`` scheme.

The signed payload is ``f"{t}.{body}"``, signed with HMAC-SHA256 under the endpoint's secret;
a header may carry several ``v1`` signatures (during secret rotation) and matches if any
does. Comparisons are constant-time. Malformed headers verify as False; nothing raises.
"""

from __future__ import annotations

import hashlib
import hmac

from runtime import now as runtime_now

DEFAULT_TOLERANCE_SECONDS = 300


def verify_stripe_signature(
    payload: bytes,
    header: str,
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True if ``header`` signs ``payload`` with ``secret`` within ``tolerance`` seconds of
    ``now`` (default: the runtime's clock)."""
    if (
        not isinstance(payload, (bytes, bytearray))
        or not isinstance(header, str)
        or not isinstance(secret, str)
    ):
        return False
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    current = runtime_now() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    signed = str(timestamp).encode() + b"." + bytes(payload)
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, signature) for signature in signatures)
