"""Laying a data directory out for N workers: every record moves with its partition, the
move is crash-safe, and ``open_runtime`` opens any layout in one process."""

from __future__ import annotations

import os

import pytest

from runtime import Actor, StorageError, open_runtime
from runtime.durability.migrate import ensure_layout
from runtime.durability.partitions import DEFAULT_PARTITIONS, Layout, read_layout, write_layout
from runtime.errors import DataDirectoryLockedError
from runtime.limits import DEFAULT_MAP_SIZE_BYTES
from runtime.testing import list_actor_ids

NAMES = [f"a{n}" for n in range(60)]


class Box(Actor):
    async def fill(self, n: int) -> None:
        await self.storage.put("n", n)
        await self.storage.put("long:" + "k" * 600, n)  # a long key, stored hashed
        await self.storage.set_alarm(4_000_000_000.0)

    async def read(self) -> list:
        return [await self.storage.get("n"), await self.storage.get("long:" + "k" * 600), await self.storage.get_alarm()]


def lay_out(data_dir: str, workers: int) -> Layout:
    return ensure_layout(data_dir, workers, DEFAULT_PARTITIONS, map_size_bytes=DEFAULT_MAP_SIZE_BYTES)


async def fill(data_dir: str) -> None:
    async with open_runtime(data_dir=data_dir, actors={"BOXES": Box}) as rt:
        for n, name in enumerate(NAMES):
            await rt.namespace("BOXES").get_by_name(name).fill(n)


async def check(data_dir: str) -> None:
    async with open_runtime(data_dir=data_dir, actors={"BOXES": Box}) as rt:
        boxes = rt.namespace("BOXES")
        assert [await boxes.get_by_name(name).read() for name in NAMES] == [
            [n, n, 4_000_000_000.0] for n in range(len(NAMES))
        ]
        assert len(await list_actor_ids(boxes)) == len(NAMES)
        assert rt.statistics()["alarms_pending"] == len(NAMES)


async def test_every_record_moves_with_its_partition_whatever_n(data_dir):
    await fill(data_dir)
    assert read_layout(data_dir) is None
    for workers, generation in [(2, 0), (3, 1), (3, 1), (1, 2), (4, 3)]:
        layout = lay_out(data_dir, workers)
        assert layout == Layout(DEFAULT_PARTITIONS, workers, generation)
        await check(data_dir)
    assert sorted(os.listdir(data_dir)) == ["generation-3", "layout.json", "roost.lock"]


async def test_a_move_cut_short_leaves_the_old_layout_as_the_data(data_dir):
    await fill(data_dir)
    lay_out(data_dir, 2)
    # A crash while generation 1 was being built: its half is there, layout.json is not changed.
    os.makedirs(os.path.join(data_dir, "generation-1", "worker-0"))
    with open(os.path.join(data_dir, "generation-1", "worker-0", "data.mdb"), "wb") as half:
        half.write(b"\0" * 4096)
    await check(data_dir)
    assert lay_out(data_dir, 2).generation == 0
    assert not os.path.exists(os.path.join(data_dir, "generation-1"))
    assert lay_out(data_dir, 3).generation == 1
    await check(data_dir)


async def test_open_runtime_on_a_laid_out_directory_holds_it_whole(data_dir):
    await fill(data_dir)
    lay_out(data_dir, 2)
    async with open_runtime(data_dir=data_dir, actors={"BOXES": Box}):
        with pytest.raises(DataDirectoryLockedError):
            async with open_runtime(data_dir=data_dir, actors={"BOXES": Box}):
                pass


def test_more_workers_than_partitions_are_refused(data_dir):
    os.makedirs(data_dir)
    with pytest.raises(ValueError, match="65 workers are more than the 64 partitions"):
        lay_out(data_dir, 65)


async def test_a_damaged_layout_file_is_a_clear_storage_error(data_dir):
    os.makedirs(data_dir)
    write_layout(data_dir, Layout(DEFAULT_PARTITIONS, 2, 0))
    with open(os.path.join(data_dir, "layout.json"), "w") as file:
        file.write('{"partitions": 64, "workers": 0, "generation": 0}')
    with pytest.raises(StorageError, match="unreadable layout"):
        async with open_runtime(data_dir=data_dir, actors={"BOXES": Box}):
            pass
