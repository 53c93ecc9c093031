"""The ``[cluster]`` table: what the flags of ``roost serve --cluster`` say, written once for
the nodes that share a ``roost.toml`` (a flag given on the command line wins over it).

Only the shapes are checked here; what the values mean (URLs, addresses, the lease against
the renewals, that the TLS files exist) is checked where the flags are, in
``runtime.cluster.options``, with the same messages.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .checks import Where, expect, ranged, unknown
from .model import ClusterTable

_STRINGS = ("node_name", "advertise", "listen", "tls_cert", "tls_key", "tls_ca")
_PATHS = ("tls_cert", "tls_key", "tls_ca")
_NUMBERS = {
    "lease_seconds": ((int, float), 0.0, None),
    "replicas": (int, 1, 5),
    "snapshot_every": (int, 1, None),
}


def cluster_from_toml(table: Any, where: Where, source: str) -> ClusterTable | None:
    """``[cluster]`` checked, or None without one; relative TLS paths resolve from the
    directory of ``source``."""
    if table is None:
        return None
    expect(table, Mapping, where, "cluster", "a table")
    unknown(table, {"nats", *_STRINGS, *_NUMBERS}, where, "cluster")
    values: dict[str, Any] = {}
    nats = table.get("nats")
    if nats is not None:
        servers = [nats] if isinstance(nats, str) else expect(nats, list, where, "cluster.nats", "a list of URLs")
        for i, url in enumerate(servers):
            expect(url, str, where, f"cluster.nats[{i}]", "a string")
        if not servers:
            raise where.error("cluster", "key 'nats': expected at least one nats://HOST:PORT URL")
        values["nats"] = tuple(servers)
    for key in _STRINGS:
        if key in table:
            values[key] = expect(table[key], str, where, f"cluster.{key}", "a string")
    for key in _PATHS:
        if key in values and not os.path.isabs(values[key]):
            values[key] = os.path.join(os.path.dirname(os.path.abspath(source)), values[key])
    values.update(ranged(table, _NUMBERS, where, "cluster"))
    return ClusterTable(**values)
