"""Group events through the HTTP API, against a real Arena (the FastAPI app in-process over real hosts,
relay and store on the shared Ray cluster): every route, who may use it (401, 403, a hidden group's
404), malformed, oversized and hostile bodies (422, 413), local times in a time zone (a clock change's
gap refused), the waitlist and promotion, the athlete's own list, and the invitation notice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from loadtest.gpx import synthetic_gpx
from serve.app import API_PREFIX, api
from tests.test_groups_api import create, join, problem, signup
from tests.test_routes import HOSTILE_ROUTE_IDS, new_route

pytestmark = pytest.mark.ray

MEETING = {"lat": 48.8462, "lon": 2.3371, "label": "Medicis fountain"}


def _soon(days: float = 3) -> str:
    """A local time in Paris a few days ahead, as a form would send it (no offset)."""
    when = datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=days)
    return when.replace(hour=9, minute=0, second=0, microsecond=0, tzinfo=None).isoformat()


def _event(**fields) -> dict:
    return {"title": "Saturday long run", "sport": "run", "start": _soon(), "time_zone": "Europe/Paris",
            "meeting_point": MEETING, **fields}  # fmt: skip


async def new_event(client, group_id: str, who: dict, **fields) -> dict:
    answer = await client.post(f"/groups/{group_id}/events", json=_event(**fields), headers=who["headers"])
    assert answer.status_code == 201, answer.text
    return answer.json()


async def rsvp(client, group_id: str, event_id: str, who: dict, going: bool = True):
    return await client.put(f"/groups/{group_id}/events/{event_id}/rsvp", json={"going": going}, headers=who["headers"])


def _event_routes() -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path.removeprefix(API_PREFIX))
        for path, methods in api.openapi()["paths"].items()
        if "/events" in path and path.startswith((f"{API_PREFIX}/groups", f"{API_PREFIX}/me"))
        for method in methods
    )


async def test_every_event_route_needs_a_token(client):
    routes = _event_routes()
    assert len(routes) == 8, routes
    for method, path in routes:
        answer = await client.request(method, path.format(group_id="g1", event_id="e1"), json={"going": True})
        problem(answer, 401)


async def test_an_event_is_created_answered_edited_and_cancelled(client):
    owner, ana, bo, cy, outsider = [await signup(client, name) for name in ("Olga", "Ana", "Bo", "Cy", "Zed")]
    group = await create(client, owner)
    for member in (ana, bo, cy):
        await join(client, group["id"], member)
    base = f"/groups/{group['id']}/events"
    event = await new_event(client, group["id"], owner, capacity=1, route="Two laps of the gardens",
                            pace_groups=[{"label": "5:30/km", "pace_s_per_km": 330}])  # fmt: skip
    assert event["start_local"].startswith(_soon()) and event["capacity"] == 1 and event["status"] == "scheduled"
    assert event["me"] == {"rsvp": None, "position": None} and event["created_by"] == owner["id"]

    listed = (await client.get(base, headers=outsider["headers"])).json()  # a public group: anyone signed in reads
    assert [e["id"] for e in listed["items"]] == [event["id"]] and listed["next_cursor"] is None
    assert (await client.get(base, params={"when": "past"}, headers=ana["headers"])).json()["items"] == []

    assert (await rsvp(client, group["id"], event["id"], ana)).json()["rsvp"] == "going"
    waiting = (await rsvp(client, group["id"], event["id"], bo)).json()
    assert waiting["rsvp"] == "waitlisted" and waiting["position"] == 1
    problem(await rsvp(client, group["id"], event["id"], outsider), 403, "members")
    going = (await client.get(f"{base}/{event['id']}/attendees", headers=outsider["headers"])).json()
    assert [(p["id"], p["name"]) for p in going["items"]] == [(ana["id"], "Ana")]
    queue = await client.get(f"{base}/{event['id']}/attendees", params={"which": "waitlist"}, headers=ana["headers"])
    assert [p["id"] for p in queue.json()["items"]] == [bo["id"]]

    assert (await rsvp(client, group["id"], event["id"], ana, going=False)).json()["rsvp"] == "not_going"
    seen = (await client.get(f"{base}/{event['id']}", headers=bo["headers"])).json()
    assert seen["me"] == {"rsvp": "going", "position": None}, "the first waiting took the freed place"
    await client.arena.drain()
    mine = (await client.get("/me/events", headers=bo["headers"])).json()["items"]
    assert [(e["id"], e["me"]["rsvp"], e["group_name"]) for e in mine] == [(event["id"], "going", group["name"])]
    told = (await client.get("/notifications", headers=bo["headers"])).json()["items"]
    assert [n["data"]["event_id"] for n in told if n["type"] == "group_event_promoted"] == [event["id"]]

    problem(await client.patch(f"{base}/{event['id']}", json={"title": "Mine"}, headers=bo["headers"]), 403)
    moved = await client.patch(f"{base}/{event['id']}", json={"start": _soon(4), "capacity": 3,
                                                              "meeting_point": {**MEETING, "label": "North gate"}},
                               headers=owner["headers"])  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert moved.json()["start_local"].startswith(_soon(4)) and moved.json()["meeting_point"]["label"] == "North gate"
    await client.arena.drain()
    told = (await client.get("/notifications", headers=bo["headers"])).json()["items"]
    assert [n["data"]["moved"] for n in told if n["type"] == "group_event_changed"] == [["start", "meeting_point"]]

    problem(await client.delete(f"{base}/{event['id']}", headers=ana["headers"]), 403)
    cancelled = await client.delete(f"{base}/{event['id']}", headers=owner["headers"])
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    problem(await rsvp(client, group["id"], event["id"], cy), 409, "cancelled")
    problem(await client.delete(f"{base}/{event['id']}", headers=owner["headers"]), 409, "cancelled")
    await client.arena.drain()
    for who in (ana, bo):
        told = (await client.get("/notifications", headers=who["headers"])).json()["items"]
        assert [n["data"]["event_id"] for n in told if n["type"] == "group_event_cancelled"] == [event["id"]]
    assert (await client.get("/me/events", headers=bo["headers"])).json()["items"] == []


async def test_private_and_hidden_groups_keep_their_events_to_members(client):
    owner, member, outsider, invited = [await signup(client, name) for name in ("Olga", "Ana", "Zed", "Ivy")]
    private = await create(client, owner, visibility="private", join_policy="request")
    hidden = await create(client, owner, visibility="hidden")
    invitation = await client.post(f"/groups/{hidden['id']}/invitations", json={"user_id": member["id"]},
                                   headers=owner["headers"])  # fmt: skip
    assert invitation.status_code == 201
    await join(client, hidden["id"], member)
    await client.post(f"/groups/{hidden['id']}/invitations", json={"user_id": invited["id"]}, headers=owner["headers"])
    for group in (private, hidden):
        event = await new_event(client, group["id"], owner)
        base = f"/groups/{group['id']}/events"
        outsider_sees = 403 if group is private else 404
        problem(await client.get(base, headers=outsider["headers"]), outsider_sees)
        problem(await client.get(f"{base}/{event['id']}", headers=outsider["headers"]), outsider_sees)
        problem(await client.get(f"{base}/{event['id']}/attendees", headers=outsider["headers"]), outsider_sees)
        problem(await rsvp(client, group["id"], event["id"], outsider), outsider_sees)
        problem(await client.post(base, json=_event(), headers=outsider["headers"]), outsider_sees)
        problem(await client.patch(f"{base}/{event['id']}", json={"title": "x"}, headers=outsider["headers"]),
                outsider_sees)  # fmt: skip
        problem(await client.delete(f"{base}/{event['id']}", headers=outsider["headers"]), outsider_sees)
        if group is hidden:
            problem(await client.get(base, headers=invited["headers"]), 403, "members")  # invited: not a member yet
    events = (await client.get(f"/groups/{hidden['id']}/events", headers=member["headers"])).json()["items"]
    assert len(events) == 1 and (await rsvp(client, hidden["id"], events[0]["id"], member)).status_code == 200


async def test_unknown_and_misaddressed_events_are_404_and_a_banned_member_403(client):
    owner, ana = await signup(client, "Olga"), await signup(client, "Ana")
    group, other = await create(client, owner), await create(client, owner)
    await join(client, group["id"], ana)
    event = await new_event(client, group["id"], owner)
    problem(await client.get(f"/groups/{group['id']}/events/{uuid.uuid4().hex}", headers=ana["headers"]), 404)
    problem(await client.get(f"/groups/{other['id']}/events/{event['id']}", headers=owner["headers"]), 404)
    problem(await rsvp(client, other["id"], event["id"], owner), 404)
    problem(await client.patch(f"/groups/{other['id']}/events/{event['id']}", json={"title": "x"},
                               headers=owner["headers"]), 404)  # fmt: skip
    problem(await client.get(f"/groups/{uuid.uuid4().hex}/events", headers=ana["headers"]), 404)
    banned = await client.put(f"/groups/{group['id']}/bans/{ana['id']}", headers=owner["headers"])
    assert banned.status_code == 204
    problem(await client.get(f"/groups/{group['id']}/events", headers=ana["headers"]), 403, "banned")
    problem(await rsvp(client, group["id"], event["id"], ana), 403)
    problem(await client.post(f"/groups/{group['id']}/events", json=_event(), headers=ana["headers"]), 403)


def _gap() -> str:
    """The local time that Paris's clocks skip next spring (the last Sunday of March, 02:30)."""
    now = datetime.now(UTC)
    year = now.year if now < datetime(now.year, 3, 20, tzinfo=UTC) else now.year + 1
    last_sunday = max(d for d in (datetime(year, 3, day) for day in range(25, 32)) if d.weekday() == 6)
    return last_sunday.replace(hour=2, minute=30).isoformat()


