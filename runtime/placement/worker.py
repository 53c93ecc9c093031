"""``Placement``: where this worker process stands among the ``workers`` of ``roost serve
--workers N``, which actors it owns, and its channel to the others.

Partition ``p`` of the data directory's fixed ``partition_count`` is owned by worker
``p % workers``; worker ``i`` answers forwarded calls on ``socket_dir/worker-i.sock``.
"""

from __future__ import annotations

import os
from contextlib import suppress
from functools import partial
from typing import Any

import trio

from ..durability.partitions import owner_of, partition_of
from ..durability.shards import Shards, open_shards
from ..model.host import Host
from ..errors import ActorError
from .client import Peers
from .server import Statistics, serve

STATISTICS_TIMEOUT_SECONDS = 2.0


class Placement:
    def __init__(self, worker: int, workers: int, partition_count: int, socket_dir: str) -> None:
        if not 0 <= worker < workers <= partition_count:
            raise ValueError(f"worker {worker} of {workers} does not fit {partition_count} partitions")
        self.worker = worker
        self.workers = workers
        self.partition_count = partition_count
        self.socket_dir = socket_dir
        self._peers: Peers | None = None

    def socket_path(self, worker: int) -> str:
        return os.path.join(self.socket_dir, f"worker-{worker}.sock")

    def owner_of_prefix(self, prefix: bytes) -> int:
        return owner_of(partition_of(prefix, self.partition_count), self.workers)

    async def open_shards(self, data_dir: str, *, map_size_bytes: int, max_map_size_bytes: int) -> Shards:
        """This worker's environment of ``data_dir``."""
        return await trio.to_thread.run_sync(
            partial(
                open_shards,
                data_dir,
                map_size_bytes=map_size_bytes,
                max_map_size_bytes=max_map_size_bytes,
                worker=self.worker,
            )
        )

    def attach(self, host: Host, rescan_alarms: Any) -> None:
        """Nothing to do: a worker's partitions never move while it runs."""

    def forwarder(self, host: Host) -> Peers:
        """The host's way to the actors of the other workers (made once)."""
        self._peers = Peers(host, self.owner_of_prefix, lambda worker: trio.open_unix_socket(self.socket_path(worker)))
        return self._peers

    async def serve(
        self,
        host: Host,
        statistics: Statistics,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Keep the connections to the other workers and answer their calls, until cancelled."""
        assert self._peers is not None, "forwarder() first"
        async with trio.open_nursery() as nursery:
            await nursery.start(self._peers.run)
            await nursery.start(serve, self.socket_path(self.worker), host, statistics)
            task_status.started()

    async def statistics(self, own: dict[str, Any]) -> dict[int, dict[str, Any] | None]:
        """Every worker's statistics (None for one that did not answer), this one's ``own``."""
        peers = self._peers
        assert peers is not None, "forwarder() first"
        found: dict[int, dict[str, Any] | None] = {self.worker: own}

        async def ask(worker: int) -> None:
            found[worker] = None
            with trio.move_on_after(STATISTICS_TIMEOUT_SECONDS), suppress(ActorError):
                ok, value = await peers.request(worker, ["statistics"])
                found[worker] = value if ok else None

        async with trio.open_nursery() as nursery:
            for worker in range(self.workers):
                if worker != self.worker:
                    nursery.start_soon(ask, worker)
        return dict(sorted(found.items()))
