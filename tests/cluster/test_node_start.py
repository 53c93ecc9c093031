"""What a node's data directory must be to start: a node whose copy follows an earlier stream
``ROOST`` (deleted and created again since) refuses to start, exit 2, and says why."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import nats
from cluster_nodes import LEASE_SECONDS, RoostNode, free_port, rpc, write_app
from serve_process import ROOST


async def _delete_stream(urls: list[str]) -> None:
    nc = await nats.connect(servers=urls)
    try:
        await nc.jetstream().delete_stream("ROOST")
    finally:
        await nc.close()


def test_a_data_directory_of_an_earlier_stream_is_refused(jetstream_servers: list[str], tmp_path: Path) -> None:
    write_app(tmp_path, "jobs")
    node = RoostNode(tmp_path, "a", jetstream_servers)
    try:
        assert rpc(node.url, "COUNTERS", "x", "increment") == 1
    finally:
        assert node.stop() == 0
    asyncio.run(_delete_stream(jetstream_servers))
    done = subprocess.run(
        [
            ROOST, "serve", "--port", "0", "--config", "roost.toml", "--data-dir", str(node.data_dir),
            "--cluster", ",".join(jetstream_servers), "--node-name", "a",
            "--advertise", f"127.0.0.1:{free_port()}", "--lease-seconds", f"{LEASE_SECONDS:g}",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "a copy of an earlier stream ROOST" in done.stderr, done.stderr
