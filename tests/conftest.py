"""Shared fixtures: a fresh data directory per test."""

from __future__ import annotations

import pytest


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / "data")
