"""A first look at Roost from Python: ``python -m examples.demo [DATA_DIR]``.

Opens a runtime on a data directory, increments a few counters and prints their values;
run it twice and the values carry on from where they were, because every acknowledged
write is durable in LMDB.
"""

from __future__ import annotations

import sys

import trio

from examples.counter import Counter
from runtime import open_runtime


async def main(data_dir: str) -> None:
    async with open_runtime(data_dir=data_dir, actors={"COUNTERS": Counter}) as rt:
        counters = rt.namespace("COUNTERS")
        for name in ("alice", "bob"):
            stub = counters.get_by_name(name)
            value = await stub.increment()
            print(f"COUNTERS/{name} (id {stub.id.hex[:12]}...) is now {value}")
        response = await counters.get_by_name("alice").fetch("/increment?by=10", method="POST")
        print(f"fetch POST /increment?by=10 on alice -> {response.status} {response.text()}")
    print(f"\nData is in {data_dir}/. Run this again: the counters carry on from where they were.")


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "data")
