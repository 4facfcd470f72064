"""Run one load scenario end to end: a throwaway Arena, its crowd, locust, a summary.

    .venv/bin/python -m loadtest.scenarios join-surge      # 50,000 joins into one race
    .venv/bin/python -m loadtest.scenarios spectators      # 10,000 live streams
    .venv/bin/python -m loadtest.scenarios athletes        # mixed API use
    .venv/bin/python -m loadtest.scenarios devices         # 1,000 watches over MQTT at 1 Hz
    .venv/bin/python -m loadtest.scenarios race-day        # all of them at once

Arena starts on a free loopback port with its own data folder and local Ray; the
crowd is seeded (``loadtest.crowd``); locust runs headless in its own process and
writes ``reports/NAME.csv*`` and ``reports/NAME.html``; the run is bounded by
``--seconds`` (the join surge also ends when everyone has joined).

Scenarios with devices (``devices``, and ``race-day`` with ``--devices``) also start a
private Mosquitto on a free loopback port with Arena's password file and ACL
(``connectors.mosquitto``), and ``arena hub`` against the throwaway Arena's Ray. Each
device's athlete joins the live race and registers and binds the device (the first
``--api-devices`` through the API, the rest through the engine, credentials hashed into
the broker's password file at once); each locust ``MqttDevice`` user is one of them,
publishing a sample a second at QoS 1. At the end the race's accepted samples are
printed next to what locust published, and the hub's drops.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from connectors.mosquitto import HUB_USER, PasswordFile, acl_text, running_broker
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
    devices: int = 0  # more athletes, each with a device bound to the race (MqttDevice users)
    only_devices: bool = False  # every locust user is a device: --users is the number of devices


SCENARIOS = {
    "athletes": Scenario("athletes.py", users=20, spawn_rate=5, seconds=60, crowd=0),
    "join-surge": Scenario("join_surge.py", users=200, spawn_rate=100, seconds=300, crowd=50_000),
    "spectators": Scenario(
        "spectators.py", users=10_000, spawn_rate=500, seconds=60, crowd=5_000, live=True, joined=True
    ),
    "devices": Scenario(
        "devices.py", users=1_000, spawn_rate=100, seconds=60, crowd=0, live=True, devices=1_000, only_devices=True
    ),
    "race-day": Scenario("race_day.py", users=2_000, spawn_rate=200, seconds=90, crowd=20_000, live=True, devices=500),
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


class _Devices:
    """A private Mosquitto with Arena's password file and ACL, and later its hub: what a device scenario adds."""

    def __init__(self, folder: Path, stack: ExitStack) -> None:
        self.folder, self.stack = folder, stack
        self.port = server.free_port()
        self.passwords = PasswordFile(folder / "passwd")
        self.hub_password = secrets.token_urlsafe(16)
        self.passwords.set(HUB_USER, self.hub_password)
        (folder / "acl").write_text(acl_text())
        stack.enter_context(running_broker(folder, self.port, self.passwords.path, folder / "acl"))
        self.pid_file = folder / "mosquitto.pid"
        self.hub: subprocess.Popen | None = None

    def settings(self) -> dict[str, str]:
        """Arena's side: where devices connect, and the files its device registration changes."""
        return {
            "mqtt_url": f"mqtt://127.0.0.1:{self.port}",
            "mqtt_password_file": str(self.passwords.path),
            "mqtt_pid_file": str(self.pid_file),
            "mqtt_hub_password": self.hub_password,
        }

    def seed_args(self) -> list[str]:
        broker = ["--broker", f"127.0.0.1:{self.port}", "--password-file", str(self.passwords.path)]
        return [*broker, "--pid-file", str(self.pid_file)]

    def start_hub(self, data: Path, env: dict[str, str], deadline_s: float = 180) -> None:
        """``arena hub`` on the throwaway Arena's Ray, signed in as the hub's user; back once it subscribed."""
        env = env | {
            "ARENA_RAY_ADDRESS": env["RAY_ADDRESS"],
            "ARENA_MQTT_URL": f"mqtt://{HUB_USER}@127.0.0.1:{self.port}",
        }
        self.hub = server.start(["-m", "serve.cli", "hub", "--client-id", "loadtest-hub"], data, env, "hub.log")
        self.stack.callback(server.stop, self.hub)
        self.log = data / "hub.log"
        deadline = time.monotonic() + deadline_s
        while not re.search(r"MQTT hub \S+ on ", self.log.read_text(errors="replace")):
            if self.hub.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the MQTT hub did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def dropped(self) -> Counter:
        """Messages the hub acknowledged without ingesting them, by reason (from its log)."""
        text = self.log.read_text(errors="replace")
        return Counter(re.findall(r"dropped a message of device \S+: (\w+)", text))


def _race_samples(base: str, race: str) -> int:
    with urllib.request.urlopen(f"{base}/api/v1/races/{race}", timeout=30) as answer:
        return int(json.load(answer)["totals"].get("samples", 0))


def _settled_samples(base: str, race: str, quiet_s: float = 3.0, deadline_s: float = 60.0) -> int:
    """The race's accepted samples once the hub has drained (no change for ``quiet_s``)."""
    deadline = time.monotonic() + deadline_s
    last, since = _race_samples(base, race), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.5)
        now = _race_samples(base, race)
        if now != last:
            last, since = now, time.monotonic()
    return last


