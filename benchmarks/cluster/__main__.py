"""``benchmarks/cluster/.venv/bin/python -m benchmarks.cluster``: the cluster spike of
docs/cluster.md (issue 21, phase 1). Starts 3 clustered nats-server processes on loopback,
runs the trio bridge measurement and the JetStream measurements, prints a table and writes
everything to ``benchmarks/results/cluster-spike.json``. A few minutes in all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from pathlib import Path

from . import bridge, spike
from runtime.cluster.local_nats import open_cluster

RESULTS = Path(__file__).resolve().parents[1] / "results" / "cluster-spike.json"


def _table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(str(r.get(c, "")).rjust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    p.add_argument("--bridge-seconds", type=float, default=4.0)
    p.add_argument("--skip-bridge", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    started = time.time()
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "python": platform.python_version(), "machine": platform.machine()}
    with open_cluster() as cluster:
        result["nats_server"] = cluster.version
        result["setup"] = ("3 nats-server nodes on loopback, replicas 3, file storage, "
                           "sync_interval: always")
        print(f"{cluster.version}, 3 nodes, meta leader {cluster.meta_leader()}", flush=True)
        if not a.skip_bridge:
            print("trio bridge: 1 KiB JetStream publishes with acks", flush=True)
            result["bridge"] = bridge.measure(cluster, a.bridge_seconds)
        print("JetStream: appends, fencing, KV compare-and-set, replay, leader kill", flush=True)
        result["spike"] = asyncio.run(spike.run(cluster, a.seconds))
    result["seconds_total"] = round(time.time() - started, 1)

    print()
    if "bridge" in result:
        print("trio bridge (client CPU is the whole client process, per publish)")
        print(_table(result["bridge"], ["mode", "in_flight", "per_second", "p50_ms", "p99_ms",
                                        "cpu_us_per_publish", "servers_cpu_us_per_publish"]))
        print()
    s = result["spike"]
    print("appends (one record per group commit, expected-last-subject-sequence)")
    print(_table(s["appends"], ["partitions", "writes_per_append", "record_bytes",
                                "appends_per_second", "writes_per_second", "p50_ms", "p99_ms",
                                "servers_cpu_us_per_append", "spurious_wrong_last_sequence"]))
    print()
    print("KV compare-and-set")
    print(_table(s["kv_cas"], ["keys", "updates", "per_second", "p50_ms", "p99_ms",
                               "spurious_wrong_last_sequence"]))
    print()
    for k in ("fencing_race", "fencing_takeover", "replay", "leader_kill"):
        print(f"{k}: {s[k]}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwritten to {a.out} ({result['seconds_total']} s)")


if __name__ == "__main__":
    main()
