"""The counter from API.md: a durable read-modify-write per actor."""

from runtime import Actor, Request, Response


class Counter(Actor):
    async def increment(self, by: int = 1) -> int:
        n = await self.storage.get("n", 0)
        await self.storage.put("n", n + by)
        return n + by

    async def value(self) -> int:
        return await self.storage.get("n", 0)

    async def fetch(self, request: Request) -> Response:
        if request.method == "POST" and request.path.rstrip("/").endswith("/increment"):
            by = int(request.query.get("by", "1"))
            return Response({"name": self.id.name, "value": await self.increment(by)})
        return Response({"name": self.id.name, "value": await self.value()})
