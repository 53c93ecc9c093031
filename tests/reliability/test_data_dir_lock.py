"""One owner per data directory: a second runtime or server on it is refused, the first
keeps serving, and a killed owner leaves no stale lock."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from serve_process import ROOST, ReaderTable, ServeProcess, write_counter_app

from runtime import Actor, StorageError, open_runtime
from runtime.errors import DataDirectoryLockedError


class Counter(Actor):
    async def increment(self) -> int:
        n = await self.storage.get("n", 0) + 1
        await self.storage.put("n", n)
        return n


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_counter_app(tmp_path)
    return tmp_path


async def test_a_second_runtime_on_a_held_directory_is_refused_and_the_first_keeps_going(data_dir):
    async with open_runtime(data_dir=data_dir, actors={"COUNTERS": Counter}) as first:
        counter = first.namespace("COUNTERS").get_by_name("alice")
        assert await counter.increment() == 1
        with pytest.raises(DataDirectoryLockedError) as refused:
            async with open_runtime(data_dir=data_dir, actors={"COUNTERS": Counter}):
                pytest.fail("a second runtime opened a held data directory")
        assert isinstance(refused.value, StorageError)
        message = str(refused.value)
        assert str(Path(data_dir).resolve()) in message and "this process" in message
        assert await counter.increment() == 2
    async with open_runtime(data_dir=data_dir, actors={"COUNTERS": Counter}) as again:
        assert await again.namespace("COUNTERS").get_by_name("alice").increment() == 3


def _serve_again(app_dir: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ROOST, "serve", "--port", "0", "--data-dir", str(data)],
        cwd=app_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_a_second_server_on_a_held_directory_exits_2_with_one_line(app_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    server = ServeProcess(app_dir, tmp_path / "first.log", "--data-dir", str(data))
    try:
        with httpx.Client(base_url=server.url) as client:
            assert client.post("/rpc/COUNTERS/c/increment").json() == {"result": 1}
            second = _serve_again(app_dir, data)
            assert second.returncode == 2
            last = second.stderr.strip().splitlines()[-1]
            assert last.startswith("roost: cannot serve: data directory")
            assert str(data) in last and f"pid {server.pid}" in last
            assert "Traceback" not in second.stderr
            with pytest.raises(DataDirectoryLockedError, match=f"pid {server.pid}"):
                async with open_runtime(data_dir=str(data), actors={"COUNTERS": Counter}):
                    pass
            # The holder was never touched: it serves, and counts on from where it was.
            assert client.post("/rpc/COUNTERS/c/increment").json() == {"result": 2}
        # Read-only inspection of the environment takes no lock (the crash loop does this).
        readers = ReaderTable(data)
        assert readers.stale_slots() == 0
        readers.close()
    finally:
        assert server.stop() == 0


def test_a_killed_owner_leaves_no_stale_lock(app_dir: Path, tmp_path: Path):
    data = tmp_path / "data"
    server = ServeProcess(app_dir, tmp_path / "first.log", "--data-dir", str(data))
    assert httpx.post(server.url + "/rpc/COUNTERS/k/increment").json() == {"result": 1}
    server.kill_9()
    restarted = ServeProcess(app_dir, tmp_path / "second.log", "--data-dir", str(data))
    try:
        assert httpx.post(restarted.url + "/rpc/COUNTERS/k/increment").json() == {"result": 2}
    finally:
        assert restarted.stop() == 0
