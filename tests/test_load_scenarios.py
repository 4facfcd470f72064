"""The load scenarios run end to end: a throwaway Arena, a seeded crowd, locust, reports.

Small numbers (the full sizes are `make load-*`); what is checked is the outcome, never
a time: everyone who joined is on the race's start list, every acknowledged device sample is
in the race, and locust saw no failure.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys

from tests.conftest import ROOT, require_program


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


def test_devices_stream_over_mqtt_into_the_race(tmp_path):
    """Fifty watches (ten registered through the API, forty seeded through the engine) publish
    over a private Mosquitto and the hub: every sample locust got a PUBACK for is in the race."""
    for program in ("mosquitto", "mosquitto_passwd"):
        require_program(program, shutil.which(program), "apt-get install mosquitto")
    devices = 50
    run = subprocess.run(
        [sys.executable, "-m", "loadtest.scenarios", "devices", "--users", str(devices), "--api-devices", "10",
         "--seconds", "8", "--replicas", "1", "--reports", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"the race now has {devices:,} athletes" in run.stdout
    connected = re.search(r"devices: ([\d,]+) of ([\d,]+) connected \(([\d,]+) failed\)", run.stdout)
    published = re.search(r"locust published ([\d,]+) samples, ([\d,]+) acknowledged, ([\d,]+) failed", run.stdout)
    accepted = re.search(r"the race accepted ([\d,]+) samples; the hub dropped (.+)", run.stdout)
    assert connected and published and accepted, run.stdout[-3000:]
    number = lambda text: int(text.replace(",", ""))
    assert number(connected[1]) == devices and number(connected[3]) == 0
    assert number(published[3]) == 0, "locust saw failed publishes"
    assert number(published[2]) > 0
    # The hub acknowledges a message only once the race journaled its samples.
    assert number(accepted[1]) >= number(published[2])
    assert accepted[2] == "none"
    rows = {row["Name"]: row for row in csv.DictReader(open(tmp_path / "devices_stats.csv"))}
    assert int(rows["telemetry"]["Failure Count"]) == 0 and int(rows["connect"]["Failure Count"]) == 0
    assert (tmp_path / "devices.html").stat().st_size > 0
