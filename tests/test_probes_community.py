"""An outsider's probes of the community routes (groups and their events, challenges, training, gear, the shop
and its webhook, recommendations, segments) and their pages, against a real Arena (docs/security.md,
"Community routes"): other people's objects, hidden things that must look made up, signature tricks, odd
dates and time zones, forged click ids, the catalogue feed's address, and pages that must build text."""

from __future__ import annotations

import base64
import json
import random
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from engine.commerce.signatures import sign_webhook
from serve.api.recommendations import _allowed
from serve.app import api
from tests.conftest import module_settings, stop_cluster_services
from tests.test_challenges_api import organizer
from tests.test_groups_api import PASSWORD, problem, signup
from tests.test_segments_api import LON0, _import

pytestmark = pytest.mark.ray

SECRET = "whsec_" + "p" * 32
WEB = Path(__file__).resolve().parent.parent / "serve" / "web"
SOON = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0, tzinfo=None).isoformat()
EVENT = {"title": "Long run", "sport": "run", "start": SOON, "time_zone": "Europe/Paris",
         "meeting_point": {"lat": 48.85, "lon": 2.35, "label": "The bridge"}}  # fmt: skip


@pytest.fixture(scope="module")
def settings(ray_cluster, tmp_path_factory):
    """As conftest's, with a webhook key and no product feed configured."""

    settings = module_settings(
        tmp_path_factory,
        "probes",
        shop_webhook_secret=SECRET,
    )
    yield settings
    stop_cluster_services(settings.namespace)


