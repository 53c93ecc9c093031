"""Reads every record of the stream ``ROOST`` and checks the fencing property of each
partition's log (docs/cluster.md, "How a write becomes durable"):

- a fence's epoch is greater than every epoch found earlier in its partition;
- every commit's epoch had its fence earlier in the partition, and no commit of an older
  epoch follows a newer epoch's fence (so a commit is of the partition's latest fenced epoch);
- every record of an epoch names the node that fenced it, and the partition of its subject.

A log trimmed below a snapshot (``trimmed``) may begin mid-epoch: a partition's first record
then stands for the fence of its epoch.

Plain asyncio and nats-py: a test helper, outside the runtime.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from runtime.cluster import records

STREAM = "ROOST"
FETCH_BATCH = 1000
FETCH_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0


@dataclass
class LogReport:
    records: Counter = field(default_factory=Counter)  # partition -> records
    fences: Counter = field(default_factory=Counter)  # partition -> fence records
    epochs: dict[int, list[tuple[int, str]]] = field(default_factory=dict)  # partition -> [(epoch, node)]
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{sum(self.records.values())} records in {len(self.records)} partitions,"
            f" {sum(self.fences.values())} fences, {len(self.violations)} violations"
        )


def read_log(urls: list[str]) -> list[tuple[int, str, bytes]]:
    """Every message of the stream as ``(stream sequence, subject, payload)``, in order."""
    return asyncio.run(_read(urls))


async def _read(urls: list[str]) -> list[tuple[int, str, bytes]]:
    nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=5)
    try:
        js = nc.jetstream(timeout=10)
        info = await js.stream_info(STREAM)
        last = info.state.last_seq
        found: list[tuple[int, str, bytes]] = []
        if info.state.messages == 0:
            return found
        deadline = asyncio.get_running_loop().time() + READ_TIMEOUT_SECONDS
        while not found or found[-1][0] < last:
            # A fresh consumer from the next sequence after a transient refusal (a consumer
            # just created may answer 503 before it is ready).
            start = found[-1][0] + 1 if found else 1
            try:
                await _read_from(js, start, last, found)
            except (nats.errors.Error, nats.js.errors.Error, asyncio.TimeoutError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        return found
    finally:
        await nc.close()


async def _read_from(js: Any, start: int, last: int, found: list[tuple[int, str, bytes]]) -> None:
    """Append to ``found`` the messages from ``start`` up to ``last``."""
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=start,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
    )
    subscription = await js.pull_subscribe("roost.p.*", durable=None, stream=STREAM, config=config)
    try:
        while not found or found[-1][0] < last:
            messages = await subscription.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_SECONDS)
            found.extend((m.metadata.sequence.stream, m.subject, m.data) for m in messages)
    finally:
        try:
            await subscription.unsubscribe()
        except nats.errors.Error:
            pass  # the ephemeral consumer expires by itself


def check_log(urls: list[str], *, trimmed: bool = False) -> LogReport:
    return check_messages(read_log(urls), trimmed=trimmed)


def check_messages(messages: list[tuple[int, str, bytes]], *, trimmed: bool = False) -> LogReport:
    report = LogReport()
    current: dict[int, tuple[int, str]] = {}  # partition -> (latest fenced epoch, its node)
    highest: dict[int, int] = {}  # partition -> highest epoch seen in any record
    for sequence, subject, payload in messages:
        partition = int(subject.rsplit(".", 1)[1])
        where = f"{subject} seq {sequence}"
        try:
            record = records.decode(payload)
        except (ValueError, KeyError, TypeError) as exc:
            report.violations.append(f"{where}: not a record: {exc}")
            continue
        report.records[partition] += 1
        if record.partition != partition:
            report.violations.append(f"{where}: a record of partition {record.partition}")
        if record.kind == "fence":
            report.fences[partition] += 1
            if record.epoch <= highest.get(partition, 0):
                report.violations.append(
                    f"{where}: fence of epoch {record.epoch} ({record.node}) after epoch {highest[partition]}"
                )
            current[partition] = (record.epoch, record.node)
            report.epochs.setdefault(partition, []).append((record.epoch, record.node))
        else:
            fenced = current.get(partition)
            if fenced is None and trimmed and partition not in highest:
                fenced = current[partition] = (record.epoch, record.node)
            if fenced is None:
                report.violations.append(f"{where}: commit of epoch {record.epoch} ({record.node}) before any fence")
            elif record.epoch < fenced[0]:
                report.violations.append(
                    f"{where}: commit of epoch {record.epoch} ({record.node}) after the fence of epoch {fenced[0]}"
                )
            elif record.epoch > fenced[0]:
                report.violations.append(
                    f"{where}: commit of epoch {record.epoch} ({record.node}) without its fence (latest {fenced[0]})"
                )
            elif record.node != fenced[1]:
                report.violations.append(
                    f"{where}: commit of epoch {record.epoch} by {record.node}, fenced by {fenced[1]}"
                )
        highest[partition] = max(highest.get(partition, 0), record.epoch)
    return report
