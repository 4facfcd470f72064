"""Segments through the HTTP API over real hosts, relay and store: create from a workout, efforts matched
by the engine's reactions, leaderboards, records, privacy, deletion, and bad input (401/403/404/409/422)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from actors.athlete import age_group
from tests.test_groups_api import problem, signup

pytestmark = pytest.mark.ray

LAT0, LON0 = 45.2, 5.7
STEP_DEG = 0.0003  # 33 m north between fixes


def _gpx(step_s: float, day: int, lon: float, points: int = 140) -> bytes:
    """A ride north from (LAT0, LON0): a fix every 33 m, ``step_s`` seconds apart."""
    # dated days ago, in order of ``day``: inside the Local Legend's 90 days whenever the suite runs
    start = datetime.now(UTC).replace(hour=7, minute=0, second=0, microsecond=0) - timedelta(days=10 - day)
    rows = "".join(
        f'<trkpt lat="{LAT0 + i * STEP_DEG:.6f}" lon="{lon:.6f}"><ele>200</ele>'
        f"<time>{(start + timedelta(seconds=step_s * i)).strftime('%Y-%m-%dT%H:%M:%SZ')}</time></trkpt>"
        for i in range(points)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><type>cycling</type><trkseg>{rows}</trkseg></trk></gpx>"
    ).encode()


async def _import(client, who: dict, step_s: float, day: int, visibility: str = "public", lon: float = LON0) -> str:
    files = {"file": ("ride.gpx", _gpx(step_s, day, lon), "application/gpx+xml")}
    answer = await client.post(f"/workouts/import?visibility={visibility}", files=files, headers=who["headers"])
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def _board_when(client, who: dict, sid: str, athletes: int) -> dict:
    """The overall board once the relay has carried the reactions' chain (recorded, tracked, effort) through:
    each hop is a reaction of its own, so one drain may end between hops."""
    for _ in range(5):
        await client.arena.drain()
        board = (await client.get(f"/segments/{sid}/leaderboard", headers=who["headers"])).json()
        if len(board["rows"]) == athletes:
            break
    return board


@pytest.fixture
async def world(client):
    ann, bob, cat = [await signup(client, name) for name in ("Ann", "Bob", "Cat")]
    lon = LON0 + random.uniform(0.1, 2.0)  # a road of its own: segments persist across the module's tests
    workout = await _import(client, ann, 4.0, 1, lon=lon)
    answer = await client.post(
        "/segments",
        json={"workout_id": workout, "name": "The climb", "from_m": 500, "to_m": 2500},
        headers=ann["headers"],
    )
    assert answer.status_code == 201, answer.text
    return {"ann": ann, "bob": bob, "cat": cat, "workout": workout, "segment": answer.json(), "lon": lon}


async def test_efforts_are_matched_ranked_and_taken_back(client, world):
    ann, bob, cat, segment = world["ann"], world["bob"], world["cat"], world["segment"]
    assert 1_900 < segment["length_m"] < 2_100 and segment["name"] == "The climb"
    lon = world["lon"]
    await _import(client, ann, 4.0, 2, lon=lon)  # ann again, same pace
    bob_ride = await _import(client, bob, 3.0, 3, lon=lon)  # faster
    await _import(client, cat, 2.0, 4, visibility="private", lon=lon)  # fastest, but private
    await _import(client, ann, 4.5, 5, lon=lon)  # ann once more, slower: the most efforts (the Local Legend)
    sid = segment["id"]

    board = await _board_when(client, cat, sid, 3)  # cat's private effort counts for cat
    board = (await client.get(f"/segments/{sid}/leaderboard", headers=ann["headers"])).json()
    assert [row["athlete"] for row in board["rows"]] == [bob["id"], ann["id"]]
    assert board["kom"]["athlete"] == bob["id"]
    expected = segment["length_m"] / (33.36 / 3.0)
    assert board["rows"][0]["elapsed_s"] == pytest.approx(expected, rel=0.03)
    mine = (await client.get(f"/segments/{sid}/leaderboard", headers=cat["headers"])).json()
    assert mine["rows"][0]["athlete"] == cat["id"] and mine["me"]["rank"] == 1  # cat sees her private effort
    legend = (await client.get(f"/segments/{sid}/leaderboard?board=legend", headers=bob["headers"])).json()
    # Ann rode it most: twice after the segment was made, and once before (the segment's backfill finds it,
    # and live matching too when its track reached the shard after the segment: counted once either way)
    assert legend["local_legend"]["athlete"] == ann["id"] and legend["local_legend"]["efforts"] == 3
    friends = (await client.get(f"/segments/{sid}/leaderboard?board=friends", headers=ann["headers"])).json()
    assert [row["athlete"] for row in friends["rows"]] == [ann["id"]]  # ann follows nobody
    records = (await client.get("/me/segments/records", headers=bob["headers"])).json()["items"]
    assert [(r["segment_id"], r["workout_id"]) for r in records] == [(sid, bob_ride)]

    deleted = await client.delete(f"/workouts/{bob_ride}", headers=bob["headers"])
    assert deleted.status_code == 204
    board = await _board_when(client, ann, sid, 1)
    assert [row["athlete"] for row in board["rows"]] == [ann["id"]]
    assert (await client.get("/me/segments/records", headers=bob["headers"])).json()["items"] == []

    near = (await client.get(f"/segments?lat={LAT0}&lon={lon}&radius_km=5", headers=bob["headers"])).json()
    assert sid in [item["id"] for item in near["items"]]
    far = (await client.get(f"/segments?lat={LAT0 + 1}&lon={lon}&radius_km=5", headers=bob["headers"])).json()
    assert sid not in [item["id"] for item in far["items"]]


async def test_who_may_do_what_and_bad_input(client, world):
    ann, bob, workout, sid = world["ann"], world["bob"], world["workout"], world["segment"]["id"]
    body = {"workout_id": workout, "name": "Again", "from_m": 500, "to_m": 2500}
    for method, path in (
        ("POST", "/segments"),
        ("GET", f"/segments/{sid}"),
        ("GET", f"/segments/{sid}/leaderboard"),
        ("GET", "/me/segments/records"),
        ("GET", f"/segments?lat={LAT0}&lon={LON0}"),
    ):
        problem(await client.request(method, path, json=body if method == "POST" else None), 401)
    problem(await client.post("/segments", json=body, headers=bob["headers"]), 403, "your own")
    private = await _import(client, ann, 4.0, 9, visibility="private", lon=LON0 - 1)
    problem(await client.post("/segments", json={**body, "workout_id": private}, headers=bob["headers"]), 404)
    problem(await client.post("/segments", json=body, headers=ann["headers"]), 409, "duplicate")
    problem(await client.get("/segments/nope", headers=bob["headers"]), 404)
    problem(await client.get("/segments/nope/leaderboard", headers=bob["headers"]), 404)
    for bad in (
        {**body, "from_m": 2500, "to_m": 500},
        {**body, "to_m": 600},  # 100 m: too short
        {**body, "to_m": 99_999},  # past the track's end
        {**body, "name": ""},
        {**body, "name": "x" * 101},
        {**body, "workout_id": "../etc"},
        {**body, "extra": 1},
        {**body, "from_m": -1},
        {**body, "to_m": 1e308},
    ):
        problem(await client.post("/segments", json=bad, headers=ann["headers"]), 422)
    raw = b'{"workout_id": "%s", "name": "n", "from_m": NaN, "to_m": 900}' % workout.encode()
    answer = await client.post("/segments", content=raw, headers={**ann["headers"], "content-type": "application/json"})
    assert answer.status_code in (400, 422), answer.text
    for query in ("lat=91&lon=0", "lat=0&lon=181", "lat=nan&lon=0", "lat=0&lon=0&radius_km=500", "lat=1e999&lon=0"):
        problem(await client.get(f"/segments?{query}", headers=ann["headers"]), 422)
    problem(await client.get(f"/segments/{sid}/leaderboard?board=worst", headers=ann["headers"]), 422)
    assert math.isfinite(world["segment"]["length_m"])


async def _backfilled(client, who: dict, sid: str) -> dict:
    """The segment once its backfill has ended and the relay has carried the efforts it found to the boards."""
    for _ in range(30):
        await client.arena.drain()
        segment = (await client.get(f"/segments/{sid}", headers=who["headers"])).json()
        if segment["backfill"]["state"] not in ("listing", "running"):
            break
    await client.arena.drain()
    return segment


async def _seen_by(client, who: dict, sid: str) -> dict:
    """What ``who`` sees of a segment's efforts: whose, from which workouts, how many; not the times."""
    overall = (await client.get(f"/segments/{sid}/leaderboard", headers=who["headers"])).json()
    legend = (await client.get(f"/segments/{sid}/leaderboard?board=legend", headers=who["headers"])).json()
    records = (await client.get("/me/segments/records", headers=who["headers"])).json()["items"]
    return {
        "overall": [(row["athlete"], row["workout_id"]) for row in overall["rows"]],
        "legend": [(row["athlete"], row["efforts"]) for row in legend["rows"]],
        "record": [(r["workout_id"], r["efforts_kept"]) for r in records if r["segment_id"] == sid],
    }


