"""The demo race of ``arena run --demo`` ends like a real one and never outlives its run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest

from loadtest.server import free_port
from serve.app import build
from serve.demo import RUNNER_EMAIL, DemoRace
from serve.settings import Settings

pytestmark = pytest.mark.ray


@pytest.fixture
def arena_url(ray_cluster, tmp_path):
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/arena.db",
        namespace=f"demo-{uuid.uuid4().hex[:8]}",
        hosts=1,
        replicas=1,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        data_dir=tmp_path,
        rate_limit_scale=0,
        race_host_idle=1.0,
    )
    serve.run(build(settings), name="arena", route_prefix="/")
    yield settings, f"http://127.0.0.1:{port}"
    serve.get_deployment_handle("gateway", app_name="arena").stop_hosts.remote().result(timeout_s=60)
    serve.delete("arena")
    serve.shutdown()


async def run_until(demo: DemoRace, ready, limit: float = 120.0) -> None:
    """Run the demo until ``ready(state)`` holds, then stop it as a stopping ``arena run`` would."""
    stop = asyncio.Event()
    running = asyncio.ensure_future(demo.run(stop))
    deadline = time.monotonic() + limit
    while not ready(demo._state()):
        assert not running.done(), running.exception()
        assert time.monotonic() < deadline, f"the demo did not get there: {demo._state()}"
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(running, limit)


async def test_a_demo_race_is_made_final_when_everyone_is_home_and_when_the_run_stops(arena_url):
    settings, url = arena_url
    first = DemoRace(settings, url, athletes=3, distance_m=15.0, announce=lambda _: None)
    await run_until(first, lambda state: state.get("races") == 1 and state.get("race") is None)

    second = DemoRace(settings, url, athletes=3, distance_m=5_000.0, announce=lambda _: None)
    await run_until(second, lambda state: state.get("race"))  # stopped mid-race
    state = json.loads((settings.data_dir / "demo.json").read_text())
    assert state["races"] == 2 and state["race"] is None  # numbered on; nothing left live

    async with httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=30) as http:
        races = (await http.get("/races")).json()["items"]
        demo_races = {race["name"]: race for race in races if race["name"].startswith("Demo")}
        assert set(demo_races) == {"Demo 0.015 km #1", "Demo 5 km #2"}
        login = await http.post("/auth/login", json={"email": RUNNER_EMAIL, "password": state["runner"]["password"]})
        runner = {"Authorization": f"Bearer {login.json()['access_token']}"}
        for race in demo_races.values():
            assert (await http.get(f"/races/{race['id']}")).json()["status"] == "final"
        finished = demo_races["Demo 0.015 km #1"]["id"]
        results = (await http.get(f"/races/{finished}/results")).json()["results"]
        assert "dsq" in {row["status"] for row in results}  # the demo's cheater, disqualified
        workout = await http.get(f"/workouts/{finished}-2", headers=runner)  # the runner's result, published
        assert workout.status_code == 200, workout.text

        # the community: the clubs once (two runs made them once), the athlete in one, a week of runs behind them
        clubs = (await http.get("/groups", params={"q": "Paris Runners"}, headers=runner)).json()["items"]
        assert [club["name"] for club in clubs if club["name"] == "Paris Runners"] == ["Paris Runners"]
        mine = (await http.get("/me/groups", headers=runner)).json()["items"]
        assert [group["name"] for group in mine] == ["Paris Runners"]  # the riders take requests: not yet in
        coming = (await http.get("/me/events", headers=runner)).json()["items"]
        assert [event["title"] for event in coming] == ["Saturday long run"]
        challenge = state["community"]["challenge"]
        for _ in range(100):  # the mates' runs reach the board through the relay
            board = (await http.get(f"/challenges/{challenge}/leaderboard", headers=runner)).json()
            if all(row["progress"] > 5_000 for row in board["rows"]):
                break
            await asyncio.sleep(0.2)
        assert board["participants"] == 5 and all(row["progress"] > 5_000 for row in board["rows"])  # their runs count
        workouts = (await http.get(f"/users/{state['runner']['id']}/workouts", headers=runner)).json()["items"]
        assert sum((w.get("title") or "").startswith("Morning run") for w in workouts) == 6
        for _ in range(100):  # points and badges follow the workouts through the relay
            achievements = (await http.get("/me/achievements", headers=runner)).json()
            if "streak_7" in {badge["id"] for badge in achievements["badges"]}:
                break
            await asyncio.sleep(0.2)
        # six typed-in days and today's race make the seven-day streak; typed-in runs earn half the points
        assert achievements["points"] > 0 and "streak_7" in {badge["id"] for badge in achievements["badges"]}
