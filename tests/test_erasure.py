"""The right to erasure end to end (docs/privacy.md): a person who did everything asks to be erased,
and afterwards nothing anywhere names them: the store (SQLite and PostgreSQL), the lake, the NATS
stream, Redis, the models and the MQTT credentials; others' records stay whole."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from actors.account import Account
from connectors.erasure import StorePart
from connectors.lake.query import rows_of
from persistence import open_store
from serve.erasure import parts
from tests.conftest import REDIS_URL, require_service, stop_cluster_services
from tests.test_challenges_api import RUN
from tests.test_groups_api import PASSWORD, signup
from tests.test_races import live_race, run_samples

pytestmark = pytest.mark.ray

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def settings(request, ray_cluster, tmp_path_factory):
    """As conftest's, on each store, with Redis, NATS and device credentials: every part erasure reaches."""
    from serve.settings import Settings

    require_service("NATS", "127.0.0.1", 4222)
    require_service("Redis", "127.0.0.1", 6379)
    folder = tmp_path_factory.mktemp("erasure")
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else f"sqlite:///{folder}/arena.db"
    settings = Settings(
        database_url=url,
        redis_url=REDIS_URL,
        nats_url=NATS_URL,
        mqtt_password_file=folder / "mosquitto.passwd",
        namespace=f"erase-{uuid.uuid4().hex[:8]}",
        hosts=2,
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        jwt_secret="x" * 48,
        admin_emails=["boss@example.com", "chief@example.com"],
        data_dir=folder,
        rate_limit_scale=1000,
        snapshot_interval=0.5,
    )
    yield settings
    stop_cluster_services(settings.namespace)


async def _organizer(client, name: str) -> dict:
    from tests.test_races import _admin

    person = await signup(client, name)
    granted = await client.put(f"/users/{person['id']}/roles", json={"roles": ["athlete", "organizer"]},
                               headers=await _admin(client))  # fmt: skip
    assert granted.status_code == 200, granted.text
    email = (await client.get("/me", headers=person["headers"])).json()["email"]
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    return {**person, "email": email, "headers": {"Authorization": f"Bearer {login.json()['access_token']}"}}


async def _remnants(settings, user_id: str) -> dict[str, list[str]]:
    """What ``arena privacy verify`` scans, in this process."""
    store = open_store(settings.database_url)
    await store.open()
    try:
        found = {"store": await StorePart(store, ask=None).remnants(user_id)}  # type: ignore[arg-type]
        for part in parts(dict(parse_qsl(settings.eraser_spec()))):
            bind = getattr(part, "bind", None)
            if bind is not None:
                bind(store, None)
            found[part.name] = await part.remnants(user_id)
            close = getattr(part, "close", None)
            if close is not None:
                await close()
        return found
    finally:
        await store.close()


async def _ok(answer, status: int = 200) -> dict:
    assert answer.status_code == status, answer.text
    return answer.json() if answer.content else {}


