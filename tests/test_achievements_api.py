"""Achievements through the API on a running Arena: levels, points and badges as a profile's privacy
allows, a race's podium badge after it is made final, a friend's badge notified unless muted."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest

from tests.test_api import assert_problem, signup
from tests.test_export import exported_archive
from tests.test_races import live_race, organizer, run_samples

pytestmark = pytest.mark.ray

DAY = 86_400


def _day(days_ago: int, hour: int = 12) -> str:
    midnight = (int(time.time()) // DAY - days_ago) * DAY
    return datetime.fromtimestamp(midnight + hour * 3600, UTC).isoformat()


async def _streak(client, headers) -> None:
    """Seven days in a row, by hand: a 7-day streak (hand-typed workouts count for streaks, at half points)."""
    for days_ago in range(8, 1, -1):
        body = {"sport": "walk", "start": _day(days_ago), "duration_s": 1800, "distance_m": 3000}
        assert (await client.post("/workouts", json=body, headers=headers)).status_code == 201
    assert await client.arena.drain()


async def test_achievements_show_as_the_profile_allows_and_friends_hear_of_a_badge_unless_muted(client):
    ana, ana_h = await signup(client, "Ana")
    fan, fan_h = await signup(client, "Fan")
    quiet, quiet_h = await signup(client, "Quiet")
    stranger, stranger_h = await signup(client, "Stranger")
    for headers in (fan_h, quiet_h):
        assert (await client.post(f"/users/{ana}/follow", headers=headers)).status_code < 300
    muted = await client.put("/notifications/mutes", json={"muted": ["friend_badge"]}, headers=quiet_h)
    assert muted.json() == {"muted": ["friend_badge"]}
    assert (await client.get("/notifications/mutes", headers=quiet_h)).json()["muted"] == ["friend_badge"]

    await _streak(client, ana_h)
    mine = (await client.get("/me/achievements", headers=ana_h)).json()
    assert [b["id"] for b in mine["badges"]] == ["streak_7"] and mine["badges"][0]["title"] == "7-day streak"
    assert mine["points"] > 0 and mine["level"] == 1 and mine["next_level_points"] == 100
    told = (await client.get("/notifications", headers=fan_h)).json()["items"]
    assert [(n["type"], n["data"]["badge"], n["data"]["user_id"]) for n in told] == [("friend_badge", "streak_7", ana)]
    assert told[0]["data"]["user_name"] == "Ana"
    assert (await client.get("/notifications", headers=quiet_h)).json()["items"] == []  # muted
    exported = json.loads((await exported_archive(client, ana_h)).read("achievements.json"))  # data portability
    assert exported["badges"] == mine["badges"] and exported["time_zone"] is None
    own = [n["type"] for n in (await client.get("/notifications", headers=ana_h)).json()["items"]]
    assert own == ["badge", "follower", "follower"]

    # Public: anyone sees them; private: followers and the athlete only; blocked or unknown: 404.
    assert (await client.get(f"/users/{ana}/achievements")).json()["badges"] == mine["badges"]
    await client.patch("/me", json={"private": True}, headers=ana_h)
    assert (await client.get(f"/users/{ana}/achievements", headers=fan_h)).json()["points"] == mine["points"]
    assert (await client.get(f"/users/{ana}/achievements", headers=ana_h)).status_code == 200
    assert_problem(await client.get(f"/users/{ana}/achievements", headers=stranger_h), 403, "private")
    assert_problem(await client.get(f"/users/{ana}/achievements"), 403, "private")
    assert (await client.put(f"/users/{stranger}/block", headers=ana_h)).status_code == 204
    assert_problem(await client.get(f"/users/{ana}/achievements", headers=stranger_h), 404)
    assert_problem(await client.get("/users/nobody-at-all/achievements", headers=fan_h), 404)
    assert fan != quiet

    # A new level: the athlete hears of it, their followers do not. Both the badge and the level come
    # from Ana's achievements, and each reaches her inbox (applied-event marks are per event type).
    long_run = {"sport": "run", "start": _day(1), "duration_s": 3 * 3600, "distance_m": 36_000}
    assert (await client.post("/workouts", json=long_run, headers=ana_h)).status_code == 201
    assert await client.arena.drain()
    assert (await client.get("/me/achievements", headers=ana_h)).json()["level"] == 2
    own = [
        n
        for n in (await client.get("/notifications", headers=ana_h)).json()["items"]
        if n["type"] != "training_warning"
    ]  # three hours after a week of walks: her load jumped (docs/training.md)
    assert [n["type"] for n in own] == ["level", "badge", "follower", "follower"]
    assert own[0]["data"]["level"] == 2 and own[0]["data"]["points"] >= 100
    assert [n["type"] for n in (await client.get("/notifications", headers=fan_h)).json()["items"]] == ["friend_badge"]


async def test_the_routes_refuse_the_unauthorized_and_the_malformed(client):
    _, headers = await signup(client, "Vera")
    for method, path, body in (("GET", "/me/achievements", None), ("GET", "/me/achievements/settings", None),
                               ("PUT", "/me/achievements/settings", {}), ("PUT", "/notifications/mutes", {"muted": []}),
                               ("GET", "/notifications/mutes", None)):  # fmt: skip
        assert_problem(await client.request(method, path, json=body), 401)
    for body in ({"muted": ["everything"]}, {"muted": ["badge"] * 50}, {"muted": "badge"}, {"mute": []}, []):
        assert_problem(await client.put("/notifications/mutes", json=body, headers=headers), 422)
    for body in ({"max_hr": 400}, {"max_hr": 180, "rest_hr": 170}, {"rest_hr": 50}, {"max_hr": "fast"}, {"x": 1}):
        assert_problem(await client.put("/me/achievements/settings", json=body, headers=headers), 422)
    assert_problem(await client.get("/users/" + "x" * 65 + "/achievements"), 422)
    bad_zone = await client.patch("/me", json={"profile": {"time_zone": "Moon/Tranquility"}}, headers=headers)
    assert "time zone" in assert_problem(bad_zone, 422)["errors"][0]["msg"]

    refused = await client.put("/me/achievements/settings", json={"max_hr": 188, "rest_hr": 48}, headers=headers)
    assert_problem(refused, 409, "consent")  # heart rates are health data
    version = (await client.get("/consents")).json()["health"]["version"]
    await client.put("/me/consents/health", json={"given": True, "version": version}, headers=headers)
    put = await client.put("/me/achievements/settings", json={"max_hr": 188, "rest_hr": 48}, headers=headers)
    assert put.json() == {"time_zone": None, "heart": {"max_hr": 188, "rest_hr": 48}}
    await client.patch("/me", json={"profile": {"time_zone": "Europe/Paris"}}, headers=headers)
    assert (await client.get("/me/achievements/settings", headers=headers)).json()["time_zone"] == "Europe/Paris"
    catalogue = (await client.get("/badges")).json()["items"]
    assert {"first_5k", "100k_month", "streak_7", "personal_record", "podium", "challenge_completed",
            "group_event_attended"} == {b["id"] for b in catalogue}  # fmt: skip


async def test_a_race_podium_badge_appears_once_the_race_is_final(client):
    _, org = await organizer(client)
    race_id = await live_race(client, org, capacity=10)  # a small race: on the shared hosts
    runners = [await signup(client, name) for name in ("Winner", "Runner")]
    for _, headers in runners:
        assert (await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)).status_code == 201
    gun = time.time() - 600
    await client.patch(f"/races/{race_id}", json={"start_at": gun}, headers=org)
    for _ in range(200):
        if (await client.get(f"/races/{race_id}")).json()["status"] == "live":
            break
        await asyncio.sleep(0.02)
    for (_, headers), pace in zip(runners, (240, 300), strict=True):
        sent = await client.post(f"/races/{race_id}/telemetry", json={"samples": run_samples(gun, 320, pace)},
                                 headers=headers)  # fmt: skip
        assert sent.json()["finished"] == 1, sent.text
    assert (await client.post(f"/races/{race_id}/actions/end", headers=org)).status_code == 200
    winner_h = runners[0][1]
    assert (await client.get("/me/achievements", headers=winner_h)).json()["badges"] == []  # not final yet
    assert (await client.post(f"/races/{race_id}/actions/finalize", headers=org)).json()["status"] == "final"
    assert await client.arena.drain()
    for _, headers in runners:
        mine = (await client.get("/me/achievements", headers=headers)).json()
        assert [(b["id"], b["cause"]) for b in mine["badges"]] == [("podium", race_id)]
        assert mine["points"] > 0 and mine["recent"][0]["workout_id"].startswith(race_id)
