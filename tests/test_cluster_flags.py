"""``roost serve --cluster`` refuses bad flags, and a bad ``[cluster]`` table, before it
reaches NATS: exit 2, one line that names the flag or the key, no traceback (no NATS server
is needed here). A flag wins over its key of the table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOST = str(Path(sys.executable).with_name("roost"))
CLUSTER = ["--cluster", "nats://127.0.0.1:4222", "--node-name", "a", "--advertise", "127.0.0.1:7400"]


def serve(directory: Path, *flags: str, config: str = "") -> subprocess.CompletedProcess[str]:
    (directory / "roost.toml").write_text(config)
    return subprocess.run(
        [ROOST, "serve", "--port", "0", "--data-dir", str(directory / "data"), *flags],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--node-name", "a"], "--node-name needs --cluster"),
        (["--cluster", "nats://127.0.0.1:4222"], "--cluster needs --node-name and --advertise"),
        ([*CLUSTER[:1], "http://127.0.0.1:4222", *CLUSTER[2:]], "nats://HOST:PORT"),
        ([*CLUSTER[:3], "a b", *CLUSTER[4:]], "--node-name must be letters"),
        ([*CLUSTER[:5], "no-port"], "--advertise: an address is HOST:PORT"),
        ([*CLUSTER, "--lease-seconds", "0"], "the lease must last more than two renewals"),
        ([*CLUSTER, "--snapshot-every", "0"], "--snapshot-every must be a positive number"),
        ([*CLUSTER, "--replicas", "7"], "--replicas must be 1 to 5"),
        ([*CLUSTER, "--cluster-tls-cert", "node.pem"], "needs all of --cluster-tls-cert"),
        (
            [*CLUSTER, "--cluster-tls-cert", "node.pem", "--cluster-tls-key", "node.key", "--cluster-tls-ca", "ca.pem"],
            "--cluster-tls-cert: no file 'node.pem'",
        ),
        ([*CLUSTER, "--workers", "2"], "--cluster runs one process per node: leave out --workers"),
    ],
)
def test_a_bad_cluster_flag_exits_2_with_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    done = serve(tmp_path, *flags)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was opened


def test_unreadable_tls_files_stop_the_node_before_it_joins(tmp_path: Path) -> None:
    for name in ("node.pem", "node.key", "ca.pem"):
        (tmp_path / name).write_text("not PEM\n")
    tls = ["--cluster-tls-cert", "node.pem", "--cluster-tls-key", "node.key", "--cluster-tls-ca", "ca.pem"]
    done = serve(tmp_path, *CLUSTER, "--cluster", "nats://127.0.0.1:1", *tls)
    assert done.returncode == 2, done.stderr
    assert "the channel's TLS files" in done.stderr and "Traceback" not in done.stderr, done.stderr


TABLE = """
[cluster]
nats = ["nats://127.0.0.1:4222"]
node_name = "a"
advertise = "127.0.0.1:7400"
"""


@pytest.mark.parametrize(
    ("table", "flags", "message"),
    [
        ("[cluster]\nreplicas = '3'\n", [], "[cluster] key 'replicas': expected an integer"),
        ("[cluster]\nreplicas = 9\n", [], "[cluster] key 'replicas': 9 is out of range 1..5"),
        ("[cluster]\nnats = []\n", [], "[cluster] key 'nats': expected at least one"),
        ("[cluster]\nnats = [4222]\n", [], "[cluster] key 'nats[0]': expected a string"),
        ("[cluster]\nnode = 'a'\n", [], "[cluster] unknown key 'node'"),
        ("[cluster]\nnats = 'nats://127.0.0.1:4222'\n", [], "--cluster needs --node-name and --advertise"),
        ("[cluster]\nnode_name = 'a'\n", ["--advertise", "127.0.0.1:7400"], "--advertise needs --cluster"),
        (TABLE + "replicas = 3\n", ["--replicas", "7"], "--replicas must be 1 to 5"),  # the flag wins
        (TABLE, ["--node-name", "a b"], "--node-name must be letters"),
        (TABLE + "tls_cert = 'node.pem'\n", [], "needs all of --cluster-tls-cert"),
    ],
)
def test_a_bad_cluster_table_exits_2_naming_the_key(tmp_path: Path, table: str, flags: list[str], message: str) -> None:
    done = serve(tmp_path, *flags, config=table)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_tables_tls_files_resolve_from_the_configs_directory(tmp_path: Path) -> None:
    tls = "tls_cert = 'certs/node.pem'\ntls_key = 'certs/node.key'\ntls_ca = 'certs/ca.pem'\n"
    done = serve(tmp_path, config=TABLE + tls)
    assert done.returncode == 2, done.stderr
    assert f"--cluster-tls-cert: no file '{tmp_path / 'certs' / 'node.pem'}'" in done.stderr, done.stderr
