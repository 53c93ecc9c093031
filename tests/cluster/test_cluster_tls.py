"""Mutual TLS on the channel between nodes, set in roost.toml's ``[cluster]`` table: three
nodes with certificates of one CA forward
calls to each other (every increment counted, through every node); a client without a
certificate, or with one another CA signed, gets no answer from a node's channel."""

from __future__ import annotations

import socket
import ssl
import time
from collections import Counter
from pathlib import Path

import pytest
import trustme
from cluster_nodes import Load, RoostCluster, values, write_app

NODES = ["a", "b", "c"]


def write_tls_files(directory: Path, ca: trustme.CA, stem: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by ``ca``: (chain, key) files."""
    issued = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = directory / f"{stem}.pem", directory / f"{stem}.key"
    chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    return chain, key


@pytest.fixture
def ca(tmp_path: Path) -> trustme.CA:
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return authority


@pytest.fixture
def roost(jetstream_servers: list[str], tmp_path: Path, ca: trustme.CA):
    write_app(tmp_path, "jobs")
    write_tls_files(tmp_path, ca, "node")
    # The nodes share roost.toml, and in it the [cluster] table's TLS files (relative to it).
    with open(tmp_path / "roost.toml", "a") as config:
        config.write('\n[cluster]\ntls_cert = "node.pem"\ntls_key = "node.key"\ntls_ca = "ca.pem"\n')
    cluster = RoostCluster(tmp_path, NODES, jetstream_servers)
    try:
        cluster.wait_settled(every_node_serves=True)
        yield cluster
    finally:
        cluster.stop()


def test_nodes_with_certificates_of_one_ca_forward_every_call(roost: RoostCluster) -> None:
    names = [f"tls{n}" for n in range(30)]
    result = Load(roost, names, connections=6, per_connection=100).run()
    assert sum(result.acked.values()) == 600 and result.unknown == Counter(), f"{result.summary()}\n{roost.logs()}"
    for node in roost.live():
        assert values(node.url, names) == dict(result.acked), node.name


def _answer(sock: socket.socket) -> bytes | None:
    """What the channel sends back: b"" when it closes, None if it errs (a TLS alert)."""
    sock.settimeout(10)
    try:
        return sock.recv(100)
    except (ssl.SSLError, ConnectionResetError):
        return None


def test_the_channel_answers_no_client_without_a_certificate_of_the_ca(roost: RoostCluster, tmp_path: Path) -> None:
    node = roost["b"]
    host, port = node.advertise.rsplit(":", 1)[0], int(node.advertise.rsplit(":", 1)[1])
    with socket.create_connection((host, port)) as plain:
        plain.sendall(b"\x00\x00\x00\x05hello")  # the channel's framing, in the clear
        assert _answer(plain) in (b"", None)

    stranger_chain, stranger_key = write_tls_files(tmp_path, trustme.CA(), "stranger")
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    context.load_cert_chain(str(stranger_chain), str(stranger_key))
    with socket.create_connection((host, port)) as raw, context.wrap_socket(raw, server_hostname=host) as stranger:
        try:
            stranger.sendall(b"\x00\x00\x00\x05hello")
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass  # refused during the handshake already
        assert _answer(stranger) in (b"", None)

    deadline = time.monotonic() + 10
    while "failed its TLS handshake" not in node.logs():
        assert time.monotonic() < deadline, node.logs()
        time.sleep(0.2)
    assert node.alive and node.status()["serving"]
