"""Start and stop a throwaway Arena for a benchmark or a load scenario.

Each run gets its own data folder, port and local Ray (``ARENA_RAY_ADDRESS=local``),
so nothing of a developer's ``make run`` is touched.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from serve.ingress import free_port  # noqa: F401  (the benchmarks' and tests' import)

ROOT = Path(__file__).resolve().parent.parent


def environment(data: Path, **settings: str) -> dict[str, str]:
    """The environment of an Arena process whose data lives in ``data``."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ARENA_DATA_DIR": str(data),
        "ARENA_DATABASE_URL": f"sqlite:///{data}/arena.db",
        "ARENA_RAY_ADDRESS": "local",
        # HAProxy's operator ports: free ones, so a run beside `make run` (or another run) starts.
        "ARENA_HAPROXY_STATS_PORT": "0",
        "ARENA_HAPROXY_METRICS_PORT": "0",
        # The crowd comes from one address far faster than people: every request is still counted
        # (the limits' cost is in the measurements), none is refused.
        "ARENA_RATE_LIMIT_SCALE": "1000000",
    }
    env.pop("ARENA_REDIS_URL", None)
    return env | {f"ARENA_{name.upper()}": value for name, value in settings.items()}


def start(command: list[str], data: Path, env: dict[str, str], log_name: str = "server.log") -> subprocess.Popen:
    log = open(data / log_name, "w")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [sys.executable, *command], cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def start_arena(data: Path, port: int, **settings: str) -> subprocess.Popen:
    return start(["-m", "serve.cli", "run", "--port", str(port)], data, environment(data, **settings))


def wait_healthy(base: str, process: subprocess.Popen, deadline_s: float = 180) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:
                if json.load(answer)["status"] == "ok":
                    return
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base} did not become healthy in {deadline_s:.0f} s")


def ray_join(process: subprocess.Popen) -> dict[str, str]:
    """The environment that joins the local Ray ``process`` (an Arena) started (seeding, the MQTT hub).

    Ray's ``auto`` picks any running cluster when there are several (another run, the tests'
    own), so the GCS address is looked up: a session's name ends with the pid of the process
    that started it. An explicit address never turns token authentication on by itself, while
    a new local cluster has it on unless ``RAY_AUTH_MODE`` says otherwise: say the same here.
    """
    session = re.compile(rf"--session-name=session_\S+_{process.pid}\b")
    deadline = time.monotonic() + 30
    while True:
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            found = re.search(r"--gcs-address=(\S+)", command)
            if "raylet" in command and found and session.search(command):
                return {"RAY_ADDRESS": found.group(1), "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token")}
        # Never "auto": with the tests' own Ray (or another run) beside it, "auto" may join the wrong cluster,
        # whose hosts would take the seeded accounts into another store.
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no raylet of the Arena started by pid {process.pid} was found")
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    """Ctrl-C, as a person would (the whole process group); kill after 90 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
