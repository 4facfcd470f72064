"""Routes through the HTTP API over real hosts, relay and store: made from a file or a workout, searched,
saved, exported as GPX (which imports again), edited and deleted; visibility; hostile files and bad input."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from actors.route_track import MAX_POINTS, BadTrack, measure, to_gpx
from connectors.workout_files import parse_workout_file
from tests.test_groups_api import problem, signup

pytestmark = pytest.mark.ray

STEP_DEG = 0.0003  # 33 m north between fixes


def _gpx(lat: float, lon: float, points: int = 120, name: str = "Col loop", climb: float = 1.0) -> bytes:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    rows = "".join(
        f'<trkpt lat="{lat + i * STEP_DEG:.6f}" lon="{lon:.6f}"><ele>{200 + i * climb:.1f}</ele>'
        f"<time>{(start + timedelta(seconds=5 * i)).strftime('%Y-%m-%dT%H:%M:%SZ')}</time></trkpt>"
        for i in range(points)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="t" xmlns="http://www.topografix.com/GPX/1/1">'
        f"<trk><name>{name}</name><type>cycling</type><trkseg>{rows}</trkseg></trk></gpx>"
    ).encode()


async def _upload(client, who: dict, data: bytes, **fields) -> dict:
    files = {"file": ("route.gpx", data, "application/gpx+xml")}
    return await client.post("/routes", files=files, data=fields, headers=who["headers"])


async def _route(client, who: dict, lat: float, lon: float, climb: float = 1.0, **fields) -> dict:
    answer = await _upload(client, who, _gpx(lat, lon, climb=climb), **fields)
    assert answer.status_code == 201, answer.text
    return answer.json()


# A route id that is not one: too long, empty, odd characters, not a string (races, events, challenges refuse it, 422).
HOSTILE_ROUTE_IDS = ["x" * 65, "", "../../etc/passwd", "a b", "r\u0000", "<script>", 5, 1.5, True, ["r1"], {"$ne": 0}]


async def new_route(client, headers: dict, sport: str = "run", visibility: str = "public") -> dict:
    """A route of about 4 km from a random place, made by whoever ``headers`` signs in: for the races, group
    events and challenges that use one."""
    lat, lon = random.uniform(-50, 50), random.uniform(-170, 170)
    return await _route(client, {"headers": headers}, lat, lon, sport=sport, visibility=visibility)


@pytest.fixture
async def world(client):
    ann, bob, cat = [await signup(client, name) for name in ("Ann", "Bob", "Cat")]
    # a place of its own: the directory persists across the module's tests
    lat, lon = random.uniform(-50, 50), random.uniform(-170, 170)
    return {"ann": ann, "bob": bob, "cat": cat, "lat": lat, "lon": lon}


def test_a_track_is_measured_thinned_and_written_as_gpx_that_imports_again():
    points = [[45.0 + i * 1e-4, 6.0, 100.0 + (i % 50), float(i)] for i in range(5_000)]
    measured = measure(points)
    assert len(measured["points"]) <= MAX_POINTS and measured["points"][-1][:2] == [45.4999, 6.0]
    assert 55_000 < measured["distance_m"] < 56_000
    assert measured["elevation_gain_m"] > 4_000 and measured["elevation_loss_m"] > 4_000
    assert len(measured["profile"]) == 200
    document = to_gpx("A <b>\"&bold'</b> \x01 name", "ride", measured["points"], 1_700_000_000.0)
    again = parse_workout_file(document, "export.gpx")
    assert again.name == "A <b>\"&bold'</b>  name" and again.sport == "ride"
    assert len(again.points) == len(measured["points"])
    assert abs(measure([[p.lat, p.lon, p.ele, p.t] for p in again.points])["distance_m"] - measured["distance_m"]) < 5


@pytest.mark.parametrize(
    "points, words",
    [
        ([[45.0, 6.0, 1.0, 0.0]], "at least two"),
        ([[45.0, 6.0, None, 0], [45.0, 6.0001, None, 1]], "100 m"),
        ([[45.0, 6.0, None, 0], [float("nan"), 6.0, None, 1]], "not on earth"),
        ([[45.0, 6.0, None, 0], [1e308, 6.0, None, 1]], "not on earth"),
        ([[-80.0, 0.0, None, 0], [80.0, 0.0, None, 1]], "2,000 km"),
    ],
)
def test_points_that_cannot_make_a_route_are_refused(points, words):
    with pytest.raises(BadTrack, match=f"(?i){words}"):
        measure(points)


async def test_a_route_from_a_file_is_searched_saved_exported_edited_and_deleted(client, world):
    ann, bob, lat, lon = world["ann"], world["bob"], world["lat"], world["lon"]
    route = await _route(client, ann, lat, lon, surface="gravel")
    assert route["name"] == "Col loop" and route["sport"] == "ride" and route["surface"] == "gravel"
    assert 3_800 < route["distance_m"] < 4_100 and 110 < route["elevation_gain_m"] < 125
    assert route["elevation_loss_m"] == 0 and len(route["profile"]) == 200
    flat = await _route(client, ann, lat + 0.5, lon, name="Flat one", sport="run", surface="road", climb=0)
    await client.arena.drain()

    near = (
        await client.get("/routes", params={"lat": lat, "lon": lon, "radius_km": 80}, headers=bob["headers"])
    ).json()
    assert [i["id"] for i in near["items"]] == [route["id"], flat["id"]]
    assert near["items"][0]["distance_km"] < near["items"][1]["distance_km"]
    for params, expected in [
        ({"sport": "run"}, [flat["id"]]),
        ({"surface": "gravel"}, [route["id"]]),
        ({"min_elevation_gain_m": 50}, [route["id"]]),
        ({"max_distance_m": 3_000}, []),
        ({"region": route["region"]}, [route["id"]]),
    ]:
        found = await client.get("/routes", params={"lat": lat, "lon": lon, "radius_km": 80, **params},
                                 headers=bob["headers"])  # fmt: skip
        assert [i["id"] for i in found.json()["items"]] == expected, params
    first = (await client.get("/routes", params={"lat": lat, "lon": lon, "radius_km": 80, "limit": 1},
                              headers=bob["headers"])).json()  # fmt: skip
    assert [i["id"] for i in first["items"]] == [route["id"]] and first["next_cursor"]
    rest = await client.get("/routes", params={"lat": lat, "lon": lon, "radius_km": 80, "limit": 1,
                                               "cursor": first["next_cursor"]}, headers=bob["headers"])  # fmt: skip
    assert [i["id"] for i in rest.json()["items"]] == [flat["id"]]

    assert (await client.put(f"/routes/{route['id']}/saved", headers=bob["headers"])).json() == {"saved": True}
    assert (await client.put(f"/routes/{route['id']}/saved", headers=bob["headers"])).status_code == 200
    assert (await client.get(f"/routes/{route['id']}", headers=bob["headers"])).json()["saved"] is True
    saved = (await client.get("/me/routes?which=saved", headers=bob["headers"])).json()
    assert [i["id"] for i in saved["items"]] == [route["id"]] and saved["items"][0]["gone"] is False
    mine = (await client.get("/me/routes", headers=ann["headers"])).json()
    assert [i["id"] for i in mine["items"]] == [flat["id"], route["id"]]

    exported = await client.get(f"/routes/{route['id']}.gpx", headers=bob["headers"])
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/gpx+xml")
    again = await _upload(client, bob, exported.content)
    assert again.status_code == 201, again.text
    assert abs(again.json()["distance_m"] - route["distance_m"]) < 2 and again.json()["name"] == "Col loop"

    problem(await client.patch(f"/routes/{route['id']}", json={"name": "Mine"}, headers=bob["headers"]), 403)
    problem(await client.delete(f"/routes/{route['id']}", headers=bob["headers"]), 403)
    edited = await client.patch(f"/routes/{route['id']}", json={"name": "<Col> & co"}, headers=ann["headers"])
    assert edited.json()["name"] == "<Col> & co"
    assert b"<name>&lt;Col&gt; &amp; co</name>" in (await client.get(f"/routes/{route['id']}.gpx",
                                                                      headers=ann["headers"])).content  # fmt: skip
    assert (await client.delete(f"/routes/{route['id']}", headers=ann["headers"])).status_code == 204
    await client.arena.drain()
    problem(await client.get(f"/routes/{route['id']}", headers=ann["headers"]), 404)
    saved = (await client.get("/me/routes?which=saved", headers=bob["headers"])).json()
    assert saved["items"][0]["gone"] is True
    assert (await client.delete(f"/routes/{route['id']}/saved", headers=bob["headers"])).json() == {"saved": False}
    near = (
        await client.get("/routes", params={"lat": lat, "lon": lon, "radius_km": 80}, headers=bob["headers"])
    ).json()
    assert route["id"] not in [i["id"] for i in near["items"]]


async def test_a_route_from_my_workout_and_never_from_someone_elses(client, world):
    ann, bob, lat, lon = world["ann"], world["bob"], world["lat"], world["lon"]
    files = {"file": ("ride.gpx", _gpx(lat, lon, name="Morning ride"), "application/gpx+xml")}
    workout = (await client.post("/workouts/import", files=files, headers=ann["headers"])).json()["id"]
    route = await client.post("/routes", json={"workout_id": workout, "surface": "trail"}, headers=ann["headers"])
    assert route.status_code == 201, route.text
    assert route.json()["name"] == "Morning ride" and route.json()["source"] == {
        "kind": "workout",
        "workout_id": workout,
    }
    problem(await client.post("/routes", json={"workout_id": workout}, headers=bob["headers"]), 403, "your own")
    problem(await client.post("/routes", json={"workout_id": "nope"}, headers=bob["headers"]), 404)
    indoor = await client.post("/workouts", json={"sport": "run", "start": "2024-05-01T07:00:00Z", "duration_s": 600},
                               headers=ann["headers"])  # fmt: skip
    problem(await client.post("/routes", json={"workout_id": indoor.json()["id"]}, headers=ann["headers"]), 422, "GPS")


async def test_followers_only_and_private_routes_are_hidden_from_others(client, world):
    ann, bob, cat, lat, lon = world["ann"], world["bob"], world["cat"], world["lat"], world["lon"]
    followers = await _route(client, ann, lat, lon, visibility="followers")
    private = await _route(client, ann, lat + 0.01, lon, visibility="private")
    assert (await client.post(f"/users/{ann['id']}/follow", headers=bob["headers"])).status_code in (200, 201)
    await client.arena.drain()
    near = {"lat": lat, "lon": lon, "radius_km": 50}
    assert [i["id"] for i in (await client.get("/routes", params=near, headers=bob["headers"])).json()["items"]] == [
        followers["id"]
    ]
    assert (await client.get("/routes", params=near, headers=cat["headers"])).json()["items"] == []
    assert (await client.get(f"/routes/{followers['id']}", headers=bob["headers"])).status_code == 200
    for route in (followers, private):
        problem(await client.get(f"/routes/{route['id']}", headers=cat["headers"]), 404)
        problem(await client.get(f"/routes/{route['id']}.gpx", headers=cat["headers"]), 404)
        problem(await client.put(f"/routes/{route['id']}/saved", headers=cat["headers"]), 404)
        problem(await client.patch(f"/routes/{route['id']}", json={"name": "x"}, headers=cat["headers"]), 404)
        problem(await client.delete(f"/routes/{route['id']}", headers=cat["headers"]), 404)
    problem(await client.get(f"/routes/{private['id']}", headers=bob["headers"]), 404)
    assert (await client.get(f"/routes/{private['id']}", headers=ann["headers"])).status_code == 200
    mine = (await client.get("/me/routes", headers=ann["headers"])).json()
    assert {i["id"] for i in mine["items"]} == {followers["id"], private["id"]}


async def test_every_route_needs_a_token(client):
    for method, path in [("POST", "/routes"), ("GET", "/routes"), ("GET", "/routes/x"), ("GET", "/routes/x.gpx"),
                         ("PATCH", "/routes/x"), ("DELETE", "/routes/x"), ("PUT", "/routes/x/saved"),
                         ("DELETE", "/routes/x/saved"), ("GET", "/me/routes")]:  # fmt: skip
        problem(await client.request(method, path, json={}), 401)


BILLION_LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><gpx><trk><name>&lol3;</name></trk></gpx>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY x SYSTEM "file:///etc/passwd">]><gpx>&x;</gpx>"""