async def _group(client, owner: dict, **fields) -> str:
    body = {"name": f"Club {uuid.uuid4().hex[:6]}", "sports": ["run"], **fields}
    answer = await client.post("/groups", json=body, headers=owner["headers"])
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def _event(client, group_id: str, owner: dict) -> str:
    answer = await client.post(f"/groups/{group_id}/events", json=EVENT, headers=owner["headers"])
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def _not_5xx(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/problem+json", answer.text


# -- the order webhook ---------------------------------------------------------------------------------------


async def _hook(client, body: bytes, *signatures: str) -> httpx.Response:
    # Starlette reads header bytes as latin-1: "\u00b2" arrives as the superscript two it is.
    headers = [(b"Content-Type", b"application/json"), *((b"Arena-Signature", s.encode("latin-1")) for s in signatures)]
    return await client.post("/webhooks/shop/orders", content=body, headers=headers)


ORDER = json.dumps({"id": "probe-1", "status": "pending", "currency": "EUR",
                    "lines": [{"product_id": "p", "quantity": 1, "price": "1.00"}]}).encode()  # fmt: skip


async def test_webhook_signature_tricks_are_401_hostile_signed_bodies_422_and_click_ids_unspliceable(client):
    now = int(time.time())
    good = sign_webhook(SECRET, ORDER, now)
    mac = good.split("v1=")[1]
    tricks = [
        f"t=\u00b2,v1={mac}",  # a superscript two: str.isdigit() says yes, int() says no
        f"T={now},V1={mac}",  # case
        f"t={now},v0={mac}",  # another scheme
        f"t={now},v1=",
        f"t={now + 400},{sign_webhook(SECRET, ORDER, now + 400).split(',')[1]}",  # signed for the future
        f"t={now},v1={mac}," + "v1=00," * 200,  # a header too long to read
        sign_webhook("not-the-key", ORDER, now),
    ]
    for header in tricks:
        answer = await _hook(client, ORDER, header)
        problem(answer, 401, "signature")
    reencoded = json.dumps(json.loads(ORDER), indent=1).encode()  # the same order, other bytes
    problem(await _hook(client, reencoded, good), 401, "no signature matches")
    problem(await _hook(client, ORDER), 401, "missing")
    # A second header does not help a forgery: the first is read, and it must match.
    problem(await _hook(client, ORDER, sign_webhook("forged", ORDER, now), good), 401)
    assert (await _hook(client, ORDER, good)).status_code == 200
    for body in (b"\xff\xfe{\x00", b"[" * 5_000 + b"]" * 5_000, b'{"id": "1e309", "status": 1e309}'):
        problem(await _hook(client, body, sign_webhook(SECRET, body, now)), 422)  # signed, and still refused

    # A click id names one athlete: another's payload under its signature attributes nothing.
    ann, bob = await signup(client, "Ann"), await signup(client, "Bob")
    link = await client.get("/shop/products/nope/link", headers=ann["headers"])
    problem(link, 404)  # no catalogue here: a click id is only made for a product that exists
    from engine.commerce.signatures import make_click

    mine = make_click(client.arena.settings.click_secret(), ann["id"], "p", time.time())
    payload, mac = mine.split(".")
    theirs = base64.urlsafe_b64encode(json.dumps([bob["id"], "p", int(time.time())]).encode()).rstrip(b"=").decode()
    order = {"id": f"o-{uuid.uuid4().hex[:8]}", "status": "paid", "currency": "EUR", "click_id": f"{theirs}.{mac}",
             "lines": [{"product_id": "p", "quantity": 1, "price": "1.00"}]}  # fmt: skip
    body = json.dumps(order).encode()
    answer = await _hook(client, body, sign_webhook(SECRET, body, int(time.time())))
    assert (answer.status_code, answer.json()["attributed"]) == (200, False)


# -- who may do what -----------------------------------------------------------------------------------------


async def test_a_hidden_group_and_its_events_look_made_up_to_outsiders(client):
    owner, outsider = await signup(client, "Olga"), await signup(client, "Out")
    hidden = await _group(client, owner, visibility="hidden")
    event = await _event(client, hidden, owner)
    public = await _group(client, outsider)
    for group_id in (hidden, "made-up-group"):
        details = set()
        for method, path, body in (
            ("GET", f"/groups/{group_id}", None),
            ("GET", f"/groups/{group_id}/events", None),
            ("GET", f"/groups/{group_id}/events/{event}", None),
            ("GET", f"/groups/{group_id}/events/{event}/attendees", None),
            ("PUT", f"/groups/{group_id}/events/{event}/rsvp", {"going": True}),
            ("POST", f"/groups/{group_id}/events", EVENT),
            ("GET", f"/groups/{group_id}/leaderboard", None),
        ):
            answer = await client.request(method, path, json=body, headers=outsider["headers"])
            details.add(problem(answer, 404)["detail"])
        assert details == {"no such group"}
    # The event reached through a group the outsider owns is not that group's: 404.
    problem(await client.get(f"/groups/{public}/events/{event}", headers=outsider["headers"]), 404)
    problem(await client.put(f"/groups/{public}/events/{event}/rsvp", json={"going": True},
                             headers=outsider["headers"]), 404)  # fmt: skip
    attendees = await client.get(f"/groups/{hidden}/events/{event}/attendees", headers=owner["headers"])
    assert attendees.status_code == 200 and attendees.json()["items"] == []


async def test_members_do_not_make_events_and_the_banned_do_not_answer(client):
    owner, member, banned = [await signup(client, n) for n in ("Olga", "Mia", "Ban")]
    group_id = await _group(client, owner)
    event = await _event(client, group_id, owner)
    for who in (member, banned):
        assert (await client.post(f"/groups/{group_id}/join", headers=who["headers"])).status_code == 200
    problem(await client.post(f"/groups/{group_id}/events", json=EVENT, headers=member["headers"]), 403, "admins")
    problem(await client.patch(f"/groups/{group_id}/events/{event}", json={"title": "Mine"},
                               headers=member["headers"]), 403)  # fmt: skip
    problem(await client.delete(f"/groups/{group_id}/events/{event}", headers=member["headers"]), 403)
    ban = await client.put(f"/groups/{group_id}/bans/{banned['id']}", headers=owner["headers"])
    assert ban.status_code == 204, ban.text
    problem(await client.put(f"/groups/{group_id}/events/{event}/rsvp", json={"going": True},
                             headers=banned["headers"]), 403)  # fmt: skip
    problem(await client.get(f"/groups/{group_id}/feed", headers=banned["headers"]), 403, "banned")


async def test_another_athletes_gear_is_not_found_and_their_workouts_gear_not_theirs_to_set(client):
    ann, bob = await signup(client, "Ann"), await signup(client, "Bob")
    item = await client.post("/me/gear", json={"type": "shoes", "name": "Fast", "sports": ["run"]},
                             headers=ann["headers"])  # fmt: skip
    gear_id = item.json()["id"]
    workout = await client.post("/workouts", json={"sport": "run", "start": datetime.now(UTC).isoformat(),
                                                   "duration_s": 600, "distance_m": 2000}, headers=bob["headers"])  # fmt: skip
    workout_id = workout.json()["id"]
    for method, path, body in (("GET", f"/me/gear/{gear_id}", None), ("PATCH", f"/me/gear/{gear_id}", {"name": "x"}),
                               ("DELETE", f"/me/gear/{gear_id}", None), ("GET", f"/me/gear/{gear_id}/suggestions", None),
                               ("PUT", "/me/gear-defaults/run", {"gear_id": gear_id}),
                               ("PUT", f"/workouts/{workout_id}/gear", {"gear_id": gear_id})):  # fmt: skip
        problem(await client.request(method, path, json=body, headers=bob["headers"]), 404)
    problem(await client.put(f"/workouts/{workout_id}/gear", json={"gear_id": None}, headers=ann["headers"]), 403)
    assert (await client.get(f"/me/gear/{gear_id}", headers=ann["headers"])).json()["name"] == "Fast"


async def test_admin_shop_routes_refuse_athletes_and_the_feed_address_never_comes_from_a_request(client):
    ann = await signup(client, "Ann")
    promotion = {"id": "PROBE1", "title": "t", "discount": {"percent": 10}, "mode": "shared", "total": 5,
                 "expires": (datetime.now(UTC) + timedelta(days=1)).isoformat()}  # fmt: skip
    for method, path, body in (("POST", "/shop/catalogue/sync?url=http://127.0.0.1:6379/", {"url": "http://10.0.0.1"}),
                               ("GET", "/shop/catalogue/reports", None), ("POST", "/shop/promotions", promotion),
                               ("GET", "/shop/promotions/PROBE1", None), ("POST", "/shop/promotions/PROBE1/end", None)):  # fmt: skip
        problem(await client.request(method, path, json=body, headers=ann["headers"]), 403, "admin")
    await client.post("/accounts", json={"email": "boss@example.com", "password": PASSWORD, "display_name": "Boss"})
    login = await client.post("/auth/login", json={"email": "boss@example.com", "password": PASSWORD})
    boss = {"Authorization": f"Bearer {login.json()['access_token']}"}
    # No feed is configured: whatever address a request names, nothing is fetched.
    answer = await client.post("/shop/catalogue/sync?url=http://127.0.0.1:6379/", json={"url": "http://127.0.0.1"},
                               headers=boss)  # fmt: skip
    problem(answer, 409, "ARENA_SHOP_FEED_URL")
    operation = api.openapi()["paths"]["/api/v1/shop/catalogue/sync"]["post"]
    assert "parameters" not in operation and "requestBody" not in operation
    for code in ("../../etc/passwd", "PROBE1-\u0000", "A" * 41, "%2e%2e"):
        _not_5xx(await client.post("/offers/redeem", json={"code": code}, headers=ann["headers"]))


async def test_challenges_group_creation_and_team_boards_do_not_give_hidden_groups_away(client):
    _, org = await organizer(client)
    owner, outsider = await signup(client, "Olga"), await signup(client, "Out")
    hidden = await _group(client, owner, visibility="hidden")
    today = datetime.now(UTC).date()
    period = {"first_day": (today - timedelta(days=1)).isoformat(), "last_day": (today + timedelta(days=5)).isoformat()}
    base = {"title": "Probe", "goal_type": "distance_m", "goal": 10_000, **period}
    details = [problem(await client.post("/challenges", json={**base, "scope": "group", "group_id": g},
                                         headers=outsider["headers"]), 404)["detail"] for g in (hidden, "made-up")]  # fmt: skip
    assert len(set(details)) == 1
    problem(await client.post("/challenges", json=base, headers=outsider["headers"]), 403, "organizers")
    team = (await client.post("/challenges", json={**base, "team": True}, headers=org)).json()
    joined = await client.post(f"/challenges/{team['id']}/join", json={"team": hidden}, headers=owner["headers"])
    assert joined.status_code == 200, joined.text
    await client.arena.drain()
    seen: dict[int, list] = {}
    for who in (owner["headers"], outsider["headers"]):
        board = await client.get(f"/challenges/{team['id']}/leaderboard", params={"view": "teams"}, headers=who)
        assert board.status_code == 200, board.text
        seen[len(seen)] = board.json()["teams"]
    assert [(t["team"], t["name"]) for t in seen[0]] == [(hidden, None)]  # its member knows their team's id
    assert seen[1] and all(t["team"] != hidden and t["name"] is None for t in seen[1])  # outsiders: neither id nor name
    problem(await client.get(f"/challenges/{team['id']}/leaderboard", params={"view": "group", "group_id": hidden},
                             headers=outsider["headers"]), 404)  # fmt: skip


async def test_recommendations_never_propose_private_blocked_or_hidden_things(client):
    me, private, blocker, fine = [await signup(client, n) for n in ("Me", "Priv", "Blocker", "Fine")]
    assert (await client.patch("/me", json={"private": True}, headers=private["headers"])).status_code == 200
    assert (await client.put(f"/users/{me['id']}/block", headers=blocker["headers"])).status_code == 204
    shown = await _allowed(client.arena, me["id"], "user",
                           [[private["id"], 0.9], [blocker["id"], 0.8], [fine["id"], 0.7], ["made-up", 0.6]])  # fmt: skip
    assert [s["id"] for s in shown] == [fine["id"]]
    hidden, open_ = await _group(client, fine, visibility="hidden"), await _group(client, fine)
    shown = await _allowed(client.arena, me["id"], "group", [[hidden, 0.9], [open_, 0.5]])
    assert [s["id"] for s in shown] == [open_]
    for limit in ("0", "51", "1e309", "NaN", "-1"):
        _not_5xx(await client.get("/me/recommendations/people", params={"limit": limit}, headers=me["headers"]))
    problem(await client.get("/me/recommendations/../../admin", headers=me["headers"]), 404)


# -- odd input -----------------------------------------------------------------------------------------------


async def test_dates_at_the_ends_of_the_calendar_and_path_like_time_zones_get_a_4xx(client):
    owner = await signup(client, "Olga")
    group_id = await _group(client, owner)
    for week in ("0001-01-01", "0001-01-07", "9999-12-31", "2024-02-30", "1e309"):
        _not_5xx(await client.get(f"/groups/{group_id}/leaderboard", params={"week": week}, headers=owner["headers"]))
    for first, last in (("0001-01-01", "0001-01-31"), ("9999-12-01", "9999-12-31"), ("2025-01-01", "2020-01-01"),
                        ("2000-01-01", "2099-12-31")):  # fmt: skip
        _not_5xx(await client.get("/me/training/days", params={"from": first, "to": last}, headers=owner["headers"]))
    for zone in ("../../etc/passwd", "etc/passwd", "Europe/../../etc/passwd", "/etc/localtime", "zone.tab",
                 "Europe/Paris\u0000", "Europe/Nowhere", "A" * 65):  # fmt: skip
        answer = await client.post(f"/groups/{group_id}/events", json={**EVENT, "time_zone": zone},
                                   headers=owner["headers"])  # fmt: skip
        problem(answer, 422)
    for start in ("0001-01-01T00:00:00", "9999-12-31T23:59:59+14:00", "2020-01-01T00:00:00", "nope"):
        problem(await client.post(f"/groups/{group_id}/events", json={**EVENT, "start": start},
                                  headers=owner["headers"]), 422)  # fmt: skip
    for capacity in ("0", "-1", str(10**12), "1e309", "1.5", "[]"):
        body = json.dumps(EVENT)[:-1] + f', "capacity": {capacity}}}'
        problem(await client.post(f"/groups/{group_id}/events", content=body,
                                  headers={**owner["headers"], "Content-Type": "application/json"}), 422)  # fmt: skip
    for params in ({"lat": "NaN", "lon": 0}, {"lat": 0, "lon": "Infinity"}, {"lat": 0, "lon": 0, "radius_km": 1e309},
                   {"lat": 0, "lon": 0, "limit": 10**6}):  # fmt: skip
        problem(await client.get("/segments", params=params, headers=owner["headers"]), 422)
    for odd in ({"limit": "101"}, {"view": "group", "group_id": "../x"}, {"view": "nope"}):
        problem(await client.get("/challenges/c1/leaderboard", params=odd, headers=owner["headers"]), 422)
    text = "\u202e" + "x" * 5_000
    problem(await client.post(f"/groups/{group_id}/posts", json={"text": text}, headers=owner["headers"]), 422)


# -- segments ------------------------------------------------------------------------------------------------


async def test_an_effort_leaves_other_peoples_segment_boards_when_its_workout_becomes_private(client):
    ann, bob = await signup(client, "Ann"), await signup(client, "Bob")
    lon = LON0 + random.uniform(2.5, 4.0)  # a road of its own
    first = await _import(client, ann, 4.0, 1, lon=lon)
    made = await client.post("/segments", json={"workout_id": first, "name": "Probe hill", "from_m": 500,
                                                "to_m": 2500}, headers=ann["headers"])  # fmt: skip
    assert made.status_code == 201, made.text
    segment = made.json()["id"]
    ride = await _import(client, bob, 3.0, 2, lon=lon)
    rows: list = []
    for _ in range(6):
        await client.arena.drain()
        rows = (await client.get(f"/segments/{segment}/leaderboard", headers=ann["headers"])).json()["rows"]
        if len(rows) == 2:
            break
    assert [r["athlete"] for r in rows] == [bob["id"], ann["id"]]
    edited = await client.patch(f"/workouts/{ride}", json={"visibility": "private"}, headers=bob["headers"])
    assert edited.status_code == 200, edited.text
    for board in ("overall", "year", "friends"):
        theirs = (await client.get(f"/segments/{segment}/leaderboard", params={"board": board},
                                   headers=ann["headers"])).json()  # fmt: skip
        assert bob["id"] not in [r["athlete"] for r in theirs["rows"]], (board, theirs)
        assert all(r["workout_id"] != ride for r in theirs["rows"])
        assert [r["rank"] for r in theirs["rows"]] == list(range(1, len(theirs["rows"]) + 1))
    mine = (await client.get(f"/segments/{segment}/leaderboard", headers=bob["headers"])).json()
    assert mine["me"]["workout_id"] == ride and mine["rows"][0]["athlete"] == bob["id"]  # still counts for him


async def test_a_private_athlete_shows_on_challenge_and_segment_boards_only_to_those_who_may_see_them(client):
    _, org = await organizer(client)
    priv, fan, other = await signup(client, "Prue"), await signup(client, "Fan"), await signup(client, "Oli")
    assert (await client.patch("/me", json={"private": True}, headers=priv["headers"])).status_code == 200
    asked = await client.post(f"/users/{priv['id']}/follow", headers=fan["headers"])
    assert asked.status_code < 300, asked.text
    approved = await client.post(f"/me/follow-requests/{fan['id']}/accept", headers=priv["headers"])
    assert approved.status_code < 300, approved.text
    today = datetime.now(UTC).date()
    period = {"first_day": (today - timedelta(days=30)).isoformat(), "last_day": (today + timedelta(days=5)).isoformat()}
    challenge = (await client.post("/challenges", json={"title": "Private probe", "goal_type": "distance_m",
                                                        "goal": 100_000, **period}, headers=org)).json()  # fmt: skip
    for who in (priv, other):
        assert (await client.post(f"/challenges/{challenge['id']}/join", headers=who["headers"])).status_code == 200
    lon = LON0 + random.uniform(4.5, 6.0)  # a road of its own
    first = await _import(client, other, 4.0, 1, lon=lon)
    made = await client.post("/segments", json={"workout_id": first, "name": "Private hill", "from_m": 500,
                                                "to_m": 2500}, headers=other["headers"])  # fmt: skip
    segment = made.json()["id"]
    await _import(client, priv, 3.0, 2, lon=lon)
    await _import(client, other, 4.0, 3, lon=lon)

    def challenge_board(who: dict):
        return client.get(f"/challenges/{challenge['id']}/leaderboard", headers=who["headers"])

    rows: list = []
    for _ in range(6):
        await client.arena.drain()
        rows = (await client.get(f"/segments/{segment}/leaderboard", headers=other["headers"])).json()["rows"]
        if len(rows) == 2:
            break
    names = {r["name"] for r in (await challenge_board(other)).json()["rows"]}
    assert "Prue" not in names and "Private athlete" in names  # a stranger sees a stand-in
    ids = {r["user_id"] for r in (await challenge_board(other)).json()["rows"]}
    assert priv["id"] not in ids  # ...and not the id, which would find the profile
    assert "Prue" in {r["name"] for r in (await challenge_board(fan)).json()["rows"]}  # an approved follower
    assert "Prue" in {r["name"] for r in (await challenge_board(priv)).json()["rows"]}  # herself
    assert priv["id"] not in [r["athlete"] for r in rows] and "Private athlete" in [r["name"] for r in rows]
    seen_by_fan = (await client.get(f"/segments/{segment}/leaderboard", headers=fan["headers"])).json()["rows"]
    assert priv["id"] in [r["athlete"] for r in seen_by_fan]


# -- the pages -----------------------------------------------------------------------------------------------

PAGES = ("group", "challenge", "training", "gear", "offers")


def test_the_community_pages_build_text_nodes_and_open_only_the_apis_links():
    for page in PAGES:
        source = (WEB / f"{page}.js").read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                     "setAttribute(\"href\"", "href:", ".href ="):  # fmt: skip
            assert sink not in source, (page, sink)
        opened = re.findall(r"window\.open\(([^,]+),", source)
        assert opened in ([], ["link.url"]), (page, opened)  # the API's signed link, from an http(s) feed URL
