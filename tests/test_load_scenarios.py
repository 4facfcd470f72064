"""The load scenarios run end to end: a throwaway Arena, a seeded crowd, locust, reports.

Small numbers (the full sizes are `make load-*`); what is checked is the outcome, never
a time: everyone who joined is on the race's start list and locust saw no failure.
"""

from __future__ import annotations

import csv
import subprocess
import sys

from tests.conftest import ROOT


def test_the_join_surge_puts_the_whole_crowd_on_the_start_list(tmp_path):
    crowd = 300
    run = subprocess.run(
        [sys.executable, "-m", "loadtest.scenarios", "join-surge", "--crowd", str(crowd), "--users", "20",
         "--seconds", "120", "--replicas", "1", "--reports", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"the race now has {crowd:,} athletes" in run.stdout
    assert f"join surge: {crowd:,} joined" in run.stdout + run.stderr
    rows = {row["Name"]: row for row in csv.DictReader(open(tmp_path / "join-surge_stats.csv"))}
    assert int(rows["join"]["Request Count"]) >= crowd and int(rows["join"]["Failure Count"]) == 0
    assert (tmp_path / "join-surge.html").stat().st_size > 0
