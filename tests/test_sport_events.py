"""Organizers' events (docs/sport-events.md): the entity on a host and relay over SQLite and PostgreSQL on a
clock the test moves (capacity, tiers, waitlist and promotion, bibs never reused, check-in once, refunds,
the 24 h reminder once, the calendar and the athlete's list from the events), and every route of the API
against a real Arena (401, 403, 404, 422, hostile bodies, concurrent registrations, forged tickets, the
iCalendar feed read back line by line)."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import segno
from defusedxml.ElementTree import fromstring

from actors.account import Account
from actors.group_event import GroupEvent
from actors.group_event_calendar import EventCalendar
from actors.inbox import Inbox
from actors.sport_event import SportEvent, check_answers, directory_shard
from actors.sport_event_directory import SportEventDirectory
from actors.sport_event_entries import SportEventEntries
from engine.config import HostConfig
from engine.errors import Forbidden, NotFound, Rejected
from engine.host import Host
from engine.relay import Relay, subscriptions
from persistence import open_store
from serve.app import API_PREFIX, api
from serve.event_tokens import make_ticket
from serve.ical import escape, fold
from tests.conftest import Clock
from tests.test_groups_api import problem, signup
from tests.test_races import _admin, organizer

KINDS = [Account, Inbox, GroupEvent, EventCalendar, SportEvent, SportEventDirectory, SportEventEntries]
DAY = 86_400.0
VENUE = {"lat": 45.764, "lon": 4.8357, "address": "Place Bellecour, Lyon"}


def _details(clock: Clock, **more) -> dict:
    return {"title": "Lyon 10k", "description": "", "sport": "run", "start": clock.now + 3 * DAY,
            "end": clock.now + 3 * DAY + 4 * 3600, "time_zone": "Europe/Paris", "venue": VENUE, "online_url": None,
            "capacity": 2, "tiers": [{"id": "free", "name": "Free", "price": 0, "currency": "EUR", "capacity": None}],
            "questions": [], "races": [], "group_rides": "", "route_id": None, **more}  # fmt: skip


@pytest.fixture
async def world(store_url, clock):
    config = HostConfig(snapshot_interval=3600, passivate_after=3600)
    host = Host(KINDS, open_store(store_url), config, clock=clock)
    store = open_store(store_url)
    await host.start()
    await store.open()

    async def ask(kind, entity_id, message_type, body=None):
        return await host.ask(kind, entity_id, message_type, body)

    relay = Relay(store, host.deliver, ask, subscriptions(KINDS), backoff=0.001, retries=2)
    await relay.load_cursors()
    yield ask, relay, clock
    await host.stop()
    await store.close()


def test_answers_are_checked_against_the_questions():
    questions = [{"id": "size", "label": "T-shirt", "kind": "choice", "choices": ["S", "M"], "required": True},
                 {"id": "club", "label": "Club", "kind": "text", "choices": [], "required": False}]  # fmt: skip
    assert check_answers(questions, {"size": "M"}) == {"size": "M"}
    for bad, words in (({}, "needs an answer"), ({"size": "XL"}, "choices"), ({"size": "S", "x": "1"}, "no question"),
                       ({"size": "S", "club": "a" * 301}, "at most"), ([], "map")):  # fmt: skip
        with pytest.raises(Rejected, match=words):
            check_answers(questions, bad)


def test_ical_text_is_escaped_and_folded_at_75_octets_without_splitting_a_character():
    assert escape("a;b,c\\d\ne\r\nf\x00") == "a\\;b\\,c\\\\d\\ne\\nf"
    line = "SUMMARY:" + "é" * 100
    folded = fold(line).split("\r\n")
    assert all(len(part.encode()) <= 75 for part in folded) and all(p.startswith(" ") for p in folded[1:])
    assert "".join(p[1:] if i else p for i, p in enumerate(folded)) == line


async def test_places_waitlist_promotion_bibs_check_in_refunds_and_one_reminder(world):
    ask, relay, clock = world
    tiers = [{"id": "std", "name": "Standard", "price": 25.0, "currency": "EUR", "capacity": None}]
    created = await ask("sport_event", "e1", "create", {"organizer": "org", "details": _details(
        clock, races=["s-race"], tiers=tiers)})  # fmt: skip
    assert created["registered"] == 0 and created["status"] == "scheduled"
    a = await ask("sport_event", "e1", "register", {"user_id": "ana", "tier": "std", "answers": {}})
    b = await ask("sport_event", "e1", "register", {"user_id": "bo", "tier": "std", "answers": {}})
    c = await ask("sport_event", "e1", "register", {"user_id": "cy", "tier": "std", "answers": {}})
    assert (a["status"], a["bib"], a["payment"]) == ("registered", 1, "pending")
    assert (b["bib"], c["status"], c["bib"], c["position"]) == (2, "waitlisted", None, 1)
    with pytest.raises(Rejected, match="already"):
        await ask("sport_event", "e1", "register", {"user_id": "ana", "tier": "std", "answers": {}})
    with pytest.raises(Forbidden):
        await ask("sport_event", "e1", "mark_paid", {"by": "ana", "registration_id": a["id"]})
    assert (await ask("sport_event", "e1", "mark_paid", {"by": "org", "registration_id": a["id"]}))["payment"] == "paid"

    gone = await ask("sport_event", "e1", "withdraw", {"user_id": "ana"})
    assert gone["status"] == "cancelled" and gone["refund"]["amount"] == 25.0 and gone["refund"]["status"] == "due"
    promoted = await ask("sport_event", "e1", "registration", {"registration_id": c["id"]})
    assert promoted["status"] == "registered" and promoted["bib"] == 3, "a bib is never reused"
    again = await ask("sport_event", "e1", "register", {"user_id": "ana", "tier": "std", "answers": {}})
    assert again["status"] == "waitlisted" and again["id"] != a["id"]

    first = await ask("sport_event", "e1", "check_in", {"by": "org", "registration_id": b["id"]})
    replay = await ask("sport_event", "e1", "check_in", {"by": "org", "registration_id": b["id"]})
    assert first["already"] is False and replay["already"] is True
    assert replay["checked_in_at"] == first["checked_in_at"]
    with pytest.raises(Rejected, match="waitlisted"):
        await ask("sport_event", "e1", "check_in", {"by": "org", "registration_id": again["id"]})
    with pytest.raises(NotFound):
        await ask("sport_event", "e1", "check_in", {"by": "org", "registration_id": "r999"})

    clock.now += 2 * DAY + 60  # past the 24 h mark: the durable timer rings once
    for _ in range(100):
        await relay.drain(timeout=10)
        if any(i["type"] == "sport_event_reminder" for i in (await ask("inbox", "bo", "browse", {}))["items"]):
            break
        await asyncio.sleep(0.05)
    kinds = [i["type"] for i in (await ask("inbox", "bo", "browse", {}))["items"]]
    assert kinds.count("sport_event_reminder") == 1
    assert "sport_event_promoted" in [i["type"] for i in (await ask("inbox", "cy", "browse", {}))["items"]]
    listed = await ask("sport_event_entries", "cy", "listed", {})
    assert listed["items"][0]["registration"]["bib"] == 3
    found = await ask("sport_event_directory", directory_shard("e1"), "search", {"near": [45.75, 4.85],
                                                                                  "radius_km": 10})  # fmt: skip
    assert [card["id"] for card in found] == ["e1"]

    await ask("sport_event", "e1", "cancel", {"by": "org"})
    await relay.drain(timeout=10)
    assert (await ask("sport_event_directory", directory_shard("e1"), "search", {})) == []
    assert "sport_event_cancelled" in [i["type"] for i in (await ask("inbox", "bo", "browse", {}))["items"]]
    assert (await ask("sport_event_entries", "bo", "listed", {}))["items"][0]["registration"]["status"] == "cancelled"
    with pytest.raises(Rejected, match="cancelled"):
        await ask("sport_event", "e1", "register", {"user_id": "zed", "tier": "std", "answers": {}})


# -- the API ---------------------------------------------------------------------------------------------------


def _local(days: float, hour: int = 9) -> str:
    when = datetime.now(UTC) + timedelta(days=days)
    return when.replace(hour=hour, minute=0, second=0, microsecond=0, tzinfo=None).isoformat()


def _event(**more) -> dict:
    return {"title": "Lyon 10k", "sport": "run", "start": _local(3, 9), "end": _local(3, 13), "time_zone": "UTC",
            "venue": VENUE, "capacity": 3,
            "tiers": [{"id": "early", "name": "Early bird", "price": 20, "currency": "EUR", "capacity": 2},
                      {"id": "free", "name": "Volunteer"}],
            "questions": [{"id": "size", "label": "T-shirt; size, please", "kind": "choice", "choices": ["S", "M"],
                           "required": True}], **more}  # fmt: skip


_PATH_STEP = r"([Mmh])(-?[\d.]+) ?(-?[\d.]+)?"


def _dark_modules(svg: bytes) -> set[tuple[int, int]]:
    """A drawn QR code's dark modules (row, column; the quiet zone counts), read back from segno's SVG path."""
    drawn = fromstring(svg)
    path = next(p for p in drawn.iter("{http://www.w3.org/2000/svg}path") if p.get("class") == "qrline")
    assert re.sub(_PATH_STEP, "", path.get("d")) == "", path.get("d")  # moves and horizontal runs only
    x = y = 0.0
    dark = set()
    for step, a, b in re.findall(_PATH_STEP, path.get("d")):
        if step == "h":
            dark.update((int(y), int(x) + n) for n in range(int(a)))
            x += float(a)
        elif step == "M":
            x, y = float(a), float(b)
        else:
            x, y = x + float(a), y + float(b)
    return dark


def _routes() -> list[tuple[str, str]]:
    wanted = ("/events", "/me/registrations", "/me/calendar-token", "/admin/partner-offers")
    return sorted(
        (method.upper(), path.removeprefix(API_PREFIX))
        for path, methods in api.openapi()["paths"].items()
        if path.removeprefix(API_PREFIX).startswith(wanted)
        for method in methods
    )


@pytest.mark.ray
async def test_every_route_needs_a_token_and_organizer_routes_refuse_others(client):
    routes = _routes()
    assert len(routes) == 17, routes  # promotion (serve/api/campaigns.py) included
    ids = {"sport_event_id": "e1", "registration_id": "r1"}
    for method, path in routes:
        problem(await client.request(method, path.format(**ids), json={}), 401)
    problem(await client.get("/me/calendar.ics"), 422)
    problem(await client.get("/me/calendar.ics", params={"token": "c.x.1.forged"}), 401)

    athlete = await signup(client, "Ath")
    problem(await client.post("/events", json=_event(), headers=athlete["headers"]), 403, "organizers")
    problem(await client.put("/admin/partner-offers", json={"offers": []}, headers=athlete["headers"]), 403)
    for method, path in (
        ("GET", "/events/nope"),
        ("DELETE", "/events/nope"),
        ("GET", "/events/nope/partners"),
        ("GET", "/events/nope/registrations"),
        ("GET", "/events/nope/registrations/me"),
        ("GET", "/events/nope/registrations/me/qr.svg"),
        ("POST", "/events/nope/registrations/r1/paid"),
        ("DELETE", "/events/nope/registrations/me"),
    ):
        problem(await client.request(method, path, headers=athlete["headers"]), 404)
    problem(await client.post("/events/nope/registrations", json={"tier": "free"}, headers=athlete["headers"]), 404)


@pytest.mark.ray
async def test_register_waitlist_concurrent_bibs_check_in_and_forged_tickets(client):
    org_id, org = await organizer(client)
    race = await client.post(
        "/races", json={"name": "Lyon 10k race", "sport": "run", "kind": "distance", "target_m": 10_000}, headers=org
    )
    assert race.status_code == 201, race.text
    hostile = "<img src=x onerror=alert(1)>" + "é" * 30
    created = await client.post("/events", json=_event(title=hostile, races=[race.json()["id"]], capacity=5),
                                headers=org)  # fmt: skip
    assert created.status_code == 201, created.text
    event = created.json()
    assert event["title"] == hostile and event["tiers"][0]["taken"] == 0
    base = f"/events/{event['id']}"

    for bad in ({**_event(), "venue": None}, {**_event(), "online_url": "https://meet.example/x"},
                {**_event(), "end": _local(2)}, {**_event(), "title": "x" * 500}, {**_event(), "capacity": 10**9},
                {**_event(), "tiers": []}, {**_event(), "time_zone": "Mars/Olympus"}, {**_event(), "extra": 1},
                {**_event(), "questions": [{"id": "q", "label": "Q", "kind": "choice", "choices": ["one"]}]},
                {**_event(), "races": ["no-such-race"]}, {**_event(), "route_id": "no-such-route"}):  # fmt: skip
        problem(await client.post("/events", json=bad, headers=org), 422)

    people = [await signup(client, f"R{n}") for n in range(7)]
    problem(await client.post(f"{base}/registrations", json={"tier": "early"}, headers=people[0]["headers"]), 422,
            "needs an answer")  # fmt: skip
    for body, words in (({"tier": "early", "answers": {"size": "XXL"}}, "choices"),
                        ({"tier": "gold", "answers": {"size": "S"}}, "no tier"),
                        ({"tier": "early", "answers": {"size": "S", "../x": "1"}}, ""),
                        ({"tier": "early", "answers": {"size": "S" * 5_000}}, "")):  # fmt: skip
        problem(await client.post(f"{base}/registrations", json=body, headers=people[0]["headers"]), 422, words)

    async def register(who: dict, tier: str):
        return await client.post(f"{base}/registrations", json={"tier": tier, "answers": {"size": "M"}},
                                 headers=who["headers"])  # fmt: skip

    answers = await asyncio.gather(*(register(who, "free") for who in people))
    assert all(answer.status_code == 201 for answer in answers), [a.text for a in answers]
    regs = [answer.json() for answer in answers]
    registered = [r for r in regs if r["status"] == "registered"]
    assert len(registered) == 5 and sorted(r["bib"] for r in registered) == [1, 2, 3, 4, 5]
    assert sorted(r["position"] for r in regs if r["status"] == "waitlisted") == [1, 2]
    assert all(r["ticket"] is None for r in regs if r["status"] == "waitlisted")
    problem(await register(people[0], "free"), 409, "already")

    roster = (await client.get(f"{base}/registrations", params={"limit": 3}, headers=org)).json()
    assert len(roster["items"]) == 3 and roster["items"][0]["answers"] == {"size": "M"} and roster["next_cursor"]
    problem(await client.get(f"{base}/registrations", headers=people[0]["headers"]), 403)

    ticket = registered[0]["ticket"]
    who = next(p for p, r in zip(people, regs) if r["id"] == registered[0]["id"])
    mine = (await client.get(f"{base}/registrations/me", headers=who["headers"])).json()
    assert mine["ticket"] == ticket and mine["answers"] == {"size": "M"}
    drawn = await client.get(f"{base}/registrations/me/qr.svg", headers=who["headers"])
    assert drawn.status_code == 200, drawn.text
    assert (drawn.headers["content-type"], drawn.headers["cache-control"]) == ("image/svg+xml", "private, no-store")
    assert drawn.content.startswith(b"<svg ")  # no XML declaration: the page parses it as an SVG element
    code = segno.make(ticket, error="m", boost_error=False)  # what the venue's scanner reads: the ticket itself
    assert code.error == "M" and not code.is_micro
    quiet = 4  # modules of blank border around the code
    assert _dark_modules(drawn.content) == {(quiet + r, quiet + c) for r, row in enumerate(code.matrix)
                                            for c, on in enumerate(row) if on}  # fmt: skip
    waitlisted = next(p for p, r in zip(people, regs) if r["status"] == "waitlisted")
    problem(await client.get(f"{base}/registrations/me/qr.svg", headers=waitlisted["headers"]), 404, "no ticket")
    problem(await client.get(f"{base}/registrations/me/qr.svg", headers=org), 404, "not registered")
    problem(await client.get("/events/bad%20id/registrations/me/qr.svg", headers=who["headers"]), 422)
    problem(await client.post(f"{base}/check-in", json={"token": ticket}, headers=who["headers"]), 403)
    first = await client.post(f"{base}/check-in", json={"token": ticket}, headers=org)
    assert first.status_code == 200 and first.json()["already"] is False
    assert (await client.post(f"{base}/check-in", json={"token": ticket}, headers=org)).json()["already"] is True
    secret = client.arena.settings.event_secret()
    forged = (ticket[:-3] + ("AAA" if not ticket.endswith("AAA") else "BBB"), make_ticket("not the key", event["id"],
              "r1"), ticket.replace(".r", ".x"), "t." + "a" * 300, "💥", make_ticket(secret, "other", "r1"))  # fmt: skip
    for token in forged:
        answer = await client.post(f"{base}/check-in", json={"token": token}, headers=org)
        assert answer.status_code == 422, (token, answer.text)
    problem(await client.post(f"{base}/check-in", json={"token": make_ticket(secret, event["id"], "r99")},
                              headers=org), 404)  # fmt: skip

    waiting = next(p for p, r in zip(people, regs) if r["status"] == "waitlisted" and r["position"] == 1)
    left = await client.delete(f"{base}/registrations/me", headers=who["headers"])
    assert left.json()["status"] == "cancelled"
    promoted = (await client.get(f"{base}/registrations/me", headers=waiting["headers"])).json()
    assert promoted["status"] == "registered" and promoted["bib"] == 6 and promoted["ticket"]

    problem(await client.delete(base, headers=people[1]["headers"]), 403)
    assert (await client.delete(base, headers=org)).json()["status"] == "cancelled"
    problem(await client.delete(base, headers=org), 409, "cancelled")
    problem(await register(people[0], "free"), 409, "cancelled")


@pytest.mark.ray
async def test_calendar_partners_and_the_ical_feed(client):
    _, org = await organizer(client)
    lat, lon = 10 + uuid.uuid4().int % 60, 10 + uuid.uuid4().int % 100
    near = await client.post("/events", json=_event(venue={"lat": lat, "lon": lon, "address": "Main; square, 1"},
                                                     questions=[], sport="ride"), headers=org)  # fmt: skip
    online = await client.post("/events", json=_event(venue=None, online_url="https://meet.example/ride",
                                                       questions=[], sport="ride", start=_local(5), end=_local(5, 11)),
                               headers=org)  # fmt: skip
    assert near.status_code == 201 and online.status_code == 201, (near.text, online.text)
    athlete = await signup(client, "Cal")
    await client.arena.drain()
    found = (await client.get("/events", params={"lat": lat, "lon": lon + 0.1, "radius_km": 30, "sport": "ride"},
                              headers=athlete["headers"])).json()  # fmt: skip
    assert [e["id"] for e in found["items"]] == [near.json()["id"]]
    window = {"from": (datetime.now(UTC) + timedelta(days=4)).isoformat(), "sport": "ride", "limit": 50}
    later = (await client.get("/events", params=window, headers=athlete["headers"])).json()["items"]
    assert online.json()["id"] in [e["id"] for e in later] and near.json()["id"] not in [e["id"] for e in later]
    for params in ({"lat": 10}, {"lat": 100, "lon": 0}, {"radius_km": 0}, {"from": "2027-01-01T00:00"},
                   {"sport": "chess"}):  # fmt: skip
        problem(await client.get("/events", params=params, headers=athlete["headers"]), 422)

    admin = await _admin(client)
    offers = {"offers": [{"id": "hotel", "kind": "lodging", "title": "Hotel by the square", "partner": "Stay&Co",
                          "url": "https://stay.example/h?x=1", "lat": lat, "lon": lon, "radius_km": 20},
                         {"id": "train", "kind": "travel", "title": "Trains", "partner": "Rail",
                          "url": "https://rail.example/"}]}  # fmt: skip
    assert (await client.put("/admin/partner-offers", json=offers, headers=admin)).status_code == 200
    problem(await client.put("/admin/partner-offers", json={"offers": [offers["offers"][0]] * 2}, headers=admin), 409)
    problem(await client.put("/admin/partner-offers", json={"offers": [{**offers["offers"][0], "url": "javascript:x"}]},
                             headers=admin), 422)  # fmt: skip
    shown = (await client.get(f"/events/{near.json()['id']}/partners", headers=athlete["headers"])).json()["items"]
    assert [o["id"] for o in shown] == ["hotel", "train"] and "arena_click=" in shown[0]["link"]
    assert shown[0]["link"].startswith("https://stay.example/h?x=1&") and shown[0]["attribution"] == "Offer by Stay&Co"
    remote = (await client.get(f"/events/{online.json()['id']}/partners", headers=athlete["headers"])).json()
    assert [o["id"] for o in remote["items"]] == ["train"]

    for made in (near, online):
        answer = await client.post(f"/events/{made.json()['id']}/registrations", json={"tier": "free"},
                                   headers=athlete["headers"])  # fmt: skip
        assert answer.status_code == 201, answer.text
    await client.arena.drain()
    mine = (await client.get("/me/registrations", headers=athlete["headers"])).json()["items"]
    assert [m["id"] for m in mine] == [near.json()["id"], online.json()["id"]]
    link = (await client.get("/me/calendar-token", headers=athlete["headers"])).json()
    feed = await client.get("/me/calendar.ics", params={"token": link["token"]})
    assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/calendar")
    _check_ical(feed.content, {f"{near.json()['id']}@arena", f"{online.json()['id']}@arena"})
    assert "LOCATION:Main\\; square\\, 1" in feed.text.replace("\r\n ", "")
    rotated = (await client.post("/me/calendar-token", headers=athlete["headers"])).json()
    assert rotated["token"] != link["token"]
    problem(await client.get("/me/calendar.ics", params={"token": link["token"]}), 401, "replaced")
    assert (await client.get("/me/calendar.ics", params={"token": rotated["token"]})).status_code == 200


def _check_ical(raw: bytes, uids: set[str]) -> None:
    """RFC 5545 read strictly: CRLF lines of at most 75 octets, unfolded into NAME:VALUE, balanced blocks,
    each VEVENT with one UID, DTSTAMP and a UTC DTSTART before its DTEND."""
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    physical = raw.split(b"\r\n")[:-1]
    assert all(len(line) <= 75 for line in physical)
    lines: list[str] = []
    for line in physical:
        text = line.decode()
        if text.startswith(" "):
            lines[-1] += text[1:]
        else:
            lines.append(text)
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-1] == "END:VCALENDAR" and "VERSION:2.0" in lines
    found, event = set(), None
    for line in lines[1:-1]:
        name, _, value = line.partition(":")
        assert name and _ == ":", line
        if line == "BEGIN:VEVENT":
            assert event is None
            event = {}
        elif line == "END:VEVENT":
            assert event is not None and {"UID", "DTSTAMP", "DTSTART", "SUMMARY"} <= set(event)
            assert event["DTSTART"].endswith("Z") and len(event["DTSTART"]) == 16
            assert "DTEND" not in event or event["DTSTART"] < event["DTEND"]
            found.add(event["UID"])
            event = None
        elif event is not None:
            assert name not in event, f"{name} twice"
            event[name] = value
    assert found == uids
