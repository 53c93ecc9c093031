"""The options of ``roost serve --cluster`` (no NATS imported here: the CLI reads them)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigError
from .channel_tls import ChannelTls


DEFAULT_LEASE_SECONDS = 5.0
DEFAULT_RENEW_SECONDS = 1.0
DEFAULT_REPLICAS = 3
# Records of a partition between its snapshots: the log a new owner may have to replay.
DEFAULT_SNAPSHOT_EVERY = 10_000


@dataclass(frozen=True, slots=True)
class Timing:
    """A lease not renewed for ``lease_seconds`` may be taken; owners renew every ``renew_seconds``."""

    lease_seconds: float = DEFAULT_LEASE_SECONDS
    renew_seconds: float = DEFAULT_RENEW_SECONDS


def shown(urls: tuple[str, ...] | list[str]) -> str:
    """NATS URLs for a log line or an error: a user and password in one become ``***``."""
    out = []
    for url in urls:
        parts = urlsplit(url)
        if "@" in parts.netloc:
            url = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
        out.append(url)
    return ",".join(out)


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"an address is HOST:PORT, not {address!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """``roost serve --cluster ...``: where NATS is, who this node is, where peers reach it."""

    nats: tuple[str, ...]
    node_name: str
    advertise: str  # HOST:PORT
    listen: str | None = None  # default: the advertised address
    timing: Timing = Timing()
    nats_timeout_seconds: float = 2.0
    replicas: int = DEFAULT_REPLICAS
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    tls: ChannelTls | None = None  # mutual TLS on the channel between nodes

    def check(self) -> None:
        if not self.nats or not all(url.startswith(("nats://", "tls://")) for url in self.nats):
            raise ConfigError(f"--cluster takes nats://HOST:PORT URLs separated by commas, not {shown(self.nats)!r}")
        if not self.node_name or not self.node_name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"--node-name must be letters, digits, '-' or '_', not {self.node_name!r}")
        for flag, address in (("--advertise", self.advertise), ("--cluster-listen", self.listen)):
            if address is not None:
                try:
                    split_address(address)
                except ValueError as exc:
                    raise ConfigError(f"{flag}: {exc}") from None
        if self.tls is not None:
            for flag, path in (("cert", self.tls.cert), ("key", self.tls.key), ("ca", self.tls.ca)):
                if not os.path.isfile(path):
                    raise ConfigError(f"--cluster-tls-{flag}: no file {path!r}")
            self.tls.server_context()  # raises ConfigError for files that are not usable
        if not 1 <= self.replicas <= 5:
            raise ConfigError(f"--replicas must be 1 to 5 (JetStream's limit), not {self.replicas}")
        if self.snapshot_every < 1:
            raise ConfigError(f"--snapshot-every must be a positive number of records, not {self.snapshot_every}")
        if not 0 < self.timing.renew_seconds < self.timing.lease_seconds / 2:
            raise ConfigError("the lease must last more than two renewals")