MALFORMED = [
    {"title": ""},
    {"title": "   "},
    {"title": "x" * 121},
    {"description": "d" * 2_001},
    {"sport": "chess"},
    {"start": "next saturday"},
    {"start": "2020-01-01T09:00:00"},  # past
    {"start": "2999-01-01T09:00:00"},  # beyond a year
    {"start": "0001-01-01T00:00:00+05:00"},
    {"time_zone": "Mars/Olympus_Mons"},
    {"time_zone": "../../../etc/passwd"},
    {"time_zone": "/etc/localtime"},
    {"time_zone": "Europe/Paris\u0000"},
    {"time_zone": "x" * 65},
    {"meeting_point": {"lat": 91, "lon": 0, "label": "x"}},
    {"meeting_point": {"lat": 1, "lon": 2}},
    {"meeting_point": {"lat": 1, "lon": 2, "label": "x" * 121}},
    {"meeting_point": {"lat": "NaN", "lon": 2, "label": "x"}},
    {"route": "r" * 501},
    {"meeting_point": None},  # and no route to meet at the start of
    *({"route_id": route_id} for route_id in HOSTILE_ROUTE_IDS),
    {"pace_groups": [{"label": "5:00", "pace_s_per_km": 10}]},
    {"pace_groups": [{"label": "x"}] * 11},
    {"capacity": 0},
    {"capacity": 5_001},
    {"capacity": 2.5},
    {"colour": "red"},
]


