"""The actor every RPC, HTTP and memory benchmark calls: a durable counter.

``increment`` is a durable read-modify-write (one get, one put, then the output gate waits
for the group commit); ``ping`` touches no storage; ``value`` reads without writing, used
to check counts after a run. Over HTTP, ``POST /actors/COUNTERS/{name}/increment`` does
the same increment.
"""

from __future__ import annotations

from runtime import Actor, Request, Response

BINDING = "COUNTERS"


class Counter(Actor):
    async def increment(self, by: int = 1) -> int:
        n = await self.storage.get("n", 0)
        await self.storage.put("n", n + by)
        return n + by

    async def ping(self) -> int:
        return 1

    async def value(self) -> int:
        return await self.storage.get("n", 0)

    async def fetch(self, request: Request) -> Response:
        if request.method == "POST" and request.path == "/increment":
            return Response({"value": await self.increment()})
        return Response({"value": await self.value()})