async def test_a_new_segment_is_backfilled_with_what_live_matching_would_have_found(client):
    ann, bob, cat, dan = [await signup(client, name) for name in ("Ann", "Bob", "Cat", "Dan")]
    lon = LON0 + random.uniform(2.5, 4.0)  # a road of its own
    zone = {"label": "Home", "lat": LAT0, "lon": lon, "radius_m": 1_000}  # hides where the segments start
    assert (await client.post("/me/privacy-zones", json=zone, headers=dan["headers"])).status_code == 201
    first = await _import(client, ann, 4.0, 1, lon=lon)
    made = await client.post(
        "/segments", json={"workout_id": first, "name": "Live", "from_m": 500, "to_m": 2500}, headers=ann["headers"]
    )
    assert made.status_code == 201, made.text
    live = made.json()["id"]
    assert (await _backfilled(client, ann, live))["backfill"]["state"] == "done"
    await _import(client, ann, 4.0, 2, lon=lon)
    bob_ride = await _import(client, bob, 3.0, 3, lon=lon)
    await _import(client, cat, 2.0, 4, visibility="private", lon=lon)
    await _import(client, dan, 2.5, 5, lon=lon)
    await _board_when(client, cat, live, 3)

    made = await client.post(  # the same start, 200 m shorter: another segment, made after every ride on it
        "/segments", json={"workout_id": first, "name": "Later", "from_m": 500, "to_m": 2300}, headers=ann["headers"]
    )
    assert made.status_code == 201, made.text
    assert made.json()["backfill"]["state"] in ("listing", "running", "done")
    later = made.json()["id"]
    job = (await _backfilled(client, bob, later))["backfill"]
    assert job["state"] == "done" and job["run"] == 1 and job["chunks_done"] == job["chunks"]
    # every stored workout checked (this test's five, and the module's others), four efforts: ann twice, bob,
    # cat; dan's is hidden by his privacy zone
    assert job["checked"] == job["workouts"] >= 5 and job["efforts"] == 4
    for who in (ann, bob, cat, dan):
        assert await _seen_by(client, who, later) == await _seen_by(client, who, live)
    seen = await _seen_by(client, ann, later)
    assert [athlete for athlete, _ in seen["overall"]] == [bob["id"], ann["id"]]  # cat's private effort: hers only
    assert seen["legend"] == [(ann["id"], 2), (bob["id"], 1)] and seen["record"][0][1] == 2
    assert (await _seen_by(client, cat, later))["overall"][0][0] == cat["id"]
    assert (await _seen_by(client, dan, later))["record"] == []  # his ride started it inside his zone
    assert (await _seen_by(client, bob, later))["overall"][0] == (bob["id"], bob_ride)

    # An operator runs it again: it checks everything again and counts nothing twice.
    before = {who["id"]: await _seen_by(client, who, later) for who in (ann, bob, cat, dan)}
    client.arena.settings = client.arena.settings.model_copy(update={"operator_token": SecretStr("op-" + "s" * 40)})
    operator = {"Authorization": "Bearer op-" + "s" * 40}
    again = await client.post(f"http://arena/ops/segments/{later}/backfill", headers=operator)
    assert again.status_code == 202 and again.json()["run"] == 2, again.text
    job = (await _backfilled(client, bob, later))["backfill"]
    assert job["state"] == "done" and job["run"] == 2 and job["efforts"] == 4
    assert {who["id"]: await _seen_by(client, who, later) for who in (ann, bob, cat, dan)} == before
    progress = await client.get(f"http://arena/ops/segments/{later}/backfill", headers=operator)
    assert progress.json() == job

    for headers in ({}, bob["headers"], {"Authorization": "Bearer op-wrong"}):
        problem(await client.post(f"http://arena/ops/segments/{later}/backfill", headers=headers), 403, "operators")
        problem(await client.get(f"http://arena/ops/segments/{later}/backfill", headers=headers), 403, "operators")
    problem(await client.post("http://arena/ops/segments/nope/backfill", headers=operator), 404)
    for bad in ("bad!id", "x" * 65, "%00"):
        problem(await client.post(f"http://arena/ops/segments/{bad}/backfill", headers=operator), 422)


