"""Privacy zones on the API (docs/privacy.md): others never see a track's start or end near the places an
athlete chose; the owner sees everything."""

from __future__ import annotations

import pytest

from engine.codec import unpack
from engine.privacy_zones import _distance_m
from loadtest.gpx import synthetic_gpx
from persistence import open_store
from tests.test_groups_api import signup

pytestmark = pytest.mark.ray

HOME = (48.85, 2.35)  # where synthetic_gpx starts; it heads north, 33 m a fix, for 4 km


async def test_others_see_a_track_only_beyond_the_owners_zones_and_the_owner_sees_it_whole(client):
    owner, friend = await signup(client, "Homebody"), await signup(client, "Friend")
    await client.post(f"/users/{owner['id']}/follow", headers=friend["headers"])
    added = await client.post("/me/privacy-zones", json={"label": "Home", "lat": HOME[0], "lon": HOME[1],
                                                         "radius_m": 300}, headers=owner["headers"])  # fmt: skip
    assert added.status_code == 201, added.text
    zone = added.json()
    assert zone["radius_m"] >= 300 and (zone["lat"], zone["lon"]) != HOME  # placed away from the address
    assert _distance_m(*HOME, zone["lat"], zone["lon"]) <= 150 + 1
    files = {"file": ("run.gpx", synthetic_gpx(), "application/gpx+xml")}
    workout = (await client.post("/workouts/import", files=files, headers=owner["headers"])).json()

    mine = (await client.get(f"/workouts/{workout['id']}", headers=owner["headers"])).json()
    assert len(mine["track"]) == 120 and mine["start_point"] == pytest.approx(list(HOME))
    for headers in (friend["headers"], None):  # a follower, and anyone (the workout is public)
        theirs = (await client.get(f"/workouts/{workout['id']}", headers=headers)).json()
        assert theirs["start_point"] is None and theirs["track_hidden"] > 0
        assert theirs["track"] and all(_distance_m(*HOME, p[0], p[1]) > 300 for p in theirs["track"])
        listed = (await client.get(f"/users/{owner['id']}/workouts", headers=headers)).json()["items"]
        assert [w["start_point"] for w in listed] == [None]
    listed = (await client.get(f"/users/{owner['id']}/workouts", headers=owner["headers"])).json()["items"]
    assert listed[0]["start_point"] == pytest.approx(list(HOME))

    # Segments match only the part others may see: the track the workout sends them starts outside the zone
    await client.arena.drain()
    store = open_store(client.arena.settings.database_url)
    await store.open()
    try:
        tracked = [unpack(e.body) for e in await store.read_events(0, 10_000, ["workout.tracked"])]
    finally:
        await store.close()
    sent = [e["track"] for e in tracked if e["workout_id"] == workout["id"]]
    assert sent and all(_distance_m(*HOME, p[0], p[1]) > 300 for track in sent for p in track)

    # The zone goes: the track is whole for everyone again
    assert (await client.get("/me/privacy-zones", headers=owner["headers"])).json() == [zone]
    assert (await client.delete(f"/me/privacy-zones/{zone['id']}", headers=owner["headers"])).status_code == 204
    theirs = (await client.get(f"/workouts/{workout['id']}", headers=friend["headers"])).json()
    assert len(theirs["track"]) == 120 and theirs["start_point"] == pytest.approx(list(HOME))


@pytest.mark.parametrize(
    "body",
    [{"lat": 91, "lon": 0}, {"lat": 0, "lon": -181}, {"lat": 0, "lon": 0, "radius_m": 50},
     {"lat": 0, "lon": 0, "radius_m": 1e9}, {"lat": "home", "lon": 0}, {"lon": 0}, {"lat": 0, "lon": 0, "x": 1},
     {"lat": 0, "lon": 0, "label": ""}, {"lat": 0, "lon": 0, "label": "x" * 500}],
)  # fmt: skip
async def test_nonsense_zones_get_a_422(client, body):
    owner = await signup(client, "Odd")
    answer = await client.post("/me/privacy-zones", json=body, headers=owner["headers"])
    assert answer.status_code == 422, answer.text


async def test_zones_are_bounded_and_only_the_owner_removes_theirs(client):
    owner, other = await signup(client, "Many"), await signup(client, "Other")
    for i in range(10):
        added = await client.post("/me/privacy-zones", json={"lat": 10 + i, "lon": 10}, headers=owner["headers"])
        assert added.status_code == 201
    assert (await client.post("/me/privacy-zones", json={"lat": 1, "lon": 1}, headers=owner["headers"])).status_code == 409
    zone_id = added.json()["id"]
    assert (await client.delete(f"/me/privacy-zones/{zone_id}", headers=other["headers"])).status_code == 404
    assert (await client.delete("/me/privacy-zones/..%2F..", headers=owner["headers"])).status_code in (404, 422)
    assert (await client.get("/me/privacy-zones")).status_code == 401
