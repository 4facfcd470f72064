"""Run one load scenario end to end: a throwaway Arena, its crowd, locust, a summary.

    .venv/bin/python -m loadtest.scenarios join-surge      # 50,000 joins into one race
    .venv/bin/python -m loadtest.scenarios spectators      # 10,000 live streams
    .venv/bin/python -m loadtest.scenarios athletes        # mixed API use
    .venv/bin/python -m loadtest.scenarios race-day        # all of them at once

Arena starts on a free loopback port with its own data folder and local Ray; the
crowd is seeded (``loadtest.crowd``); locust runs headless in its own process and
writes ``reports/NAME.csv*`` and ``reports/NAME.html``; the run is bounded by
``--seconds`` (the join surge also ends when everyone has joined).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from loadtest import server

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Scenario:
    locustfile: str
    users: int
    spawn_rate: float
    seconds: int
    crowd: int  # athletes seeded (0: none)
    live: bool = False  # the race is live while the scenario runs (a rolling start)
    joined: bool = False  # the crowd is on the start list before locust starts


SCENARIOS = {
    "athletes": Scenario("athletes.py", users=20, spawn_rate=5, seconds=60, crowd=0),
    "join-surge": Scenario("join_surge.py", users=200, spawn_rate=100, seconds=300, crowd=50_000),
    "spectators": Scenario(
        "spectators.py", users=10_000, spawn_rate=500, seconds=60, crowd=5_000, live=True, joined=True
    ),
    "race-day": Scenario("race_day.py", users=2_000, spawn_rate=200, seconds=90, crowd=20_000, live=True),
}


def _summary(prefix: Path) -> str:
    rows = list(csv.DictReader(open(f"{prefix}_stats.csv")))
    lines = [f"{'request':28} {'count':>9} {'fails':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"]
    for row in rows:
        lines.append(
            f"{row['Type'] + ' ' + row['Name']:28.28} {int(row['Request Count']):9,} {int(row['Failure Count']):7,} "
            f"{float(row['Requests/s']):8.1f} {row['50%']:>8} {row['99%']:>8}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a load scenario against a throwaway Arena.")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--users", type=int, help="locust users (default: the scenario's)")
    parser.add_argument("--seconds", type=int, help="time limit (default: the scenario's)")
    parser.add_argument("--crowd", type=int, help="athletes to seed (default: the scenario's)")
    parser.add_argument("--replicas", type=int, default=2, help="API replicas")
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy", help="ARENA_INGRESS")
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    args = parser.parse_args()
    scenario = SCENARIOS[args.scenario]
    users = args.users or scenario.users
    crowd = args.crowd if args.crowd is not None else scenario.crowd
    args.reports = args.reports.resolve()
    args.reports.mkdir(parents=True, exist_ok=True)
    prefix = args.reports / args.scenario

    with tempfile.TemporaryDirectory(prefix=f"arena-{args.scenario}-") as tmp:
        data = Path(tmp)
        port = server.free_port()
        base = f"http://127.0.0.1:{port}"
        settings = {"replicas": str(args.replicas), "ingress": args.ingress}
        arena = server.start_arena(data, port, **settings)
        try:
            server.wait_healthy(base, arena)
            print(f"Arena at {base}; seeding {crowd:,} athletes", flush=True)
            crowd_file = data / "crowd.json"
            seed = ["-m", "loadtest.crowd", "--athletes", str(crowd), "--url", base, "--out", str(crowd_file)]
            env = server.environment(data, **settings) | {"RAY_ADDRESS": "auto"}
            seed += ["--rolling"] if scenario.live else []
            seed += ["--join"] if scenario.joined else []
            subprocess.run([sys.executable, *seed], env=env, check=True)
            command = [
                sys.executable, "-m", "locust", "-f", str(HERE / scenario.locustfile), "--headless",
                "-u", str(users), "-r", str(scenario.spawn_rate), "-t", f"{args.seconds or scenario.seconds}s",
                "--host", base, "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary",
                "--stop-timeout", "5", "--exit-code-on-error", "0",
            ]  # fmt: skip
            print(f"locust: {users:,} users of {scenario.locustfile}", flush=True)
            subprocess.run(command, env=env | {"ARENA_CROWD": str(crowd_file)}, check=True)
            race = json.loads(crowd_file.read_text())["race"]
            with urllib.request.urlopen(f"{base}/api/v1/races/{race}", timeout=30) as answer:
                print(f"the race now has {json.load(answer)['athletes']:,} athletes", flush=True)
        except Exception:
            print((data / "server.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            server.stop(arena)
    print(_summary(prefix))
    print(f"reports: {prefix}.html and {prefix}_stats.csv")


if __name__ == "__main__":
    main()
