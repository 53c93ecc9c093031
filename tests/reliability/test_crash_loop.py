"""Crash loop, short form: ``kill -9`` a real ``roost serve`` five times at random moments
while clients record every acknowledgement; nothing acknowledged is lost. Then the same with
``--workers 2``, killing one worker at a time.

``make soak`` runs the long form (``soak.py``). ``ROOST_CRASH_SEED`` picks another schedule.
"""

from __future__ import annotations

import os
from pathlib import Path

from crash_loop import run_crash_loop

KILLS = 5


def test_kill_9_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("ROOST_CRASH_SEED", "1"))
    report = run_crash_loop(tmp_path, kills=KILLS, seed=seed, life_seconds=(0.3, 1.0))
    print(report.table())
    assert report.problems() == []
    assert report.kills == KILLS


def test_kill_9_of_single_workers_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = int(os.environ.get("ROOST_CRASH_SEED", "1"))
    report = run_crash_loop(tmp_path, kills=KILLS, seed=seed, life_seconds=(0.3, 1.0), workers=2)
    print(report.table())
    assert report.problems() == []
    assert report.kills == KILLS
