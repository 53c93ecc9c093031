"""How a queue actor lays its messages out in storage: segments and their state.

Messages sent together (one ``send_batch``, one ``send``, one dead-lettered batch) are stored
as one segment record, ``seg:{first seq}``: each message's fields that never change, in
order. A batch over the storage value limit is split into several segments. What changes
while messages are delivered (attempts, when each is visible again, its lease) lives apart,
in the segment's small state record ``st:{first seq}``, written whole; it is absent until a
message of the segment is first leased. A message that is gone (acked, dead-lettered,
redriven, purged) is ``None`` in the state, and once all of a segment's are, both records are
deleted. So the path of a batch from send to ack costs a few writes, not a few per message.

Pure functions and constants: no I/O.
"""

from __future__ import annotations

from typing import Any

SEGMENT_PREFIX = "seg:"
STATE_PREFIX = "st:"

# The fields of a stored message, in the order of its list. Producers build messages in this
# shape and the queue actor stores them as they come, filling in a missing correlation id.
# TRACEPARENT is the W3C traceparent of the send's span, when tracing is on. ARRIVED_AT is
# when the message came to this queue (its retention counts from then): its timestamp for a
# sent message, the move for a dead-lettered or redriven one. Messages stored before it
# existed have 8 fields: their retention counts from when their queue first ran with it
# (``QueueStore.legacy_since``), so an upgrade never expires at once what was kept before.
ID, BODY, CONTENT_TYPE, TIMESTAMP, CORRELATION_ID, DEAD_LETTER, VISIBLE_AT, TRACEPARENT, ARRIVED_AT = range(9)

# A message's state: [attempts, visible_at, lease]; the lease is None, PUSH_LEASE while it is
# in a batch with the push consumer, or [lease_id, until] while a pull consumer holds it.
PUSH_LEASE = True

MAX_ERROR_CHARS = 1024  # of the last error kept with a dead-lettered message


def new_message(
    message_id: str,
    body: bytes,
    content_type: str,
    timestamp: float,
    visible_at: float,
    correlation_id: str | None = None,
    dead_letter: dict[str, Any] | None = None,
    traceparent: str | None = None,
    arrived_at: float | None = None,
) -> list[Any]:
    """A message as it is sent to the queue actor and stored (see the field order above);
    ``arrived_at`` defaults to ``timestamp``, as for a message just sent."""
    return [
        message_id,
        body,
        content_type,
        timestamp,
        correlation_id,
        dead_letter,
        visible_at,
        traceparent,
        timestamp if arrived_at is None else arrived_at,
    ]


def segment_key(first: int) -> str:
    return f"{SEGMENT_PREFIX}{first:016x}"


def state_key(first: int) -> str:
    return f"{STATE_PREFIX}{first:016x}"


def first_seq(key: str) -> int:
    """The sequence number of a segment's first message, from either of its keys."""
    return int(key[key.index(":") + 1 :], 16)


def initial_state(messages: list[list[Any]]) -> list[list[Any]]:
    """The state of a segment none of whose messages was leased yet."""
    return [[0, message[VISIBLE_AT], None] for message in messages]