@pytest.mark.parametrize(
    "data, words",  # named by the words: the GPX ones carry the time they were made, and every xdist worker
    # must collect the same ids
    [
        (BILLION_LAUGHS, "entities"),
        (EXTERNAL, "external"),
        (b"<gpx><trk><trkseg><trkpt lat='1' lon='2'>", "well-formed"),
        (b"\x89PNG\r\n\x1a\n....", "png"),
        (b"", "empty"),
        (_gpx(0, 0).replace(b'lat="0.000000"', b'lat="1e308"', 1), "not on earth"),
        (_gpx(0, 0).replace(b'lat="0.000000"', b'lat="NaN"', 1), "not a finite"),
        (_gpx(10, 10, points=1), "at least two"),
        (b"<html><body>hi</body></html>", "root <html>"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_hostile_and_broken_files_are_refused_safely(client, data, words):
    ann = await signup(client, "Ann")
    problem(await _upload(client, ann, data), 422, words)
    assert (await client.get("/me/routes", headers=ann["headers"])).json()["items"] == []


async def test_malformed_requests_answer_clear_problems(client):
    ann = await signup(client, "Ann")
    h = ann["headers"]
    problem(await client.post("/routes", content=b"name=x", headers={**h, "content-type": "text/plain"}), 415)
    problem(await client.post("/routes", json={"workout_id": "../etc"}, headers=h), 422)
    problem(await client.post("/routes", json={"workout_id": "w", "extra": 1}, headers=h), 422)
    problem(await client.post("/routes", json=[1, 2], headers=h), 422)
    problem(await client.post("/routes", files={"other": ("a", b"x")}, headers=h), 422, "file")
    problem(await _upload(client, ann, _gpx(1, 1), surface="lava"), 422)
    problem(await _upload(client, ann, _gpx(1, 1), name="x" * 101), 422)
    problem(await _upload(client, ann, _gpx(1, 1), visibility="everyone"), 422)
    for params in [{"lat": 1}, {"lat": "nan", "lon": 1}, {"lat": 91, "lon": 0}, {"lat": 1, "lon": 1, "radius_km": 201},
                   {"min_distance_m": -1}, {"region": "zzz"}, {"sport": "chess"}, {"limit": 0}, {"cursor": "%%"}]:  # fmt: skip
        answer = await client.get("/routes", params=params, headers=h)
        assert answer.status_code in (400, 422), (params, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    problem(await client.get("/routes/no-such-route", headers=h), 404)
    problem(await client.get("/routes/no-such-route.gpx", headers=h), 404)
    problem(await client.put("/routes/no-such-route/saved", headers=h), 404)
    route = await _route(client, ann, 2, 2)
    problem(await client.patch(f"/routes/{route['id']}", json={"owner": "me"}, headers=h), 422)
    problem(await client.patch(f"/routes/{route['id']}", json={"name": ""}, headers=h), 422)
    problem(await client.get("/me/routes?which=theirs", headers=h), 422)
