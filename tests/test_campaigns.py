"""Campaigns through the HTTP API against a real Arena: targeting (region, sport, tier), marketing consent
honoured and recorded, delivery in each recipient's local time with quiet hours (deferred, not dropped), the
frequency cap, the one-click opt-out link (signed, no login), admin-only routes and hostile input."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from actors.campaign_audience import due_at, matches
from actors.inbox import Inbox
from engine.config import HostConfig
from engine.events import EVENT_MESSAGE
from engine.host import Host
from persistence.sqlite import SQLiteStore
from tests.test_api import PASSWORD, assert_problem, signup

pytestmark = pytest.mark.ray

YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")  # past everywhere: due now
TARGET = {"regions": [], "sports": [], "min_level": 0, "groups": [], "tiers": []}


def _zone(hours: range) -> str:
    """A fixed-offset zone whose local hour now is in ``hours``."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        if (now + timedelta(hours=offset)).hour in hours and (now + timedelta(hours=offset, minutes=20)).hour in hours:
            return f"Etc/GMT{-offset:+d}" if offset else "UTC"
    raise AssertionError("no zone")


DAY_ZONE, QUIET_ZONE = _zone(range(10, 20)), _zone(range(1, 6))


def test_local_send_times_move_out_of_quiet_hours_to_eight_in_the_morning():
    paris = "Europe/Paris"
    noon = datetime(2030, 6, 3, 10, 0, tzinfo=UTC).timestamp()  # 12:00 in Paris (summer)
    assert due_at("2030-06-03T18:30", paris, noon) == datetime(2030, 6, 3, 16, 30, tzinfo=UTC).timestamp()
    assert due_at("2030-06-03T23:15", paris, noon) == datetime(2030, 6, 4, 6, 0, tzinfo=UTC).timestamp()
    assert due_at("2030-06-03T06:00", paris, noon - 8 * 3600) == datetime(2030, 6, 3, 6, 0, tzinfo=UTC).timestamp()
    assert due_at("2030-06-03T09:00", "Asia/Tokyo", noon) == noon  # passed there already: now (19:00 local)
    assert due_at("2030-06-03T09:00", "Not/AZone", 0.0) == datetime(2030, 6, 3, 9, 0, tzinfo=UTC).timestamp()


def test_targeting_needs_consent_and_every_criterion_given():
    member = {"c": True, "r": "Bretagne", "s": ["run"], "l": 3, "g": ["g1"], "t": "premium"}
    assert matches(member, TARGET)
    assert not matches({**member, "c": False}, TARGET)
    assert matches(member, {**TARGET, "regions": ["Bretagne"], "sports": ["ride", "run"], "tiers": ["premium"]})
    assert not matches(member, {**TARGET, "regions": ["Alsace"]})
    assert not matches(member, {**TARGET, "min_level": 4})
    assert not matches(member, {**TARGET, "groups": ["g2"]})
    assert not matches({**member, "t": "free"}, {**TARGET, "tiers": ["premium"]})


