"""The Restate side of the HTTP comparison: the same durable counter as a Virtual Object.

Runs inside the SDK's own process (``hypercorn benchmarks.peers.restate_counter:app``) and
imports only the Restate SDK. ``increment`` is the same read-modify-write as
benchmarks/counter.py's ``Counter.increment``; Restate runs one exclusive handler per key at
a time, as Roost runs one call per actor, and journals the state change before answering.
"""

from __future__ import annotations

import restate

counter = restate.VirtualObject("Counter")


@counter.handler()
async def increment(ctx: restate.ObjectContext) -> int:
    n = (await ctx.get("n")) or 0
    ctx.set("n", n + 1)
    return n + 1


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return (await ctx.get("n")) or 0


app = restate.app([counter])
