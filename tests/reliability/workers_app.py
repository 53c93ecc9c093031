"""The app of the ``--workers`` tests: counters, a relay that calls them from another worker,
and a queue consumer that increments them. Helpers to find which worker owns an actor."""

from __future__ import annotations

import textwrap
from pathlib import Path

from runtime.durability.partitions import DEFAULT_PARTITIONS, owner_of, partition_of
from runtime.model.ids import IdScheme, namespace_key

APP = """
import os

import trio
from actors import MessageBatch
from runtime import Actor, Response


class Counter(Actor):
    async def increment(self) -> int:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return n

    async def value(self) -> int:
        return await self.storage.get("n", 0)

    async def slow(self) -> int:
        await trio.sleep(1)
        return await self.increment()

    async def fail(self, message: str) -> None:
        raise ValueError(message)

    async def whoami(self) -> dict:
        return {"pid": os.getpid(), "correlation_id": self.ctx.correlation_id}

    async def fetch(self, request):
        return Response({"path": request.path, "query": request.query}, 201, {"x-served-by": str(os.getpid())})


class Relay(Actor):
    def _target(self, name: str):
        return self.env.COUNTERS.get_by_name(name)

    async def increment(self, name: str) -> int:
        return await self._target(name).increment()

    async def fail(self, name: str, message: str) -> list:
        try:
            await self._target(name).fail(message)
        except ValueError as exc:
            return [type(exc).__name__, str(exc), getattr(exc, "remote", False)]
        return []

    async def whoami(self, name: str) -> dict:
        return {"pid": os.getpid(), "target": await self._target(name).whoami()}

    async def slow_with_limit(self, name: str) -> str:
        try:
            await self._target(name).with_options(timeout=0.2).slow()
        except TimeoutError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "finished"

    async def fetch_other(self, name: str) -> list:
        response = await self._target(name).fetch("/some/path?x=1", method="POST", body="hi")
        return [response.status, response.headers.get("x-served-by"), response.json()]


class Consumer(Actor):
    async def queue(self, batch: MessageBatch) -> None:
        for message in batch.messages:
            await self.env.COUNTERS.get_by_name(message.body["counter"]).increment()
"""

CONFIG = """
data_dir = "state"
[[durable_objects.bindings]]
name = "COUNTERS"
class_name = "workers_app:Counter"
[[durable_objects.bindings]]
name = "RELAYS"
class_name = "workers_app:Relay"
[[queues.producers]]
queue = "work"
binding = "WORK"
[[queues.consumers]]
queue = "work"
class_name = "workers_app:Consumer"
max_batch_size = 10
max_batch_timeout = 0.05
"""


def write_app(directory: Path) -> None:
    (directory / "workers_app.py").write_text(textwrap.dedent(APP))
    (directory / "roost.toml").write_text(textwrap.dedent(CONFIG))


def owner(binding: str, name: str, workers: int) -> int:
    """The worker that owns actor ``name`` of ``binding`` in a server of ``workers``."""
    prefix = namespace_key(binding) + IdScheme(binding).from_name(name).raw
    return owner_of(partition_of(prefix, DEFAULT_PARTITIONS), workers)


def names_owned_by(binding: str, worker: int, workers: int, count: int = 1) -> list[str]:
    found = []
    n = 0
    while len(found) < count:
        name = f"{binding.lower()}-{n}"
        if owner(binding, name, workers) == worker:
            found.append(name)
        n += 1
    return found
