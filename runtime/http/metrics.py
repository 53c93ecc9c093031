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
}


def render(stats: dict[str, Any], families: list[MetricFamily] = ()) -> str:
    """The runtime's ``stats``, then the extensions' metric ``families``."""
    lines: list[str] = []
    for key, (name, kind, help_text) in _SCALARS.items():
        if key in stats:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {stats[key]}"]
    commits = stats.get("commits", 0)
    lines += [
        "# HELP roost_writes_per_commit Average writes per group commit since start.",
        "# TYPE roost_writes_per_commit gauge",
        f"roost_writes_per_commit {stats.get('committed_writes', 0) / commits if commits else 0.0}",
    ]
    buckets = stats.get("commit_latency_buckets", {})
    name = "roost_commit_seconds"
    lines += [f"# HELP {name} Group commit latency.", f"# TYPE {name} histogram"]
    cumulative = 0
    for bound, count in buckets.items():
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'{name}_bucket{{le="{le}"}} {cumulative}')
    lines += [f"{name}_sum {stats.get('commit_seconds_total', 0.0)}", f"{name}_count {commits}"]
    for name, kind, help_text, samples in families:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{_labels(labels)} {value}" for labels, value in samples]
    return "\n".join(lines) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    """``{key="value",...}``, values escaped as the text format requires."""
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{value.translate(_LABEL_ESCAPES)}"' for key, value in labels.items()) + "}"
