"""Files the peers' worker processes append to, one record per event, read by the driver.

A job queue's worker runs in its own process, so its jobs report acks, retries and alarm
lateness by appending to files in the directory named by ``ROOST_PEERS_RECORDS``: one
byte per ack or retry (the count is the file's size), one line "group seconds" per lateness.
Each record is a single ``write`` on an ``O_APPEND`` descriptor, so concurrent appends
never interleave.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRECTORY_VARIABLE = "ROOST_PEERS_RECORDS"
ACKS = "acks"
RETRIES = "retries"
LATENESS = "lateness"

_descriptors: dict[str, int] = {}


def append(name: str, data: bytes) -> None:
    """Append ``data`` to the record file ``name`` in this process's records directory."""
    fd = _descriptors.get(name)
    if fd is None:
        path = Path(os.environ[DIRECTORY_VARIABLE]) / name
        fd = _descriptors[name] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, data)


def count(directory: Path, name: str) -> int:
    """How many one-byte records ``name`` holds."""
    try:
        return (directory / name).stat().st_size
    except FileNotFoundError:
        return 0


def lateness(directory: Path, group: str) -> list[float]:
    """The lateness records of ``group``, in seconds."""
    try:
        text = (directory / LATENESS).read_text()
    except FileNotFoundError:
        return []
    lines = (line.split(" ") for line in text.splitlines())
    return [float(parts[1]) for parts in lines if len(parts) == 2 and parts[0] == group]
