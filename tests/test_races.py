"""Live races through the API: organizers, athletes streaming telemetry, spectators, results."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import time
import uuid

import pytest

from connectors.lake import Lake
from tests.test_api import assert_problem, signup
from tests.test_routes import HOSTILE_ROUTE_IDS, new_route

pytestmark = pytest.mark.ray


async def organizer(client) -> tuple[str, dict]:
    user_id, headers = await signup(client, "Org")
    admin = await _admin(client)  # only an admin grants roles
    granted = await client.put(f"/users/{user_id}/roles", json={"roles": ["athlete", "organizer"]}, headers=admin)
    assert granted.status_code == 200, granted.text
    email = (await client.get("/me", headers=headers)).json()["email"]
    login = await client.post("/auth/login", json={"email": email, "password": "correct horse battery"})
    return user_id, {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _admin(client) -> dict:
    """The settings' admin address (ARENA_ADMIN_EMAILS): registered where it is not yet (a repeat is a
    409) and logged in afresh on every call, since an access token lives minutes and a slow run of the
    suite outlives one."""
    email = "chief@example.com"
    await client.post("/accounts", json={"email": email, "password": "correct horse battery", "display_name": "Chief"})
    login = await client.post("/auth/login", json={"email": email, "password": "correct horse battery"})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _beat(seq: int) -> int:
    return 148 + random.Random(seq).randrange(6)


def run_samples(start: float, seconds: int, pace_s_per_km: float = 300.0, first_seq: int = 0, **extra) -> list[dict]:
    speed = 1000 / pace_s_per_km
    return [
        # a heart rate that varies like one: an exactly periodic one is a replay to fair play
        {
            "seq": first_seq + i,
            "t": start + i,
            "distance": speed * i,
            "speed": speed,
            "hr": _beat(first_seq + i),
            **extra,
        }
        for i in range(seconds)
    ]


async def live_race(client, org_headers, **config) -> str:
    body = {"name": "Sunday 5k", "sport": "run", "kind": "distance", "target_m": 1000, **config}
    created = await client.post("/races", json=body, headers=org_headers)
    assert created.status_code == 201, created.text
    race_id = created.json()["id"]
    assert (await client.post(f"/races/{race_id}/actions/open", headers=org_headers)).json()["status"] == "open"
    return race_id


async def test_only_organizers_create_races_and_bad_settings_are_refused(client):
    _, athlete = await signup(client, "Ath")
    body = {"name": "Nope", "sport": "run", "kind": "distance", "target_m": 5000}
    assert_problem(await client.post("/races", json=body, headers=athlete), 403, "organizers")
    _, org = await organizer(client)
    assert_problem(await client.post("/races", json={**body, "kind": "teleport"}, headers=org), 422)
    assert_problem(await client.post("/races", json={**body, "target_m": -5}, headers=org), 422)
    assert_problem(await client.post("/races", json={**body, "kind": "time"}, headers=org), 409, "duration")
    assert_problem(await client.post("/races", json={**body, "colour": "red"}, headers=org), 422)


async def test_a_distance_race_runs_from_draft_to_final_with_live_results(client):
    org_id, org = await organizer(client)
    race_id = await live_race(client, org)
    athletes = {}
    for name in ("Fast", "Slow", "Cheat"):
        user_id, headers = await signup(client, name)
        joined = await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)
        assert joined.status_code == 201, joined.text
        athletes[name] = (user_id, headers)
    again = await client.post(f"/races/{race_id}/athletes", json={}, headers=athletes["Fast"][1])
    assert again.json() == {"participant": 0}  # joining twice is joining once

    early = await client.post(
        f"/races/{race_id}/telemetry", json={"samples": run_samples(time.time(), 3)}, headers=athletes["Fast"][1]
    )
    assert_problem(early, 409, "only while live")
    # The gun went off ten minutes ago (start_at in the past), so every sample below is already history.
    gun = time.time() - 600
    await client.patch(f"/races/{race_id}", json={"start_at": gun}, headers=org)
    for _ in range(200):
        info = (await client.get(f"/races/{race_id}")).json()
        if info["status"] == "live":
            break
        await asyncio.sleep(0.02)
    assert info["transitions"][-1] == {"status": "live", "at": gun, "by": org_id}

    fast = await client.post(
        f"/races/{race_id}/telemetry", json={"samples": run_samples(gun, 300, 240)}, headers=athletes["Fast"][1]
    )
    assert fast.status_code == 200, fast.text
    assert fast.json()["accepted"] == 300 and fast.json()["finished"] == 1
    slow = run_samples(gun, 200, 360)
    await client.post(f"/races/{race_id}/telemetry", json={"samples": slow}, headers=athletes["Slow"][1])
    duplicate = await client.post(
        f"/races/{race_id}/telemetry", json={"samples": slow[-5:]}, headers=athletes["Slow"][1]
    )
    assert duplicate.json()["duplicates"] == 5 and duplicate.json()["accepted"] == 0
    # a runner at 60 km/h
    cheat = await client.post(
        f"/races/{race_id}/telemetry", json={"samples": run_samples(gun, 60, 60)}, headers=athletes["Cheat"][1]
    )
    assert cheat.json()["flagged"] >= 1

    board = (await client.get(f"/races/{race_id}/leaderboard")).json()
    order = [e["user_id"] for e in board["entries"]]
    assert order[0] == athletes["Fast"][0]
    assert board["entries"][0]["status"] == "finished"
    around = (await client.get(f"/races/{race_id}/leaderboard/around/{athletes['Slow'][0]}?n=1")).json()
    assert athletes["Slow"][0] in [e["user_id"] for e in around["entries"]]

    flags = (await client.get(f"/races/{race_id}/flags", headers=org)).json()
    assert {f["user_id"] for f in flags} == {athletes["Cheat"][0]}
    assert flags[0]["rule"] and flags[0]["evidence"]
    assert_problem(await client.get(f"/races/{race_id}/flags", headers=athletes["Fast"][1]), 403)
    assert_problem(await client.post(f"/races/{race_id}/actions/finalize", headers=org), 409)  # not finished yet
    assert (await client.post(f"/races/{race_id}/actions/end", headers=org)).json()["status"] == "finished"
    assert_problem(await client.post(f"/races/{race_id}/actions/finalize", headers=org), 409, "review")
    decided = await client.post(f"/races/{race_id}/flags/{athletes['Cheat'][0]}/disqualify", headers=org)
    assert decided.status_code == 200
    assert (await client.post(f"/races/{race_id}/actions/finalize", headers=org)).json()["status"] == "final"

    results = (await client.get(f"/races/{race_id}/results")).json()
    assert results["official"]
    statuses = {r["user_id"]: r["status"] for r in results["results"]}
    assert statuses == {athletes["Fast"][0]: "finished", athletes["Slow"][0]: "dnf", athletes["Cheat"][0]: "dsq"}
    table = list(csv.DictReader(io.StringIO((await client.get(f"/races/{race_id}/results.csv")).text)))
    assert table[0]["name"] == "Fast" and table[0]["place"] == "1"

    info = (await client.get(f"/races/{race_id}")).json()
    assert [t["status"] for t in info["transitions"]] == ["draft", "open", "live", "finished", "final"]
    assert info["organizer"] == org_id
    await client.arena.drain()  # the results become workouts in the background
    workouts = (await client.get(f"/users/{athletes['Fast'][0]}/workouts", headers=athletes["Fast"][1])).json()
    assert workouts["items"][0]["source"] == "race" and workouts["items"][0]["distance_m"] >= 1000
    inbox = (await client.get("/notifications", headers=athletes["Fast"][1])).json()
    told = {n["type"]: n["data"] for n in inbox["items"]}  # the result, and the podium's badge
    assert told["race_result"]["place"] == 1 and told["badge"]["badge"] == "podium"
    # Its raw telemetry is in the lake, as it came in (the five samples sent twice, twice).
    with Lake(client.arena.settings.lake_root) as lake:
        sent = lake.sql(
            f"SELECT user_id, count(*), count(DISTINCT seq) FROM telemetry WHERE race = '{race_id}' GROUP BY 1"
        ).fetchall()
    assert {row[0]: row[1:] for row in sent} == {
        athletes["Fast"][0]: (300, 300),
        athletes["Slow"][0]: (205, 200),
        athletes["Cheat"][0]: (60, 60),
    }


async def test_telemetry_is_validated_and_only_athletes_in_the_race_send_it(client):
    _, org = await organizer(client)
    race_id = await live_race(client, org)
    user_id, headers = await signup(client, "Runner")
    _, stranger = await signup(client, "Stranger")
    await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)
    await client.post(f"/races/{race_id}/actions/start", headers=org)
    ok = run_samples(time.time(), 2)
    assert_problem(
        await client.post(f"/races/{race_id}/telemetry", json={"samples": ok}, headers=stranger), 403, "join"
    )
    for bad in (
        {"samples": []},
        {"samples": [{"seq": -1, "t": 1.0}]},
        {"samples": [{"seq": 1, "t": 1.0, "lat": 91}]},
        {"samples": [{"seq": 1, "t": 1.0, "boost": 9}]},
        {"samples": [{"seq": 1, "t": 1.0}] * 10_001},
        {"samples": "lots"},
    ):
        assert (await client.post(f"/races/{race_id}/telemetry", json=bad, headers=headers)).status_code == 422
    for raw in (b'{"samples": [{"seq": 1, "t": 1.0, "distance": NaN}]}', b'{"samples": [{"seq": 1, "t": Infinity}]}'):
        answer = await client.post(
            f"/races/{race_id}/telemetry", content=raw, headers={**headers, "content-type": "application/json"}
        )
        assert answer.status_code == 422, raw
    assert_problem(
        await client.post(f"/races/{uuid.uuid4().hex}/telemetry", json={"samples": ok}, headers=headers), 404
    )
    assert (await client.post(f"/races/{race_id}/telemetry", json={"samples": ok}, headers=headers)).json()[
        "accepted"
    ] == 2


async def test_only_the_organizer_runs_the_race_and_drafts_are_hidden(client):
    _, org = await organizer(client)
    created = await client.post(
        "/races", json={"name": "Secret", "sport": "ride", "kind": "time", "duration_s": 600}, headers=org
    )
    race_id = created.json()["id"]
    _, other = await signup(client, "Other")
    assert_problem(await client.get(f"/races/{race_id}", headers=other), 404)
    assert_problem(await client.post(f"/races/{race_id}/actions/open", headers=other), 404)  # a draft is hidden
    assert_problem(await client.post(f"/races/{race_id}/actions/start", headers=org), 409, "cannot become live")
    assert (await client.post(f"/races/{race_id}/actions/open", headers=org)).json()["status"] == "open"
    assert_problem(await client.post(f"/races/{race_id}/actions/start", headers=other), 403, "organizer")
    assert (await client.post(f"/races/{race_id}/actions/cancel", headers=org)).json()["status"] == "cancelled"
    assert_problem(await client.post(f"/races/{race_id}/actions/open", headers=org), 409)


async def test_a_thousand_spectators_cost_one_race_call_per_tick(client):
    _, org = await organizer(client)
    race_id = await live_race(client, org)
    user_id, headers = await signup(client, "Runner")
    await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)
    spectators = client.arena.spectators
    await spectators.view(race_id)
    before = spectators.refreshes
    views = await asyncio.gather(*(spectators.view(race_id) for _ in range(1_000)))
    assert spectators.refreshes - before <= 1
    assert all(v.place(user_id) == 1 for v in views)
    answers = await asyncio.gather(*(client.get(f"/races/{race_id}/leaderboard?n=10") for _ in range(50)))
    assert all(a.status_code == 200 and a.json()["entries"][0]["user_id"] == user_id for a in answers)
    assert spectators.refreshes - before <= 2
    assert_problem(await client.get(f"/races/{race_id}/leaderboard?category=elite"), 404, "category")
    assert_problem(await client.get(f"/races/{uuid.uuid4().hex}/leaderboard"), 404)


async def test_the_leaderboard_is_cacheable_for_a_second_and_answers_304_to_its_etag(client):
    _, org = await organizer(client)
    race_id = await live_race(client, org)
    _, headers = await signup(client, "Runner")
    await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)
    anonymous = await client.get(f"/races/{race_id}/leaderboard?n=10")
    assert anonymous.status_code == 200 and anonymous.json()["entries"][0]["name"] == "Runner"
    assert anonymous.headers["cache-control"] == "public, max-age=1"  # a CDN may keep it a tick
    assert "Authorization" in anonymous.headers["vary"]
    tag = anonymous.headers["etag"]
    again = await client.get(f"/races/{race_id}/leaderboard?n=10", headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    listed = await client.get(f"/races/{race_id}/leaderboard?n=10", headers={"If-None-Match": f'"x", W/{tag}'})
    assert listed.status_code == 304
    stale = await client.get(f"/races/{race_id}/leaderboard?n=10", headers={"If-None-Match": '"stale"'})
    assert stale.status_code == 200 and stale.json() == anonymous.json()
    signed_in = await client.get(f"/races/{race_id}/leaderboard?n=10", headers=headers)
    assert signed_in.headers["cache-control"] == "private, max-age=1"  # it may show whom the caller follows
    hostile = await client.get(f"/races/{race_id}/leaderboard", headers={"If-None-Match": "\"" * 2000})
    assert hostile.status_code == 200


async def test_the_live_stream_sends_the_leaderboard_and_ends_with_the_race(client):
    _, org = await organizer(client)
    race_id = await live_race(client, org, categories=["open", "masters"])
    _, headers = await signup(client, "Runner")
    await client.post(f"/races/{race_id}/athletes", json={"category": "masters"}, headers=headers)
    assert_problem(
        await client.post(
            f"/races/{race_id}/athletes", json={"category": "elite"}, headers=(await signup(client, "X"))[1]
        ),
        409,
        "category",
    )
    await client.post(f"/races/{race_id}/actions/cancel", headers=org)
    stream = await client.get(f"/races/{race_id}/live?category=masters")
    assert stream.headers["content-type"].startswith("text/event-stream")
    lines = stream.text.splitlines()
    assert "event: status" in lines and 'data: {"status": "cancelled"' in stream.text
    events = [line for line in lines if line.startswith("data:")]
    board = json.loads(events[-1][5:])
    assert board["status"] == "cancelled" and [e["name"] for e in board["entries"]] == ["Runner"]


async def test_the_friends_leaderboard_shows_me_and_whom_i_follow_in_race_order(client):
    _, org = await organizer(client)
    race_id = await live_race(client, org)
    me, my_headers = await signup(client, "Me")
    friend, friend_headers = await signup(client, "Friend")
    _, stranger_headers = await signup(client, "Stranger")
    for headers in (my_headers, friend_headers, stranger_headers):
        await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)
    await client.post(f"/users/{friend}/follow", headers=my_headers)
    entries = (await client.get(f"/races/{race_id}/leaderboard/friends", headers=my_headers)).json()["entries"]
    assert {e["user_id"] for e in entries} == {me, friend}
    assert [e["place"] for e in entries] == sorted(e["place"] for e in entries)


def _link(route: dict) -> dict:
    return {field: route[field] for field in ("id", "name", "sport", "distance_m", "elevation_gain_m")}


async def test_a_race_on_a_route_runs_its_distance_and_keeps_its_link_when_the_route_goes_private(client):
    _, org = await organizer(client)
    _, ath = await signup(client, "Ath")
    mine, theirs = await new_route(client, org), await new_route(client, ath)
    metres = mine["distance_m"]
    body = {"name": "Harbour run", "sport": "run", "kind": "distance", "route_id": mine["id"]}
    created = await client.post("/races", json=body, headers=org)
    assert created.status_code == 201, created.text
    race = created.json()
    assert race["linked_route"] == _link(mine) and race["target_m"] == metres
    track = (await client.get(f"/routes/{mine['id']}", headers=org)).json()["points"]
    assert race["route"] == [point[:2] for point in track], "the organizer's own route is the course"
    assert (await client.post(f"/races/{race['id']}/actions/open", headers=org)).json()["status"] == "open"
    assert (await client.get(f"/races/{race['id']}")).json()["linked_route"] == _link(mine), "spectators see it"

    near = await client.post("/races", json={**body, "target_m": round(metres * 1.01)}, headers=org)
    assert near.status_code == 201 and near.json()["target_m"] == round(metres * 1.01), near.text
    assert_problem(await client.post("/races", json={**body, "target_m": metres * 1.2}, headers=org), 409, "route")
    ride = await new_route(client, org, sport="ride")
    assert_problem(await client.post("/races", json={**body, "route_id": ride["id"]}, headers=org), 409, "ride")
    for visibility in ("private", "followers"):
        hidden = await new_route(client, org, visibility=visibility)
        answer = await client.post("/races", json={**body, "route_id": hidden["id"]}, headers=org)
        assert_problem(answer, 422, "make the route public")
    unseen = await new_route(client, ath, visibility="private")
    for route_id in (unseen["id"], "nosuchroute"):
        assert_problem(await client.post("/races", json={**body, "route_id": route_id}, headers=org), 422, "no route")
    for route_id in HOSTILE_ROUTE_IDS:
        assert_problem(await client.post("/races", json={**body, "route_id": route_id}, headers=org), 422)
        assert_problem(await client.patch(f"/races/{race['id']}", json={"route_id": route_id}, headers=org), 422)

    # Another athlete's public route: linked, its distance taken, but not copied as the course.
    plain = (await client.post("/races", json={**body, "route_id": None, "target_m": 800}, headers=org)).json()
    changed = await client.patch(f"/races/{plain['id']}", json={"route_id": theirs["id"]}, headers=org)
    assert changed.status_code == 200, changed.text
    linked = changed.json()
    assert linked["linked_route"] == _link(theirs) and linked["target_m"] == theirs["distance_m"]
    assert linked["route"] is None
    for change in ({"visibility": "private"}, None):  # made private, then deleted: the link stays, the track hides
        if change is None:
            assert (await client.delete(f"/routes/{theirs['id']}", headers=ath)).status_code == 204
        else:
            assert (await client.patch(f"/routes/{theirs['id']}", json=change, headers=ath)).status_code == 200
        assert (await client.get(f"/races/{plain['id']}", headers=org)).json()["linked_route"] == _link(theirs)
        assert_problem(await client.get(f"/routes/{theirs['id']}", headers=org), 404)
        assert_problem(await client.get(f"/routes/{theirs['id']}.gpx", headers=org), 404)