async def _admin(client) -> dict:
    await client.post("/accounts", json={"email": "boss@example.com", "password": PASSWORD, "display_name": "Boss"})
    login = await client.post("/auth/login", json={"email": "boss@example.com", "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _athlete(client, name: str, *, consent: bool, region: str, zone: str = DAY_ZONE) -> tuple[str, dict]:
    user_id, headers = await signup(client, name)
    answer = await client.patch("/me", headers=headers, json={
        "marketing_consent": consent, "profile": {"region": region, "sports": ["run"], "time_zone": zone}})  # fmt: skip
    assert answer.status_code == 200 and answer.json()["marketing_consent"] is consent, answer.text
    return user_id, headers


async def _marketing(client, headers) -> list[dict]:
    items = (await client.get("/notifications", headers=headers, params={"limit": 50})).json()["items"]
    return [i for i in items if i["type"] == "marketing"]


async def _campaign(client, boss, region: str, title: str) -> str:
    body = {"kind": "offer", "title": title, "body": "20% off trail shoes", "link": "/offers", "send_at": YESTERDAY,
            "target": {"regions": [region], "sports": ["run"]}}  # fmt: skip
    answer = await client.post("/campaigns", json=body, headers=boss)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


async def _settled(client, boss, campaign_id: str, sent: int) -> dict:
    for _ in range(60):
        figures = (await client.get(f"/campaigns/{campaign_id}", headers=boss)).json()
        if figures["shards_scheduled"] == 64 and figures["sent"] >= sent:
            await client.arena.drain()
            return figures
        await asyncio.sleep(0.25)
    raise AssertionError(figures)


async def test_a_campaign_reaches_consenting_targeted_athletes_in_their_daytime_capped_and_opted_out(client):
    boss = await _admin(client)
    region = f"R{time.time_ns()}"
    ana_id, ana = await _athlete(client, "Ana", consent=True, region=region)
    _, bo = await _athlete(client, "Bo", consent=False, region=region)
    _, cy = await _athlete(client, "Cy", consent=True, region="elsewhere")
    _, dee = await _athlete(client, "Dee", consent=True, region=region, zone=QUIET_ZONE)
    first = await _campaign(client, boss, region, "Spring offer")
    figures = await _settled(client, boss, first, 1)
    assert figures["sent"] == 1 and figures["pending_deliveries"] == 1  # Dee's night: deferred to 08:00, kept
    for _ in range(40):
        if await _marketing(client, ana):
            break
        await asyncio.sleep(0.25)
    got = await _marketing(client, ana)
    assert [n["data"]["title"] for n in got] == ["Spring offer"] and got[0]["data"]["campaign_id"] == first
    for other in (bo, cy, dee):  # no consent, not targeted, asleep
        assert await _marketing(client, other) == []
    promoted = (await client.get("/feed", headers=ana)).json()["promoted"]
    assert promoted["title"] == "Spring offer" and promoted["campaign_id"] == first, "the feed shows it too"
    for other in (bo, cy, dee):
        assert (await client.get("/feed", headers=other)).json()["promoted"] is None

    for title in ("Second", "Third"):  # the cap: 2 in 7 days
        await _settled(client, boss, await _campaign(client, boss, region, title), 1)
    await asyncio.sleep(1.0)
    await client.arena.drain()
    assert [n["data"]["title"] for n in await _marketing(client, ana)] == ["Second", "Spring offer"]
    promoted = (await client.get("/feed", headers=ana)).json()["promoted"]
    assert promoted["title"] == "Second", "the newest delivered, not the capped third"
    cursor = (await client.get("/feed", params={"limit": 1}, headers=ana)).json()["next_cursor"]
    if cursor:
        assert (await client.get("/feed", params={"cursor": cursor}, headers=ana)).json()["promoted"] is None
    assert_problem(await client.delete(f"/feed/promoted/{promoted['campaign_id']}"), 401)
    gone = await client.delete(f"/feed/promoted/{promoted['campaign_id']}", headers=ana)
    assert gone.status_code == 204 and (await client.get("/feed", headers=ana)).json()["promoted"] is None
    assert_problem(await client.delete("/feed/promoted/" + "x" * 300, headers=ana), 422)

    mine = (await client.get("/me/marketing", headers=ana)).json()
    assert mine["marketing_consent"] is True and mine["consent_log"][-1]["via"] == "settings"
    assert_problem(await client.post("/marketing/opt-out", params={"token": mine["opt_out_token"][:-3] + "AAA"}), 400)
    assert_problem(await client.post("/marketing/opt-out", params={"token": "x" * 600}), 422)
    out = await client.post(mine["opt_out_url"].removeprefix("/api/v1"))  # one click: no token, no login
    assert out.status_code == 200 and out.json()["marketing_consent"] is False, out.text
    log = (await client.get("/me/marketing", headers=ana)).json()["consent_log"]
    assert [(e["consent"], e["via"]) for e in log] == [(True, "settings"), (False, "link")]
    await asyncio.sleep(1.0)  # the opt-out reaches the audience shard
    fourth = await _campaign(client, boss, region, "Fourth")
    assert (await _settled(client, boss, fourth, 0))["sent"] == 0 and ana_id


async def test_campaign_routes_are_for_admins_and_refuse_hostile_input(client):
    boss = await _admin(client)
    _, ana = await signup(client, "Ana")
    good = {"kind": "news", "title": "Hello", "send_at": "2030-01-01T09:00"}
    assert_problem(await client.post("/campaigns", json=good), 401)
    assert_problem(await client.post("/campaigns", json=good, headers=ana), 403, "admin")
    assert_problem(await client.get("/campaigns/abc", headers=ana), 403)
    assert_problem(await client.post("/campaigns/abc/cancel", headers=ana), 403)
    assert_problem(await client.get("/campaigns/nope", headers=boss), 404)
    assert_problem(await client.get("/me/marketing"), 401)
    for bad in [{**good, "title": "x" * 10_000}, {**good, "send_at": "tomorrow"}, {**good, "kind": "spam"},
                {**good, "send_at": "2030-01-01T09:00+02:00"}, {**good, "link": "javascript:alert(1)"},
                {**good, "target": {"sports": ["boat"]}}, {**good, "target": {"regions": ["r"] * 500}},
                {**good, "admin": True}, {**good, "send_at": "9999-01-01T00:00"}]:  # fmt: skip
        assert_problem(await client.post("/campaigns", json=bad, headers=boss), 422)
    assert_problem(await client.patch("/me", json={"marketing_consent": "yes please"}, headers=ana), 422)
    created = await client.post("/campaigns", json=good, headers=boss)
    assert created.status_code == 201
    cancelled = await client.post(f"/campaigns/{created.json()['id']}/cancel", headers=boss)
    assert cancelled.status_code == 200 and cancelled.json()["cancelled"] is True
    assert cancelled.json()["pending_deliveries"] == 0


def _wire(type_: str, version: int, seq: int, fields: dict) -> list:
    """An event as a relay delivers it: [type, version, kind, id, seq, idx, at, user, fields, position]."""
    return [type_, version, "campaign_audience", "a07", seq, 0, time.time(), None, fields, seq]


async def test_the_feeds_promoted_card_goes_with_consent_a_mute_or_a_week_and_a_v1_event_still_counts(tmp_path):
    host = Host([Inbox], SQLiteStore(tmp_path / "arena.db"), HostConfig(snapshot_interval=3600))
    await host.start()
    try:
        message = {"kind": "offer", "title": "Spring", "body": "", "link": None}
        old = _wire("campaign.sent", 1, 1, {"campaign_id": "c1", "user_id": "ana", "message": message})
        await host.ask("inbox", "ana", EVENT_MESSAGE, {"events": [old]})  # a v1 event from before batches
        assert (await host.ask("inbox", "ana", "promotion"))["campaign_id"] == "c1"
        await host.ask("inbox", "ana", "set_mutes", {"types": ["marketing"]})
        assert await host.ask("inbox", "ana", "promotion") is None, "a muted type hides the card"
        await host.ask("inbox", "ana", "set_mutes", {"types": []})
        assert (await host.ask("inbox", "ana", "promotion"))["campaign_id"] == "c1"
        withdrawn = _wire("audience.changed", 1, 2, {"user_id": "ana", "shard": "a07", "consent": False,
                                                     "profile": {}})  # fmt: skip
        await host.ask("inbox", "ana", EVENT_MESSAGE, {"events": [withdrawn]})
        assert await host.ask("inbox", "ana", "promotion") is None, "withdrawn consent takes it away at once"
        later = _wire("campaign.sent", 2, 3, {"campaign_id": "c2", "user_ids": ["ana"], "message": message})
        await host.ask("inbox", "ana", EVENT_MESSAGE, {"events": [later]})
        assert (await host.ask("inbox", "ana", "promotion"))["campaign_id"] == "c2"
        card = await host.ask("inbox", "ana", "promotion", at=time.time() + 8 * 86_400)
        assert card is None, "a week later it is no longer promoted"
    finally:
        await host.stop()


async def test_an_event_is_promoted_to_the_consenting_athletes_of_its_regions_by_admins_only(client):
    from tests.test_races import organizer
    from tests.test_sport_events import _event

    boss = await _admin(client)
    _, org = await organizer(client)
    region = f"R{time.time_ns()}"
    _, ana = await _athlete(client, "Ana", consent=True, region=region)
    _, bo = await _athlete(client, "Bo", consent=True, region="elsewhere")
    event = await client.post("/events", json=_event(title="Lyon 10k"), headers=org)
    assert event.status_code == 201, event.text
    path = f"/events/{event.json()['id']}/promotion"
    body = {"regions": [region], "send_at": YESTERDAY}
    assert_problem(await client.post(path, json=body), 401)
    assert_problem(await client.post(path, json=body, headers=org), 403, "admin")
    assert_problem(await client.post("/events/nope/promotion", json=body, headers=boss), 404)
    for bad in [{**body, "regions": []}, {**body, "regions": ["r"] * 51}, {**body, "organizer": "me"},
                {**body, "send_at": "soon"}, {**body, "title": "x" * 500}]:  # fmt: skip
        assert_problem(await client.post(path, json=bad, headers=boss), 422)
    assert_problem(await client.post("/events/" + "x" * 65 + "/promotion", json=body, headers=boss), 422)

    made = await client.post(path, json=body, headers=boss)
    assert made.status_code == 201, made.text
    await _settled(client, boss, made.json()["id"], 1)
    for _ in range(40):
        if await _marketing(client, ana):
            break
        await asyncio.sleep(0.25)
    (news,) = await _marketing(client, ana)
    assert news["data"]["title"] == "Lyon 10k: near you" and news["data"]["link"] == path.removesuffix("/promotion")
    assert await _marketing(client, bo) == []
