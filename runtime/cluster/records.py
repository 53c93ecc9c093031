"""The records of a partition's log (the stream subject ``roost.p.NN``), as msgpack maps.

- ``commit``: the writes of one group commit to the partition's actors, each actor's
  ``ActorWrites`` whole (an actor's writes of one event are never split between records);
- ``fence``: the first record of an owner's epoch, after which no record of an older epoch
  can be appended (docs/cluster.md, "How a write becomes durable").

Every record names its partition, epoch and node, so a log can be checked on its own.
Replaying a commit record applies exactly the ``ActorWrites`` its owner applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from ..durability.env import ActorWrites
from ..model import codec

VERSION = 1
# The most a record may hold: NATS refuses messages over its max_payload (1 MiB by default).
MAX_RECORD_BYTES = 900 * 1024


@dataclass(frozen=True, slots=True)
class Record:
    kind: str  # "commit" or "fence"
    partition: int
    epoch: int
    node: str
    writes: list[ActorWrites]


def fence(partition: int, epoch: int, node: str) -> bytes:
    return _pack({"v": VERSION, "kind": "fence", "p": partition, "epoch": epoch, "node": node})


def commits(partition: int, epoch: int, node: str, work: list[ActorWrites]) -> list[tuple[bytes, list[ActorWrites]]]:
    """The commit records of ``work`` (one partition's actors), each under ``MAX_RECORD_BYTES``
    unless one actor's writes alone are larger, with the writes each one carries."""
    records: list[tuple[bytes, list[ActorWrites]]] = []
    part: list[ActorWrites] = []
    encoded: list[Any] = []
    size = 0
    for writes in work:
        one = _encode_writes(writes)
        one_size = len(_pack(one))
        if part and size + one_size > MAX_RECORD_BYTES:
            records.append((_commit(partition, epoch, node, encoded), part))
            part, encoded, size = [], [], 0
        part.append(writes)
        encoded.append(one)
        size += one_size
    if part:
        records.append((_commit(partition, epoch, node, encoded), part))
    return records


def decode(payload: bytes) -> Record:
    data = msgpack.unpackb(payload, raw=False)
    if data.get("v") != VERSION or data.get("kind") not in ("commit", "fence"):
        raise ValueError(f"not a Roost log record of version {VERSION}: {str(data)[:80]}")
    writes = [_decode_writes(item) for item in data.get("writes", ())]
    return Record(data["kind"], data["p"], data["epoch"], data["node"], writes)


def _commit(partition: int, epoch: int, node: str, encoded: list[Any]) -> bytes:
    return _pack({"v": VERSION, "kind": "commit", "p": partition, "epoch": epoch, "node": node, "writes": encoded})


def _pack(data: Any) -> bytes:
    return msgpack.packb(data, use_bin_type=True)


def _encode_writes(writes: ActorWrites) -> list[Any]:
    record = codec.encode(writes.record) if writes.write_record and writes.record is not None else None
    return [
        writes.prefix,
        list(writes.values.items()),
        writes.clear,
        record,
        writes.write_record,
        writes.old_alarm,
        writes.new_alarm,
        writes.move_alarm,
        writes.alarm_after,
    ]


def _decode_writes(item: list[Any]) -> ActorWrites:
    prefix, values, clear, record, write_record, old_alarm, new_alarm, move_alarm, alarm_after = item
    return ActorWrites(
        prefix=prefix,
        values=dict(values),
        clear=clear,
        record=None if record is None else codec.decode(record),
        write_record=write_record,
        old_alarm=old_alarm,
        new_alarm=new_alarm,
        move_alarm=move_alarm,
        alarm_after=alarm_after,
    )