async def test_malformed_oversized_and_hostile_events_are_refused_and_nothing_is_kept(client):
    owner, ana = await signup(client, "Olga"), await signup(client, "Ana")
    group = await create(client, owner)
    await join(client, group["id"], ana)
    base = f"/groups/{group['id']}/events"
    for fields in MALFORMED:
        problem(await client.post(base, json=_event(**fields), headers=owner["headers"]), 422)
    problem(await client.post(base, json=_event(start=_gap()), headers=owner["headers"]), 422, "skip")
    problem(await client.post(base, json=["not", "an", "object"], headers=owner["headers"]), 422)
    huge = await client.post(base, json=_event(description="d" * (2 * 1024 * 1024)), headers=owner["headers"])
    problem(huge, 413)
    assert (await client.get(base, headers=owner["headers"])).json()["items"] == [], "nothing was kept"

    hostile = "<script>alert(1)</script>\u202e"
    event = await new_event(client, group["id"], owner, title=hostile, meeting_point={**MEETING, "label": hostile})
    assert event["title"] == hostile.strip(), "kept as text: pages write it with textContent"
    at = f"{base}/{event['id']}"
    for bad in ({}, {"going": "yes"}, {"going": 1}, {"going": None}, {"going": True, "extra": 1}, [True]):
        problem(await client.put(f"{at}/rsvp", json=bad, headers=ana["headers"]), 422)
    for bad in ({}, {"title": None}, {"capacity": None}, {"time_zone": "Europe/London"}, {"nope": 1},
                *({"route_id": route_id} for route_id in HOSTILE_ROUTE_IDS)):  # fmt: skip
        problem(await client.patch(at, json=bad, headers=owner["headers"]), 422)
    for query in ({"which": "everyone"}, {"limit": 0}, {"limit": 101}, {"cursor": "%%%"}):
        assert (await client.get(f"{at}/attendees", params=query, headers=ana["headers"])).status_code in (400, 422)
    problem(await client.get(base, params={"when": "tomorrow"}, headers=ana["headers"]), 422)
    assert (await client.get(at, headers=ana["headers"])).json()["going"] == 0, "nothing was answered"


async def test_a_local_time_is_read_in_the_events_zone(client):
    owner = await signup(client, "Olga")
    group = await create(client, owner)
    local = _soon(10)
    new_york = await new_event(client, group["id"], owner, start=local, time_zone="America/New_York")
    instant = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("America/New_York")).timestamp()
    assert new_york["start"] == instant and new_york["start_local"].startswith(local)
    with_offset = (datetime.fromisoformat(local) - timedelta(hours=2)).isoformat() + "+00:00"
    given = await new_event(client, group["id"], owner, start=with_offset, time_zone="Asia/Tokyo")
    assert given["start"] == datetime.fromisoformat(with_offset).timestamp()
    moved = await client.patch(f"/groups/{group['id']}/events/{given['id']}",
                               json={"time_zone": "Europe/Paris", "start": local}, headers=owner["headers"])  # fmt: skip
    assert moved.json()["start"] == datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Paris")).timestamp()


