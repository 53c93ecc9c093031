"""``/metrics``: the runtime's statistics in Prometheus text format (version 0.0.4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..extensions import MetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LABEL_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})

# statistic -> (metric name, type, help)
_SCALARS = {
    "live_actors": ("roost_live_actors", "gauge", "Actor instances in memory."),
    "events": ("roost_events_delivered_total", "counter", "Events delivered to actors (RPC and fetch)."),
    "instances_started": ("roost_instances_started_total", "counter", "Actor instances built."),
    "evictions": ("roost_evictions_total", "counter", "Idle actor instances evicted."),
    "resets": ("roost_resets_total", "counter", "Actor instances reset."),
    "commits": ("roost_commits_total", "counter", "Group commits to LMDB."),
    "failed_commits": ("roost_failed_commits_total", "counter", "Group commits that failed."),
    "committed_writes": ("roost_committed_writes_total", "counter", "Writes committed (keys and alarms)."),
    "committed_actors": ("roost_committed_actors_total", "counter", "Actor write sets committed."),
    "alarms_pending": ("roost_alarms_pending", "gauge", "Alarms stored, due or not."),
    "alarms_delivered": ("roost_alarms_delivered_total", "counter", "Alarm handlers that returned."),
    "alarms_failed": ("roost_alarms_failed_total", "counter", "Alarm deliveries that failed."),
    "alarms_dropped": ("roost_alarms_dropped_total", "counter", "Alarms dropped after their last retry."),
    "http_requests": ("roost_http_requests_total", "counter", "HTTP requests answered."),
    # A cluster's node (roost serve --cluster) only:
    "cluster_partitions_served": ("roost_cluster_partitions_served", "gauge", "Partitions this node serves."),
    "cluster_takeovers": ("roost_cluster_takeovers_total", "counter", "Partitions taken over (fenced, caught up)."),
    "cluster_hand_offs": ("roost_cluster_hand_offs_total", "counter", "Partitions handed off to their home node."),
    "cluster_partitions_lost": ("roost_cluster_partitions_lost_total", "counter", "Partitions given up."),
    "cluster_records_replayed": ("roost_cluster_records_replayed_total", "counter", "Log records caught up."),
    "cluster_log_appends": ("roost_cluster_log_appends_total", "counter", "Records appended to the log."),
    "cluster_append_rounds": ("roost_cluster_append_rounds_total", "counter", "Commits' rounds of appends to the log."),
    "cluster_snapshots_taken": ("roost_cluster_snapshots_taken_total", "counter", "Partition snapshots stored."),
    "cluster_snapshots_loaded": ("roost_cluster_snapshots_loaded_total", "counter", "Snapshots loaded to catch up."),
    "cluster_snapshot_bytes": ("roost_cluster_snapshot_bytes_total", "counter", "Bytes of the snapshots stored."),
    "cluster_append_seconds_total": (
        "roost_cluster_append_seconds_total", "counter", "Time commits waited for the log's acknowledgement."
    ),
}


def render(
    stats: dict[str, Any],
    families: list[MetricFamily] = (),
    workers: dict[Any, dict[str, Any] | None] | None = None,
    label: str = "worker",
) -> str:
    """The runtime's ``stats``, then the extensions' metric ``families``. With ``workers``
    (``roost serve --workers N``: each worker's statistics, None where one did not answer),
    the runtime's series come once per worker with a ``worker`` label instead, and
    ``roost_worker_up`` says which answered; the families are the whole server's already.
    A cluster's node gives its own statistics under ``label`` ``node``."""
    if workers is None:
        sources: list[tuple[dict[str, str], dict[str, Any]]] = [({}, stats)]
        lines: list[str] = []
    else:
        sources = [({label: str(w)}, found) for w, found in workers.items() if found is not None]
        up = f"roost_{label}_up"
        lines = [f"# HELP {up} 1 if the {label} answered for this scrape.", f"# TYPE {up} gauge"]
        lines += [f'{up}{{{label}="{w}"}} {int(found is not None)}' for w, found in workers.items()]
    for key, (name, kind, help_text) in _SCALARS.items():
        if any(key in found for _, found in sources):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            lines += [f"{name}{_labels(labels)} {found[key]}" for labels, found in sources if key in found]
    lines += [
        "# HELP roost_writes_per_commit Average writes per group commit since start.",
        "# TYPE roost_writes_per_commit gauge",
    ]
    for labels, found in sources:
        commits = found.get("commits", 0)
        average = found.get("committed_writes", 0) / commits if commits else 0.0
        lines.append(f"roost_writes_per_commit{_labels(labels)} {average}")
    name = "roost_commit_seconds"
    lines += [f"# HELP {name} Group commit latency.", f"# TYPE {name} histogram"]
    for labels, found in sources:
        cumulative = 0
        for bound, count in found.get("commit_latency_buckets", {}).items():
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f"{name}_bucket{_labels({**labels, 'le': le})} {cumulative}")
        lines.append(f"{name}_sum{_labels(labels)} {found.get('commit_seconds_total', 0.0)}")
        lines.append(f"{name}_count{_labels(labels)} {found.get('commits', 0)}")
    for name, kind, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{_labels(labels)} {value}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    """``{key="value",...}``, values escaped as the text format requires."""
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{value.translate(_LABEL_ESCAPES)}"' for key, value in labels.items()) + "}"
