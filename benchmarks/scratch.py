"""Scratch directories for data under the current working directory.

Benchmarks write to the disk the runtime's data directory would live on, so scratch space
goes under the working directory, never the system temp dir (often a tmpfs, which would
make fsync free). Each directory is removed when its block exits.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PREFIX = ".roost-bench-"


@contextmanager
def scratch_dir(label: str) -> Iterator[Path]:
    """A fresh, empty directory named after ``label`` under the working directory."""
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{label}-", dir=os.getcwd()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
