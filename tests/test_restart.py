"""`arena run` as a user runs it: data written through the API survives a restart of Ray and of the app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from loadtest.server import free_port

pytestmark = pytest.mark.ray


class ArenaProcess:
    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "serve.cli", "run", "--port", str(port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._log.close()
                tail = log.read_text(errors="replace")[-4000:]
                pytest.fail(f"arena run exited early ({self._process.returncode}); the end of {log}:\n{tail}")
            if b"Arena is running at" in log.read_bytes():
                assert httpx.get(f"{self.url}/health", timeout=30).status_code == 200
                return
            time.sleep(0.1)
        self.stop()
        tail = log.read_text(errors="replace")[-4000:]
        pytest.fail(f"arena run did not answer /health in time; the end of {log}:\n{tail}")

    def stop(self) -> int:
        self._process.send_signal(signal.SIGINT)
        try:
            return self._process.wait(timeout=120)
        finally:
            self._log.close()


@pytest.fixture
def environment(tmp_path, ray_cluster) -> dict[str, str]:
    """The embedded default a newcomer runs: its SQLite file and signing secret under the data folder.
    (PostgreSQL keeps what it is given by itself; its durability is the SIGKILL tests' subject, on
    both stores: tests/test_ray_engine.py, tests/test_race_recovery.py.)"""
    database_url = f"sqlite:///{tmp_path}/arena.db"
    return {
        **os.environ,
        "ARENA_RAY_ADDRESS": "local",  # a Ray of its own, beside the test session's
        "ARENA_HAPROXY_STATS_PORT": "0",  # free ones: `make run` may hold the defaults
        "ARENA_HAPROXY_METRICS_PORT": "0",
        "ARENA_NUM_CPUS": "2",
        "ARENA_DATABASE_URL": database_url,
        "ARENA_DATA_DIR": str(tmp_path),
        "ARENA_NAMESPACE": f"restart-{uuid.uuid4().hex[:6]}",
        "ARENA_ARGON2_TIME_COST": "1",
        "ARENA_ARGON2_MEMORY_KIB": "1024",
    }


def test_data_written_through_the_api_survives_a_restart_of_ray_and_the_app(environment, tmp_path):
    port = free_port()
    email, password = f"keep-{uuid.uuid4().hex[:6]}@example.com", "correct horse battery"
    first = ArenaProcess(environment, port, tmp_path / "first.log")
    try:
        api = f"{first.url}/api/v1"
        assert (
            httpx.post(f"{api}/accounts", json={"email": email, "password": password, "display_name": "K"}).status_code
            == 201
        )
        token = httpx.post(f"{api}/auth/login", json={"email": email, "password": password}).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        workout = {"sport": "run", "start": "2026-11-20T07:00:00Z", "duration_s": 1500, "distance_m": 5000}
        created = httpx.post(f"{api}/workouts", json=workout, headers=headers)
        assert created.status_code == 201
    finally:
        assert first.stop() == 0

    second = ArenaProcess(environment, port, tmp_path / "second.log")
    try:
        api = f"{second.url}/api/v1"
        me = httpx.get(f"{api}/me", headers=headers)  # the signing secret was kept too
        assert me.status_code == 200 and me.json()["workouts"] == 1
        assert httpx.get(f"{api}/workouts/{created.json()['id']}", headers=headers).json()["distance_m"] == 5000
        assert httpx.post(f"{api}/auth/login", json={"email": email, "password": password}).status_code == 200
    finally:
        assert second.stop() == 0
