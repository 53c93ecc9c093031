"""Facts about the machine, interpreter, packages and code a run measured.

Read from ``/proc``, ``platform``, package metadata and git; nothing here measures speed.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("roost", "trio", "lmdb", "msgpack")
_REPO = Path(__file__).resolve().parent.parent


def machine_info(data_path: Path, *, load_at_start: tuple[float, float, float]) -> dict[str, Any]:
    """CPU, memory, load, OS, Python, package versions, the data path's filesystem, git commit.

    The load averages (1, 5, 15 min) show whether other work shared the CPUs during the run.
    """
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_total_bytes": _meminfo_bytes("MemTotal"),
        "load_average": {"start": list(load_at_start), "end": list(os.getloadavg())},
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "data_filesystem": filesystem_of(data_path),
        "git": _git_state(),
    }


def filesystem_of(path: Path) -> dict[str, str] | None:
    """Mount point, device and type of the filesystem holding ``path`` (from /proc/self/mounts)."""
    resolved = str(path.resolve())
    best: dict[str, str] | None = None
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                device, mount_point, fs_type = line.split()[:3]
                inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
                if inside and (best is None or len(mount_point) > len(best["mount_point"])):
                    best = {"mount_point": mount_point, "device": device, "type": fs_type}
    except OSError:
        return None
    return best


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _meminfo_bytes(field: str) -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_state() -> dict[str, Any] | None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return None
