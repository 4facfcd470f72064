"""Load scenarios for the Arena API.

Athletes: register, sign in, record and upload workouts, read the feed, give kudos,
comment, follow. Headless, bounded in time, loopback only:

    .venv/bin/python -m loadtest.scenarios athletes     # a throwaway Arena, 20 users, 60 s
    .venv/bin/locust -f loadtest/scenarios/athletes.py --headless -u 20 -r 5 -t 60s \\
        --host http://127.0.0.1:8000 --csv reports/athletes --html reports/athletes.html
"""

from __future__ import annotations

import os
import random
import uuid
from datetime import UTC, datetime, timedelta

from locust import HttpUser, between, task

from loadtest.gpx import synthetic_gpx

PASSWORD = "correct horse battery"
_athletes: list[str] = []  # ids seen by this locust process, for follows
_workouts: list[tuple[str, str]] = []  # (workout id, owner id), for kudos and comments
_KEEP = 5_000


def _remember(pool: list, value) -> None:
    pool.append(value)
    if len(pool) > _KEEP:
        del pool[: len(pool) - _KEEP]


class Athlete(HttpUser):
    # ARENA_LOAD_WAIT=0 drives the API flat out (to measure throughput); the default paces like people.
    wait_time = between(0.0, 0.0) if os.environ.get("ARENA_LOAD_WAIT") == "0" else between(0.5, 2.0)

    def on_start(self) -> None:
        email = f"load-{uuid.uuid4().hex}@example.com"
        answer = self.client.post(
            "/api/v1/accounts", json={"email": email, "password": PASSWORD, "display_name": "Load"}, name="register"
        )
        answer.raise_for_status()
        self.id = answer.json()["id"]
        login = self.client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}, name="login")
        login.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        _remember(_athletes, self.id)
        self.uploads = 0

    @task(2)
    def record(self) -> None:
        start = datetime.now(UTC) - timedelta(hours=random.randint(1, 2000))
        body = {
            "sport": random.choice(["run", "ride", "walk"]),
            "start": start.isoformat(),
            "duration_s": 1800,
            "distance_m": 6000,
        }
        answer = self.client.post("/api/v1/workouts", json=body, name="record workout")
        if answer.ok:
            _remember(_workouts, (answer.json()["id"], self.id))

    @task(1)
    def upload(self) -> None:
        self.uploads += 1
        start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=self.uploads, minutes=random.randint(0, 600))
        files = {"file": ("run.gpx", synthetic_gpx(200, start=start), "application/gpx+xml")}
        answer = self.client.post("/api/v1/workouts/import", files=files, name="upload gpx")
        if answer.ok:
            _remember(_workouts, (answer.json()["id"], self.id))

    @task(5)
    def feed(self) -> None:
        self.client.get("/api/v1/feed", name="read feed")

    @task(3)
    def kudos(self) -> None:
        workout = self._someone_elses_workout()
        if workout:
            self.client.put(f"/api/v1/workouts/{workout}/kudos", name="kudos")

    @task(1)
    def comment(self) -> None:
        workout = self._someone_elses_workout()
        if workout:
            self.client.post(f"/api/v1/workouts/{workout}/comments", json={"text": "Strong!"}, name="comment")

    def _someone_elses_workout(self) -> str | None:
        for workout, owner in random.sample(_workouts, min(5, len(_workouts))):
            if owner != self.id:
                return workout
        return None

    @task(1)
    def follow(self) -> None:
        others = [a for a in random.sample(_athletes, min(3, len(_athletes))) if a != self.id]
        if others:
            self.client.post(f"/api/v1/users/{others[0]}/follow", name="follow")