async def test_boards_by_sex_and_age_group_and_the_profile_fields_they_come_from(client, world):
    ann, sid = world["ann"], world["segment"]["id"]  # ann gave neither sex nor birth year
    wen, max_ = [await signup(client, name) for name in ("Wen", "Max")]
    for who, profile in ((wen, {"sex": "women", "birth_year": 1990}), (max_, {"sex": "men", "birth_year": 1960})):
        answer = await client.patch("/me", json={"profile": profile}, headers=who["headers"])
        assert answer.status_code == 200 and answer.json()["profile"]["birth_year"] == profile["birth_year"]
    this_year = datetime.now(UTC).year
    for bad in ({"sex": "female"}, {"sex": ""}, {"sex": 1}, {"birth_year": 1899}, {"birth_year": this_year},
                {"birth_year": "1990"}, {"birth_year": True}, {"birth_year": 1990.5}, {"birth_year": 10**30},
                {"age": 35}):  # fmt: skip
        problem(await client.patch("/me", json={"profile": bad}, headers=wen["headers"]), 422)
    viewers: tuple[dict, ...] = (max_["headers"], {})  # another athlete, or nobody signed in
    for viewer in viewers:
        profile = (await client.get(f"/users/{wen['id']}", headers=viewer)).json()["profile"]
        assert profile["display_name"] == "Wen" and "sex" not in profile and "birth_year" not in profile
    assert (await client.get("/me", headers=wen["headers"])).json()["profile"]["sex"] == "women"

    await _import(client, wen, 3.0, 6, lon=world["lon"])  # faster than ann
    await _import(client, max_, 3.5, 7, lon=world["lon"])
    board = await _board_when(client, ann, sid, 3)
    assert [row["athlete"] for row in board["rows"]] == [wen["id"], max_["id"], ann["id"]]
    women = (await client.get(f"/segments/{sid}/leaderboard?sex=women", headers=ann["headers"])).json()
    assert [row["athlete"] for row in women["rows"]] == [wen["id"]] and women["qom"]["athlete"] == wen["id"]
    men = (await client.get(f"/segments/{sid}/leaderboard?sex=men&board=year", headers=ann["headers"])).json()
    assert [row["athlete"] for row in men["rows"]] == [max_["id"]]
    ridden = datetime.now(UTC) - timedelta(days=10 - 6)  # wen's ride, as _gpx dates it
    group = age_group(1990, ridden.timestamp())
    by_age = (await client.get(f"/segments/{sid}/leaderboard?age_group={group}", headers=max_["headers"])).json()
    assert [row["athlete"] for row in by_age["rows"]] == [wen["id"]]
    assert "sex" not in by_age["rows"][0] and "age_group" not in by_age["rows"][0]
    segment = (await client.get(f"/segments/{sid}", headers=max_["headers"])).json()
    assert segment["kom"]["athlete"] == wen["id"] and segment["qom"]["athlete"] == wen["id"]  # KOM: the fastest
    for query in ("sex=female", "sex=unknown", "age_group=75+", "age_group=35"):
        problem(await client.get(f"/segments/{sid}/leaderboard?{query}", headers=ann["headers"]), 422)
