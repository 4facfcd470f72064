"""Domain events through the API: a workout reaches the followers' feeds through the relay, and
an operator sees the consumers, their lag and the dead letters (`/ops/events`, `/metrics`)."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

pytestmark = pytest.mark.ray

TOKEN = "op-" + "e" * 40


async def _user(client, name: str) -> dict:
    email = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
    created = await client.post(
        "/accounts", json={"email": email, "password": "correct horse battery", "display_name": name}
    )
    assert created.status_code == 201, created.text
    token = (await client.post("/auth/login", json={"email": email, "password": "correct horse battery"})).json()
    return {"id": created.json()["id"], "headers": {"Authorization": f"Bearer {token['access_token']}"}}


@pytest.fixture
async def operator(client):
    client.arena.settings = client.arena.settings.model_copy(update={"operator_token": SecretStr(TOKEN)})
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_a_workout_reaches_followers_through_the_relay_and_an_operator_sees_the_consumers(client, operator):
    star, fan, other = await _user(client, "Star"), await _user(client, "Fan"), await _user(client, "Other")
    assert (await client.post(f"/users/{star['id']}/follow", headers=fan["headers"])).status_code in (200, 201)
    workout = {"sport": "run", "start": "2026-11-20T07:00:00Z", "duration_s": 1500, "distance_m": 5000}
    assert (await client.post("/workouts", json=workout, headers=star["headers"])).status_code == 201
    private = {**workout, "start": "2026-11-21T07:00:00Z", "visibility": "private"}
    assert (await client.post("/workouts", json=private, headers=star["headers"])).status_code == 201
    assert await client.arena.drain()

    feed = (await client.get("/feed", headers=fan["headers"])).json()["items"]
    assert [item["owner"] for item in feed] == [star["id"]], "the follower has the public workout, once"
    assert (await client.get("/feed", headers=other["headers"])).json()["items"] == []

    # The lake has both workouts (the private one too: the lake is the platform's, not a feed).
    from connectors.lake import Lake

    with Lake(client.arena.settings.lake_root) as lake:
        rows = lake.sql(
            "SELECT owner, visibility FROM workouts WHERE owner = ? ORDER BY start", [star["id"]]
        ).fetchall()
    assert rows == [(star["id"], "public"), (star["id"], "private")]

    assert (await client.get("http://arena/ops/events")).status_code == 403  # not loopback, no token
    status = (await client.get("http://arena/ops/events", headers=operator)).json()
    consumers = status["consumers"]
    assert {"feed.on_workout", "account.on_race_result", "workout.on_race_result", "inbox.on_race_result"} <= set(
        consumers
    )
    assert consumers["feed.on_workout"]["lag"] == 0 and status["last_position"] >= 2
    assert (await client.get("http://arena/ops/events/dead-letters", headers=operator)).json() == {"items": []}
    replayed = await client.post(
        "http://arena/ops/events/dead-letters/replay?subscription=feed.on_workout", headers=operator
    )
    assert replayed.json() == {"replayed": 0, "kept": 0}
    metrics = (await client.get("http://arena/metrics", headers=operator)).text
    assert 'arena_relay_lag_events{consumer="feed.on_workout"} 0.0' in metrics and "arena_relay_up 1.0" in metrics
    assert 'arena_relay_lag_events{consumer="stream:lake"} 0.0' in metrics
    assert 'arena_lake_rows{table="workout.recorded"}' in metrics


@pytest.mark.parametrize("subscription", ["../etc", "feed", "x" * 300, "feed.on_workout;drop", "Feed.On"])
async def test_a_hostile_subscription_name_is_refused(client, operator, subscription):
    answer = await client.get(
        "http://arena/ops/events/dead-letters", params={"subscription": subscription}, headers=operator
    )
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("application/problem+json")