async def test_an_invitation_reaches_the_invitees_inbox_with_a_link_and_can_be_muted(client):
    owner, ana, bo = await signup(client, "Olga"), await signup(client, "Ana"), await signup(client, "Bo")
    group = await create(client, owner, visibility="hidden")
    muted = await client.put("/notifications/mutes/group_invitation", headers=bo["headers"])
    assert muted.status_code == 200, muted.text
    for who in (ana, bo):
        invited = await client.post(f"/groups/{group['id']}/invitations", json={"user_id": who["id"]},
                                    headers=owner["headers"])  # fmt: skip
        assert invited.status_code == 201
    await client.arena.drain()
    told = (await client.get("/notifications", headers=ana["headers"])).json()["items"]
    assert [n["data"] for n in told if n["type"] == "group_invitation"] == [
        {"group_id": group["id"], "by": owner["id"], "url": f"/groups/{group['id']}"}
    ]
    told = (await client.get("/notifications", headers=bo["headers"])).json()["items"]
    assert [n for n in told if n["type"] == "group_invitation"] == []


async def test_an_imported_workout_says_where_it_started_and_a_typed_one_does_not(client):
    athlete = await signup(client, "Ana")
    files = {"file": ("run.gpx", synthetic_gpx(30, lat0=48.8462, lon0=2.3371), "application/gpx+xml")}
    imported = await client.post("/workouts/import", files=files, headers=athlete["headers"])
    assert imported.status_code == 201, imported.text
    assert imported.json()["start_point"] == [48.8462, 2.3371]
    typed = {"sport": "run", "start": "2026-11-20T07:00:00Z", "duration_s": 1800, "distance_m": 6000}
    assert (await client.post("/workouts", json=typed, headers=athlete["headers"])).json()["start_point"] is None


async def test_an_event_on_a_route_meets_at_its_start_and_shows_it_after_the_route_goes_private(client):
    owner, ana = await signup(client, "Olga"), await signup(client, "Ana")
    group = await create(client, owner)
    await join(client, group["id"], ana)
    base = f"/groups/{group['id']}/events"
    route = await new_route(client, owner["headers"])
    link = {field: route[field] for field in ("id", "name", "sport", "distance_m", "elevation_gain_m")}
    event = await new_event(client, group["id"], owner, route_id=route["id"], meeting_point=None)
    lat, lon = route["start_point"]
    assert event["meeting_point"] == {"lat": lat, "lon": lon, "label": f"Start of {route['name']}"}
    assert event["linked_route"] == link and "route_id" not in event
    given = await new_event(client, group["id"], owner, route_id=route["id"])
    assert given["meeting_point"] == MEETING, "a meeting point given is kept"
    listed = (await client.get(base, headers=ana["headers"])).json()["items"]
    assert {e["id"]: e["linked_route"] for e in listed} == {event["id"]: link, given["id"]: link}

    at = f"{base}/{event['id']}"
    unlinked = await client.patch(at, json={"route_id": None}, headers=owner["headers"])
    assert unlinked.json()["linked_route"] is None and unlinked.json()["meeting_point"] == event["meeting_point"]
    assert (await client.patch(at, json={"route_id": route["id"]}, headers=owner["headers"])).json()["linked_route"]
    problem(await client.patch(at, json={"sport": "ride"}, headers=owner["headers"]), 409, "route is for run")
    ride = await new_route(client, owner["headers"], sport="ride")
    problem(await client.patch(at, json={"route_id": ride["id"]}, headers=owner["headers"]), 409, "ride")
    problem(await client.post(base, json=_event(route_id=ride["id"]), headers=owner["headers"]), 409, "ride")
    hidden = await new_route(client, owner["headers"], visibility="private")
    problem(await client.post(base, json=_event(route_id=hidden["id"]), headers=owner["headers"]), 422, "public")
    unseen = await new_route(client, ana["headers"], visibility="followers")
    problem(await client.patch(at, json={"route_id": unseen["id"]}, headers=owner["headers"]), 422, "no route")

    assert (await client.patch(f"/routes/{route['id']}", json={"visibility": "private"},
                               headers=owner["headers"])).status_code == 200  # fmt: skip
    assert (await client.get(at, headers=ana["headers"])).json()["linked_route"] == link, "the link stays"
    problem(await client.get(f"/routes/{route['id']}", headers=ana["headers"]), 404)