def _mqtt_counts(final: Path) -> dict[str, tuple[int, int]]:
    """(requests, failures) of locust's MQTT rows by name, as they stood when it quit."""
    counts = json.loads(final.read_text())
    return {
        key.removeprefix("MQTT "): (row["requests"], row["failures"])
        for key, row in counts.items()
        if key.startswith("MQTT ")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a load scenario against a throwaway Arena.")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--users", type=int, help="locust users (default: the scenario's; devices: the devices)")
    parser.add_argument("--seconds", type=int, help="time limit (default: the scenario's)")
    parser.add_argument("--crowd", type=int, help="athletes to seed (default: the scenario's)")
    parser.add_argument("--devices", type=int, help="athletes with a device over MQTT, as more users (race-day)")
    parser.add_argument(
        "--api-devices", type=int, default=100, help="of the devices, how many register through the API"
    )
    parser.add_argument("--replicas", type=int, default=2, help="API replicas")
    parser.add_argument("--ingress", choices=("haproxy", "proxy"), default="haproxy", help="ARENA_INGRESS")
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    args = parser.parse_args()
    scenario = SCENARIOS[args.scenario]
    users = args.users or scenario.users
    crowd = args.crowd if args.crowd is not None else scenario.crowd
    devices = args.devices if args.devices is not None else scenario.devices
    if scenario.only_devices:
        devices = users = args.users or args.devices or scenario.devices
    args.reports = args.reports.resolve()
    args.reports.mkdir(parents=True, exist_ok=True)
    prefix = args.reports / args.scenario

    with tempfile.TemporaryDirectory(prefix=f"arena-{args.scenario}-") as tmp, ExitStack() as stack:
        data = Path(tmp)
        port = server.free_port()
        base = f"http://127.0.0.1:{port}"
        settings = {"replicas": str(args.replicas), "ingress": args.ingress}
        mqtt = _Devices(data / "mosquitto", stack) if devices else None
        settings |= mqtt.settings() if mqtt else {}
        arena = server.start_arena(data, port, **settings)
        stack.callback(server.stop, arena)
        try:
            server.wait_healthy(base, arena)
            env = server.environment(data, **settings) | server.ray_join(arena)
            if mqtt:
                mqtt.start_hub(data, env)
                print(f"Mosquitto on 127.0.0.1:{mqtt.port}, MQTT hub running", flush=True)
            with_devices = f" and {devices:,} athletes with devices" if devices else ""
            print(f"Arena at {base}; seeding {crowd:,} athletes{with_devices}", flush=True)
            crowd_file = data / "crowd.json"
            seed = ["-m", "loadtest.crowd", "--athletes", str(crowd), "--url", base, "--out", str(crowd_file)]
            seed += ["--rolling"] if scenario.live else []
            seed += ["--join"] if scenario.joined else []
            seed += (
                ["--devices", str(devices), "--api-devices", str(args.api_devices), *mqtt.seed_args()] if mqtt else []
            )
            subprocess.run([sys.executable, *seed], env=env, check=True)
            total = users if scenario.only_devices else users + devices
            command = [
                sys.executable, "-m", "locust", "-f", str(HERE / scenario.locustfile), "--headless",
                "-u", str(total), "-r", str(scenario.spawn_rate), "-t", f"{args.seconds or scenario.seconds}s",
                "--host", base, "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary",
                "--stop-timeout", "15", "--exit-code-on-error", "0",
            ]  # fmt: skip
            locust_env = env | {"ARENA_CROWD": str(crowd_file)}
            if mqtt:
                locust_env |= {"ARENA_DEVICES": str(crowd_file), "ARENA_FINAL_COUNTS": str(data / "final.json")}
            print(f"locust: {total:,} users of {scenario.locustfile}", flush=True)
            subprocess.run(command, env=locust_env, check=True)
            race = json.loads(crowd_file.read_text())["race"]
            with urllib.request.urlopen(f"{base}/api/v1/races/{race}", timeout=30) as answer:
                print(f"the race now has {json.load(answer)['athletes']:,} athletes", flush=True)
            if mqtt:
                accepted = _settled_samples(base, race)
                counts = _mqtt_counts(data / "final.json")
                published, failed = counts.get("telemetry", (0, 0))
                connects, refused = counts.get("connect", (0, 0))
                dropped = mqtt.dropped()
                print(
                    f"devices: {connects - refused:,} of {devices:,} connected ({refused:,} failed); locust published "
                    f"{published:,} samples, {published - failed:,} acknowledged, {failed:,} failed",
                    flush=True,
                )
                drops = ", ".join(f"{n:,} {why}" for why, n in dropped.most_common()) or "none"
                print(f"the race accepted {accepted:,} samples; the hub dropped {drops}", flush=True)
        except Exception:
            print((data / "server.log").read_text()[-3000:], file=sys.stderr)
            if (data / "hub.log").exists():
                print((data / "hub.log").read_text()[-3000:], file=sys.stderr)
            raise
    print(_summary(prefix))
    print(f"reports: {prefix}.html and {prefix}_stats.csv")


if __name__ == "__main__":
    main()
