"""``QueueIndex``: the queue actor's in-memory view of its stored messages.

Bodies stay in storage; the index keeps a small entry per message (which is also the truth
about its attempts and lease, written to storage as its segment's state) and the structures that
make each step cheap: messages ready to deliver in arrival order, a heap of delayed ones, a
heap of pull leases by expiry, a heap of waiting messages by the end of their retention, and
running totals. Pure bookkeeping: no I/O, no clock (the caller passes ``now``). Heaps are
cleaned lazily: a heap item whose entry has moved on is skipped when it surfaces.
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

READY = "ready"
DELAYED = "delayed"
PUSHED = "pushed"  # in a batch with the push consumer (or being expired)
PULLED = "pulled"  # leased to a pull consumer until ``lease_until``
WAITING = (READY, DELAYED)


@dataclass(slots=True)
class Entry:
    seq: int
    visible_at: float
    timestamp: float
    size: int
    segment: int  # the seq of the first message stored with it
    attempts: int = 0
    state: str = READY
    lease_id: str | None = None
    lease_until: float = float("inf")
    expires_at: float = float("inf")  # when its queue's retention period ends for it


class QueueIndex:
    def __init__(self) -> None:
        self._entries: dict[int, Entry] = {}
        self._ready: dict[int, Entry] = {}
        self._delayed: list[tuple[float, int]] = []
        self._leases: dict[str, Entry] = {}
        self._lease_heap: list[tuple[float, int, str]] = []
        # (expires_at, seq), pushed whenever a message starts waiting: an in-flight message
        # expires only once its delivery or lease ends without an ack.
        self._expiry: list[tuple[float, int]] = []
        self._counts = {READY: 0, DELAYED: 0, PUSHED: 0, PULLED: 0}
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def get(self, seq: int) -> Entry | None:
        return self._entries.get(seq)

    def count(self, state: str) -> int:
        return self._counts[state]

    def oldest_timestamp(self) -> float | None:
        return min((e.timestamp for e in self._entries.values()), default=None)

    # -- adding and removing -----------------------------------------------------------------

    def add(self, entry: Entry, now: float) -> None:
        self._entries[entry.seq] = entry
        self.bytes += entry.size
        if entry.state == PULLED:
            self._counts[PULLED] += 1
            self._leases[entry.lease_id] = entry  # type: ignore[index]
            heapq.heappush(self._lease_heap, (entry.lease_until, entry.seq, entry.lease_id))  # type: ignore[arg-type]
        else:
            self._wait(entry, entry.visible_at, now)

    def remove(self, seq: int) -> Entry | None:
        entry = self._entries.pop(seq, None)
        if entry is not None:
            self.bytes -= entry.size
            self._leave(entry)
        return entry

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    # -- moving between states ---------------------------------------------------------------

    def _leave(self, entry: Entry) -> None:
        self._counts[entry.state] -= 1
        if entry.state == READY:
            del self._ready[entry.seq]
        elif entry.state == PULLED:
            self._leases.pop(entry.lease_id, None)  # type: ignore[arg-type]
        entry.lease_id, entry.lease_until = None, float("inf")

    def _wait(self, entry: Entry, visible_at: float, now: float) -> None:
        entry.visible_at = visible_at
        if visible_at <= now:
            entry.state = READY
            self._ready[entry.seq] = entry
        else:
            entry.state = DELAYED
            heapq.heappush(self._delayed, (visible_at, entry.seq))
        self._counts[entry.state] += 1
        heapq.heappush(self._expiry, (entry.expires_at, entry.seq))
        if len(self._expiry) > 2 * len(self._entries) + 64:
            # Items of messages acked or leased since pile up until their retention ends
            # (days): rebuild from the waiting ones, which keeps the heap within twice the index.
            self._expiry = [(e.expires_at, e.seq) for e in self._entries.values() if e.state in WAITING]
            heapq.heapify(self._expiry)

    def release(self, entry: Entry, visible_at: float, now: float) -> None:
        """A leased message waits again, visible from ``visible_at``."""
        self._leave(entry)
        self._wait(entry, visible_at, now)

    def promote(self, now: float) -> None:
        """Delayed messages whose time has come become ready."""
        while self._delayed and self._delayed[0][0] <= now:
            visible_at, seq = heapq.heappop(self._delayed)
            entry = self._entries.get(seq)
            if entry is not None and entry.state == DELAYED and entry.visible_at == visible_at:
                self._counts[DELAYED] -= 1
                self._counts[READY] += 1
                entry.state = READY
                self._ready[seq] = entry

    def take_ready(self, limit: int, now: float) -> list[Entry]:
        """Up to ``limit`` ready messages, oldest first (call ``promote`` first), skipping
        those whose retention ended: they wait to be expired."""
        taken = []
        for entry in self._ready.values():
            if len(taken) == limit:
                break
            if entry.expires_at > now:
                taken.append(entry)
        return taken

    def oldest_ready_since(self) -> float | None:
        """When the message longest ready became visible."""
        for entry in self._ready.values():
            return entry.visible_at
        return None

    def push(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._leave(entry)
            entry.state = PUSHED
            self._counts[PUSHED] += 1

    def pull(self, entries: list[Entry], until: float) -> None:
        for entry in entries:
            self._leave(entry)
            entry.state, entry.lease_id, entry.lease_until = PULLED, uuid.uuid4().hex, until
            self._counts[PULLED] += 1
            self._leases[entry.lease_id] = entry
            heapq.heappush(self._lease_heap, (until, entry.seq, entry.lease_id))

    def by_lease(self, lease_id: str) -> Entry | None:
        return self._leases.get(lease_id)

    def expired_leases(self, now: float) -> list[Entry]:
        """Pull leases that ended by ``now`` (still leased: the caller releases them)."""
        expired = []
        while self._lease_heap and self._lease_heap[0][0] <= now:
            _, _, lease_id = heapq.heappop(self._lease_heap)
            entry = self._leases.get(lease_id)
            if entry is not None:
                expired.append(entry)
        return expired

    def take_expired(self, now: float, limit: int) -> list[Entry]:
        """Up to ``limit`` waiting messages whose retention ended by ``now`` (still indexed:
        the caller removes them)."""
        taken: dict[int, Entry] = {}
        while self._expiry and self._expiry[0][0] <= now and len(taken) < limit:
            _, seq = heapq.heappop(self._expiry)
            entry = self._entries.get(seq)
            if entry is not None and entry.state in WAITING:
                taken[seq] = entry
        return list(taken.values())

    # -- what comes next ---------------------------------------------------------------------

    def next_delayed(self) -> float | None:
        while self._delayed:
            visible_at, seq = self._delayed[0]
            entry = self._entries.get(seq)
            if entry is not None and entry.state == DELAYED and entry.visible_at == visible_at:
                return visible_at
            heapq.heappop(self._delayed)
        return None

    def next_lease_end(self) -> float | None:
        while self._lease_heap:
            until, _, lease_id = self._lease_heap[0]
            if lease_id in self._leases:
                return until
            heapq.heappop(self._lease_heap)
        return None

    def next_expiry(self) -> float | None:
        """When the retention of the first waiting message to expire ends."""
        while self._expiry:
            expires_at, seq = self._expiry[0]
            entry = self._entries.get(seq)
            if entry is not None and entry.state in WAITING:
                return expires_at
            heapq.heappop(self._expiry)
        return None
