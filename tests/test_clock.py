"""The runtime's one clock (API.md section 4, "Time")."""

from __future__ import annotations

import time

import trio

import runtime
from runtime import Actor, open_runtime


def test_outside_trio_now_is_wall_time():
    before = time.time()
    assert before <= runtime.now() <= time.time()


async def test_now_follows_virtual_time(autojump_clock):
    start = runtime.now()
    assert abs(start - time.time()) < 60
    await trio.sleep(86_400)
    assert 86_400 <= runtime.now() - start < 86_401


async def test_one_clock_across_runtimes_and_actors(data_dir, autojump_clock, tmp_path):
    class Clocked(Actor):
        async def now(self):
            return runtime.now()

    first = runtime.now()
    async with open_runtime(data_dir=data_dir, actors={"C": Clocked}) as rt:
        inside = await rt.namespace("C").get_by_name("c").now()
    await trio.sleep(3600)
    async with open_runtime(data_dir=str(tmp_path / "other"), actors={"C": Clocked}) as rt:
        later = await rt.namespace("C").get_by_name("c").now()
    assert first <= inside < first + 1
    assert 3600 <= later - inside < 3601
