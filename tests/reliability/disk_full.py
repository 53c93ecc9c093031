"""A disk that really fills up: a runtime whose data directory is on a small tmpfs.

Mounting needs root, so this runs in ``make soak`` only (the test suite simulates a full
disk with the map's ceiling instead). With the default map (1 TiB, sparse) LMDB never runs
out of map first: the disk does, and LMDB reports it as an I/O error on commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from runtime import Actor, ActorResetError, open_runtime

TMPFS_SIZE = "8m"
BLOB_BYTES = 100_000


class Filler(Actor):
    async def put_blob(self, i: int) -> None:
        await self.storage.put(f"blob{i:06d}", b"x" * BLOB_BYTES)

    async def blobs(self) -> int:
        return len(await self.storage.list(prefix="blob"))

    async def increment(self) -> int:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return n

    async def empty(self) -> None:
        await self.storage.delete_all()


def mount_tmpfs(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=True)


async def fill_the_disk(data_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """Write until the disk is full, then check what a full disk must and must not do."""
    rows: list[tuple[str, str]] = []
    problems: list[str] = []
    actors = {"FILLER": Filler}
    async with open_runtime(data_dir=str(data_dir), actors=actors) as rt:
        namespace = rt.namespace("FILLER")
        big, small = namespace.get_by_name("big"), namespace.get_by_name("small")
        await small.increment()
        error = None
        written = 0
        while error is None and written < 10_000:
            try:
                await big.put_blob(written)
                written += 1
            except ActorResetError as exc:
                error = str(exc)
        rows.append(("blobs acknowledged before the disk was full", f"{written} x {BLOB_BYTES} B"))
        rows.append(("the refused write's error", error or "none: the disk never filled"))
        if error is None or "full disk" not in error:
            problems.append(f"disk full: the error does not say the disk may be full: {error!r}")
        if await big.blobs() != written:
            problems.append("disk full: the acknowledged blobs are not all readable")
        await big.empty()
        after_freeing = await small.increment()
        rows.append(
            ("writes after freeing space", "work" if after_freeing == 2 else f"counter {after_freeing}")
        )
        if after_freeing != 2:
            problems.append(f"disk full: the small counter is {after_freeing} after freeing space, not 2")
    async with open_runtime(data_dir=str(data_dir), actors=actors) as rt:
        reopened = await rt.namespace("FILLER").get_by_name("small").increment()
        rows.append(("reopened after the disk was full", "clean" if reopened == 3 else f"counter {reopened}"))
        if reopened != 3:
            problems.append(f"disk full: after reopening the small counter is {reopened}, not 3")
    return rows, problems