async def test_a_busy_athlete_is_erased_from_everywhere_and_the_others_keep_their_records(client, settings):
    person = await _organizer(client, "Pat")
    mate = await signup(client, "Robin")
    organizer = await _organizer(client, "Olga")
    me, robin, olga = person["headers"], mate["headers"], organizer["headers"]

    # The social graph, workouts, kudos and comments both ways
    await _ok(await client.post(f"/users/{mate['id']}/follow", headers=me))
    await _ok(await client.post(f"/users/{person['id']}/follow", headers=robin))
    workout = {"sport": "run", "start": "2026-11-20T07:00:00Z", "duration_s": 1800, "distance_m": 6000,
               "title": "Pat's tempo run", "visibility": "public"}  # fmt: skip
    mine = await _ok(await client.post("/workouts", json=workout, headers=me), 201)
    theirs = await _ok(await client.post("/workouts", json={**workout, "title": "Robin's run"}, headers=robin), 201)
    await _ok(await client.put(f"/workouts/{theirs['id']}/kudos", headers=me))
    await _ok(await client.post(f"/workouts/{theirs['id']}/comments", json={"text": "Chapeau from Pat"}, headers=me),
              201)  # fmt: skip
    await _ok(await client.post(f"/workouts/{mine['id']}/comments", json={"text": "Nice, Pat"}, headers=robin), 201)

    # A club Pat owns, Robin in it; a challenge both are in; gear; a device with MQTT credentials
    group = await _ok(await client.post("/groups", json={"name": "Pat's club", "sports": ["run"]}, headers=me), 201)
    await _ok(await client.post(f"/groups/{group['id']}/join", headers=robin))
    await _ok(await client.post(f"/groups/{group['id']}/posts", json={"text": "Pat says hi"}, headers=me), 201)
    challenge = await _ok(await client.post("/challenges", json=RUN, headers=olga), 201)
    for headers in (me, robin):
        await _ok(await client.post(f"/challenges/{challenge['id']}/join", headers=headers))
    await _ok(await client.post("/me/gear", json={"type": "shoes", "name": "Pat's racers", "sports": ["run"]},
                                headers=me), 201)  # fmt: skip
    device = await _ok(await client.post("/devices", json={"name": "Pat's watch", "model": "W1"}, headers=me), 201)

    # A race Olga organizes: Pat wins it, Robin is second
    race_id = await live_race(client, olga)
    for headers in (me, robin):
        await _ok(await client.post(f"/races/{race_id}/athletes", json={}, headers=headers), 201)
    gun = time.time() - 600
    await _ok(await client.patch(f"/races/{race_id}", json={"start_at": gun}, headers=olga))
    for _ in range(200):
        if (await client.get(f"/races/{race_id}")).json()["status"] == "live":
            break
        await asyncio.sleep(0.02)
    await _ok(await client.post(f"/races/{race_id}/telemetry", json={"samples": run_samples(gun, 300, 240)},
                                headers=me))  # fmt: skip
    await _ok(await client.post(f"/races/{race_id}/telemetry", json={"samples": run_samples(gun, 330, 280)},
                                headers=robin))  # fmt: skip
    await _ok(await client.post(f"/races/{race_id}/actions/end", headers=olga))
    await _ok(await client.post(f"/races/{race_id}/actions/finalize", headers=olga))
    await _ok(await client.post("/me/export", headers=me), 202)  # an archive of it all, on disk
    await client.arena.drain()  # results become workouts, feeds fill, the lake and the stream get it all
    assert device["id"] in settings.mqtt_password_file.read_text()  # its credentials
    before = await _remnants(settings, person["id"])
    assert before["store"] and before["lake"] and before["stream"] and before["files"] and before.get("mqtt") == []

    # Erasure asks for the password, and can be cancelled during its grace period
    refused = await client.request("DELETE", "/me", json={"password": "not my password"}, headers=me)
    assert refused.status_code == 403
    for hostile in ({}, {"password": 7}, {"password": "x" * 5000}, {"password": PASSWORD, "extra": 1}):
        assert (await client.request("DELETE", "/me", json=hostile, headers=me)).status_code == 422
    pending = await _ok(await client.request("DELETE", "/me", json={"password": PASSWORD}, headers=me), 202)
    assert pending["due"] > time.time() + 6 * 86_400  # a week to change one's mind
    assert (await _ok(await client.get("/me/erasure", headers=me)))["due"] == pending["due"]
    assert (await client.delete("/me/erasure", headers=me)).status_code == 204
    assert (await client.get("/me/erasure", headers=me)).status_code == 404
    assert (await client.delete("/me/erasure", headers=me)).status_code == 404

    # The grace period ends (now, for the test): the account's timer erases it
    await client.arena.ref(Account, person["id"]).ask(Account.request_erasure, due=time.time())
    for _ in range(600):
        left = await _remnants(settings, person["id"])
        if not any(left.values()):
            break
        await asyncio.sleep(0.2)
    assert left == {name: [] for name in left}

    # `arena privacy verify` says so too, as an operator runs it
    env = {**os.environ, "ARENA_DATABASE_URL": settings.database_url, "ARENA_DATA_DIR": str(settings.data_dir),
           "ARENA_NATS_URL": NATS_URL, "ARENA_REDIS_URL": REDIS_URL, "ARENA_NAMESPACE": settings.namespace,
           "ARENA_MQTT_PASSWORD_FILE": str(settings.mqtt_password_file)}  # fmt: skip
    verified = subprocess.run([sys.executable, "-m", "serve.cli", "privacy", "verify", person["id"]], env=env,
                              capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "clean: nothing names this person" in verified.stdout
    assert all("type=account.erased" in str(path) for path in rows_of(settings.lake_root, person["id"]))  # the notice

    # Pat's tokens died with the account: nothing can write them back anywhere
    assert (await client.post(f"/groups/{group['id']}/join", headers=me)).status_code == 401
    assert (await client.get("/me", headers=me)).status_code == 401

    # Pat is gone for everyone; nobody can sign in as them, and the address is free again
    login = await client.post("/auth/login", json={"email": person["email"], "password": PASSWORD})
    assert login.status_code == 401
    assert (await client.get(f"/users/{person['id']}", headers=robin)).status_code == 404
    feed = (await _ok(await client.get("/feed", headers=robin)))["items"]
    assert all("Pat" not in str(item) for item in feed)
    again = await client.post("/accounts", json={"email": person["email"], "password": PASSWORD, "display_name": "New"})
    assert again.status_code == 201, again.text

    # ... and the others keep theirs: Robin's run, its thread; the club, now Robin's; the race's standings
    run = await _ok(await client.get(f"/workouts/{theirs['id']}", headers=robin))
    assert run["title"] == "Robin's run"
    club = await _ok(await client.get(f"/groups/{group['id']}", headers=robin))
    assert club["owner"] == mate["id"]
    results = (await _ok(await client.get(f"/races/{race_id}/results")))["results"]
    assert [r["place"] for r in results][:2] == [1, 2]
    assert results[1]["user_id"] == mate["id"]
    assert results[0]["user_id"] != person["id"] and "Pat" not in str(results[0])
    board = await _ok(await client.get(f"/challenges/{challenge['id']}", headers=robin))
    assert board["participants"] == 1
    assert device["id"] not in settings.mqtt_password_file.read_text()
