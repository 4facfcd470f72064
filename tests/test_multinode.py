"""Entities and races spread over a three-node Ray cluster; a worker node dies mid-race and nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import ROOT
from tests.multinode_race import ACCOUNTS, ATHLETES, KILL_AT, SECONDS, SPEED

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def report(postgres_url) -> dict:
    """The scenario's report, run once in its own process with its own Ray temp dir.

    A private RAY_TMPDIR keeps the scenario's cluster out of sight of every other
    ``ray.init()`` on this machine (Ray joins the latest cluster it finds there).
    """
    temp = tempfile.mkdtemp(prefix="ray-mn-")  # short: Ray's socket paths must stay under 108 bytes
    path = os.pathsep.join(filter(None, (ROOT, os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "RAY_TMPDIR": temp, "PYTHONPATH": path}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tests.multinode_race", postgres_url],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hosts_and_the_race_spread_over_the_worker_nodes_and_none_on_the_head(report):
    placed = set(report["placement_before"].values())
    assert placed == set(report["workers"])
    assert report["head"] not in placed


def test_hosts_of_the_killed_node_restart_on_the_surviving_one(report):
    killed = report["killed"]
    assert list(report["placement_before"].values()).count(killed) >= 2, "the race and a shared host were on it"
    assert killed not in report["alive_nodes"]
    survivor = next(node for node in report["workers"] if node != killed)
    assert set(report["placement_after"].values()) == {survivor}


def test_the_race_went_on_through_the_loss_of_its_node(report):
    assert report["attempts"], "some batch found the race's host down and was retried"
    assert min(map(int, report["attempts"])) == KILL_AT + 1
    assert report["status"] == "live"
    expected = {f"a{i}": SPEED * SECONDS * (1 + i / 1000) for i in range(ATHLETES)}
    assert report["distances"] == pytest.approx(expected, rel=1e-5)


def test_every_acknowledged_sample_is_counted_exactly_once(report):
    assert report["accepted"] == ATHLETES * SECONDS
    assert report["duplicates"] == 0
    assert report["journal_seqs_contiguous"]
    assert report["replay_accepted"] == ATHLETES * SECONDS


def test_live_results_equal_a_replay_of_the_journal(report):
    assert report["replay_equals_live"]


def test_accounts_on_the_killed_node_answer_with_their_data(report):
    assert len(report["accounts_intact"]) == ACCOUNTS
