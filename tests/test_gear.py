"""Gear as entities on a real host and relay over SQLite (no Ray): mileage from workout events, exact under
edits, reassignment, deletes that overtake their record, and redeliveries; the wear warning with replacement
suggestions from the catalogue in the inbox, once; a purchase becoming gear once; promo codes' rules; and the
pure rules: the product feed's validation, webhook signatures and click ids."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.account import Account
from actors.catalogue import Catalogue
from actors.gear import CATALOGUE_ID, MAX_GEAR, Gear
from actors.inbox import Inbox
from actors.orders import ShopOrder
from actors.promo import PromoDirectory, Promotion, split_code
from engine.codec import unpack
from engine.commerce.feed import FeedError, fingerprint, parse_feed, parse_price
from engine.commerce.signatures import BadSignature, make_click, read_click, sign_webhook, verify_webhook
from engine.commerce.suggestions import suggest
from engine.commerce.wear import life_m
from engine.config import HostConfig
from engine.errors import NotFound, Rejected
from engine.events import EVENT_MESSAGE
from engine.host import Host
from engine.relay import Relay, subscriptions
from persistence.sqlite import SQLiteStore

KINDS = [Account, Inbox, Gear, Catalogue, ShopOrder, Promotion, PromoDirectory]
SPORTS = ("run", "ride", "swim", "walk", "hike", "row", "other")
NOON = 1_790_000_000.0


def _summary(workout_id: str, km: float = 10, minutes: float = 50, sport: str = "run") -> dict:
    return {"id": workout_id, "sport": sport, "title": workout_id, "start": NOON, "elapsed_s": minutes * 60,
            "moving_s": minutes * 60, "distance_m": km * 1000, "visibility": "public", "source": "manual",
            "best_efforts": {}}  # fmt: skip


class World:
    def __init__(self, path) -> None:
        self.host = Host(
            KINDS, SQLiteStore(path / "arena.db"), HostConfig(snapshot_interval=3600, passivate_after=3600)
        )
        self.store = SQLiteStore(path / "arena.db")
        self.relay = Relay(self.store, self.host.deliver, self.host.ask, subscriptions(KINDS), backoff=0.001, retries=2)

    async def ask(self, kind, entity_id, message_type, body=None):
        return await self.host.ask(kind, entity_id, message_type, body)

    async def athlete(self, user: str) -> str:
        await self.ask("account", user, "register", {"email": f"{user}@x.org", "password_hash": "-",
                                                     "display_name": user.title()})  # fmt: skip
        return user

    async def shoes(self, user: str, gear_id: str = "s1", **fields) -> dict:
        body = {"type": "shoes", "name": "Pegasus", "brand": "Acme", "sports": ["run"], "price": 12_000, **fields}
        return await self.ask("gear", user, "add", {"gear_id": gear_id, "fields": body, "default_for": ["run"]})

    async def workout(self, user: str, summary: dict) -> None:
        await self.ask("account", user, "add_workout", {"summary": summary})
        await self.relay.drain()

    async def card(self, user: str, gear_id: str = "s1") -> dict:
        return await self.ask("gear", user, "card", {"gear_id": gear_id})

    async def events(self, type_: str) -> list[dict]:
        return [unpack(r.body) for r in await self.store.read_events(0, 100_000) if r.type == type_]


@pytest.fixture
async def world(tmp_path):
    world = World(tmp_path)
    await world.host.start()
    await world.store.open()
    await world.relay.load_cursors()
    yield world
    await world.host.stop()
    await world.store.close()


async def test_mileage_follows_records_edits_reassignment_and_deletes(world):
    ana = await world.athlete("ana")
    await world.shoes(ana)
    await world.ask("gear", ana, "add", {"gear_id": "b1", "fields": {"type": "bike", "name": "Roadie"},
                                         "default_for": ["ride"]})  # fmt: skip
    await world.workout(ana, _summary("w1", km=10))
    await world.workout(ana, _summary("w2", km=5, minutes=30))
    await world.workout(ana, _summary("r1", km=40, minutes=90, sport="ride"))
    shoes = await world.card(ana)
    assert (shoes["distance_m"], shoes["time_s"], shoes["workouts"]) == (15_000, 80 * 60, 2)
    assert (await world.card(ana, "b1"))["distance_m"] == 40_000
    await world.ask("account", ana, "edit_workout", {"workout_id": "w1", "changes": {"distance_m": 12_000}})
    await world.relay.drain()
    assert (await world.card(ana))["distance_m"] == 17_000
    await world.ask("gear", ana, "assign", {"workout_id": "w2", "gear_id": "b1"})  # by hand
    assert (await world.card(ana))["distance_m"] == 12_000 and (await world.card(ana, "b1"))["distance_m"] == 45_000
    await world.ask("account", ana, "remove_workout", {"workout_id": "w2"})
    await world.relay.drain()
    assert (await world.card(ana, "b1"))["distance_m"] == 40_000 and (await world.card(ana, "b1"))["workouts"] == 1
    assert await world.ask("gear", ana, "of_workout", {"workout_id": "w1"}) == {
        "workout_id": "w1",
        "gear_id": "s1",
        "manual": False,
    }
    await world.ask("gear", ana, "remove", {"gear_id": "b1"})
    await world.workout(ana, _summary("r2", km=20, sport="ride"))  # its default went with it: counts for nothing
    assert [i["id"] for i in (await world.ask("gear", ana, "listing"))["items"]] == ["s1"]


async def test_a_delete_that_overtakes_its_record_and_redeliveries_count_nothing_twice(world):
    bo = await world.athlete("bo")
    await world.shoes(bo)
    source = ["account", bo]

    def event(type_: str, seq: int, fields: dict) -> list:
        return [type_, 3 if type_ == "workout.recorded" else 1, *source, seq, 0, NOON, bo, fields, seq]

    recorded = {"owner": bo, "owner_name": "Bo", "region": None, "workout_id": "w", "visibility": "public",
                "summary": _summary("w", km=8)}  # fmt: skip
    edited = {"owner": bo, "workout_id": "w", "before": _summary("w", km=8), "after": _summary("w", km=9)}
    deleted = {"owner": bo, "workout_id": "w", "summary": _summary("w", km=9)}
    for batch in ([event("workout.deleted", 12, deleted)], [event("workout.edited", 11, edited)],
                  [event("workout.recorded", 10, recorded)]):  # fmt: skip
        (outcome,) = await world.host.deliver([("gear", bo, EVENT_MESSAGE, {"events": batch}, None)])
        assert outcome["applied"] == 1
    assert (await world.card(bo))["distance_m"] == 0
    kept = {"owner": bo, "owner_name": "Bo", "region": None, "workout_id": "k", "visibility": "public",
            "summary": _summary("k", km=7)}  # fmt: skip
    for _ in range(3):  # the same event redelivered: applied once
        await world.host.deliver([("gear", bo, EVENT_MESSAGE, {"events": [event("workout.recorded", 20, kept)]}, None)])
    assert (await world.card(bo))["distance_m"] == 7_000


async def test_the_wear_warning_carries_suggestions_once_and_reaches_the_inbox(world):
    cy = await world.athlete("cy")
    products = [
        {"id": "p-near", "title": "Runner 2", "link": "https://shop.example/p", "image": None, "price": 13_000,
         "currency": "EUR", "availability": "in_stock", "brand": "Acme", "gtin": None, "mpn": "R2",
         "product_type": None, "gear_type": "shoes", "component": None, "sports": ["run"]},
    ]  # fmt: skip
    far = {**products[0], "id": "p-dear", "price": 40_000}
    bike = {**products[0], "id": "p-bike", "gear_type": "bike"}
    gone = {**products[0], "id": "p-gone", "availability": "out_of_stock"}
    everything = [*products, far, bike, gone]
    await world.ask("catalogue", CATALOGUE_ID, "apply_sync", {
        "base": 0, "upserts": everything, "prints": {p["id"]: fingerprint(p) for p in everything}, "removed": [],
        "report": {}})  # fmt: skip
    await world.shoes(cy, start_m=700_000)  # 800 km is a shoe's life: 90% is 720 km
    await world.workout(cy, _summary("a", km=15))
    assert await world.events("gear.worn") == []
    await world.workout(cy, _summary("b", km=10))
    await world.workout(cy, _summary("c", km=10))
    (worn,) = await world.events("gear.worn")
    assert worn["gear"]["used_m"] == 725_000
    (suggested,) = await world.events("gear.suggested")
    assert [p["id"] for p in suggested["suggestions"]] == ["p-near"]
    inbox = await world.ask("inbox", cy, "browse")
    (note,) = [i for i in inbox["items"] if i["type"] == "gear_worn"]
    assert note["data"]["suggestions"][0]["id"] == "p-near" and note["data"]["url"] == "/gear"
    await world.ask("gear", cy, "edit", {"gear_id": "s1", "changes": {"life_m": 2_000_000}})  # a longer life...
    await world.workout(cy, _summary("d", km=10))
    assert len(await world.events("gear.worn")) == 1  # ...and nothing new to warn of


async def test_a_purchase_delivered_twice_adds_its_gear_once(world):
    di = await world.athlete("di")
    order = {"id": "A-1001", "total": 24_000, "currency": "EUR", "lines": [
        {"product_id": "p1", "title": "Trail 3", "brand": "Acme", "quantity": 2, "price": 12_000, "gear_type": "shoes",
         "component": None, "sports": ["run"]},
        {"product_id": "sock", "title": "Socks", "brand": None, "quantity": 1, "price": 900, "gear_type": None,
         "component": None, "sports": []}]}  # fmt: skip
    first = await world.ask("shop_order", "h1", "record", {"order": order, "user_id": di})
    again = await world.ask("shop_order", "h1", "record", {"order": order, "user_id": di})
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    await world.relay.drain()
    assert len(await world.events("shop.purchased")) == 1
    listing = await world.ask("gear", di, "listing")
    assert [(i["name"], i["product_id"]) for i in listing["items"]] == [("Trail 3", "p1")] * 2
    assert listing["defaults"]["run"] in {i["id"] for i in listing["items"]}


async def test_gear_is_bounded_and_checked(world):
    ed = await world.athlete("ed")
    with pytest.raises(Rejected, match="component"):
        await world.ask("gear", ed, "add", {"gear_id": "x", "fields": {"type": "shoes", "component": "chain"}})
    with pytest.raises(NotFound):
        await world.ask("gear", ed, "assign", {"workout_id": "w", "gear_id": "nope"})
    for n in range(MAX_GEAR):
        await world.ask("gear", ed, "add", {"gear_id": f"g{n}", "fields": {"type": "other", "name": "x"}})
    with pytest.raises(Rejected, match="at most"):
        await world.ask("gear", ed, "add", {"gear_id": "one-more", "fields": {"type": "other", "name": "x"}})


async def test_promo_codes_single_use_per_user_total_and_expiry(world):
    terms = {"title": "Spring", "description": "", "discount": {"percent": 10}, "mode": "codes", "per_user": 1,
             "total": 0, "starts": 0, "expires": 4_000_000_000, "created_by": "admin"}  # fmt: skip
    await world.ask("promotion", "SPRING", "create", {"terms": terms, "codes": ["AAAAAAAA", "BBBBBBBB"]})
    assert (await world.ask("promotion", "SPRING", "redeem", {"suffix": "AAAAAAAA", "user_id": "u1"}))["code"] == (
        "SPRING-AAAAAAAA"
    )
    with pytest.raises(Rejected, match="already used"):
        await world.ask("promotion", "SPRING", "redeem", {"suffix": "AAAAAAAA", "user_id": "u2"})
    with pytest.raises(Rejected, match="limit per athlete"):
        await world.ask("promotion", "SPRING", "redeem", {"suffix": "BBBBBBBB", "user_id": "u1"})
    with pytest.raises(NotFound):
        await world.ask("promotion", "SPRING", "redeem", {"suffix": "ZZZZZZZZ", "user_id": "u2"})
    shared = {**terms, "mode": "shared", "per_user": 2, "total": 3}
    await world.ask("promotion", "TEAM", "create", {"terms": shared, "codes": []})
    for user in ("u1", "u1", "u2"):
        await world.ask("promotion", "TEAM", "redeem", {"suffix": None, "user_id": user})
    with pytest.raises(Rejected, match="exhausted"):
        await world.ask("promotion", "TEAM", "redeem", {"suffix": None, "user_id": "u3"})
    await world.ask("promotion", "OLD", "create", {"terms": {**shared, "expires": 1.0}, "codes": []})
    with pytest.raises(Rejected, match="expired"):
        await world.ask("promotion", "OLD", "redeem", {"suffix": None, "user_id": "u3"})
    await world.relay.drain()
    offers = await world.ask("promo_directory", "offers", "current", {"at": 2_000_000_000})
    assert [o["id"] for o in offers] == ["SPRING", "TEAM"]
    assert len(await world.events("promo.redeemed")) == 4
    assert split_code(" spring-aaaaaaaa ") == ("SPRING", "AAAAAAAA") and split_code("no way!") is None


# -- the pure rules ----------------------------------------------------------------------------

HEADER = "id\ttitle\tlink\tprice\tavailability\tbrand\tgtin\tmpn\tproduct_type\tcustom_label_0\tcustom_label_1"


def _feed(*rows: str) -> bytes:
    return "\n".join([HEADER, *rows]).encode()


def test_the_feed_keeps_good_rows_and_says_why_each_bad_one_is_refused():
    feed = parse_feed(_feed(
        "s1\tRunner\thttps://shop.example/s1\t89.90 EUR\tin stock\tAcme\t4006381333931\t\tShoes\tshoes\trun,hike",
        "c1\tChain\thttps://shop.example/c1\t30 EUR\tin_stock\tAcme\t\tCH-1\t\tcomponent:chain\tride",
        "bad1\t\tftp://x\t-3 EUR\tsoon\tAcme\t123\t\t\tboat\tcurling",
        "s1\tRunner again\thttps://shop.example/s1\t89.90 EUR\tin_stock\tAcme\t\tM\t\tshoes\trun",
        "short\trow",
        "",
    ), SPORTS)  # fmt: skip
    assert [p["id"] for p in feed.products] == ["s1", "c1"]
    assert feed.products[0]["price"] == 8990 and feed.products[0]["sports"] == ["hike", "run"]
    assert feed.products[1]["component"] == "chain"
    assert feed.rows == 5 and feed.rejected_count == 3
    bad = feed.rejected[0]
    assert bad["line"] == 4 and bad["id"] == "bad1"
    text = " ".join(bad["reasons"])
    for words in ("title is missing", "link", "price", "availability", "gtin", "custom_label_0", "curling"):
        assert words in text, words
    assert feed.rejected[1]["reasons"] == ["this id came earlier in the feed"]
    assert "cells" in feed.rejected[2]["reasons"][0]


@pytest.mark.parametrize("data, words", [(b"", "header"), (b"\xff\xfe", "UTF-8"), (b"id\ttitle\n", "lacks")])
def test_an_unreadable_feed_is_refused_whole(data, words):
    with pytest.raises(FeedError, match=words):
        parse_feed(data, SPORTS)


def test_prices_thresholds_and_suggestions():
    assert parse_price("89.9 EUR") == (8990, "EUR") and parse_price("89,90 EUR") is None
    assert life_m("shoes", None, None) == 800_000 and life_m("component", "chain", None) == 3_000_000
    assert life_m("component", "tyres", 6_000_000) == 6_000_000 and life_m("other", None, None) is None
    product = {"availability": "in_stock", "gear_type": "shoes", "component": None, "sports": ["run"], "price": 100,
               "brand": "A", "id": "p"}  # fmt: skip
    assert suggest([product], {"type": "shoes", "sports": ["run"], "price": 100}) == [product]
    assert suggest([product], {"type": "shoes", "sports": ["swim"], "price": 100}) == []
    assert suggest([product], {"type": "shoes", "sports": ["run"], "price": 1_000}) == []


def test_webhook_signatures_refuse_forgeries_stale_times_and_accept_a_rotated_key():
    body = b'{"id": "1"}'
    header = sign_webhook("new", body, 1_000)
    assert verify_webhook(["old", "new"], header, body, 1_100) == 1_000
    for secrets, signature, sent, now, words in (
        (["new"], header, body + b" ", 1_100, "no signature matches"),
        (["other"], header, body, 1_100, "no signature matches"),
        (["new"], header, body, 1_000 + 301, "more than 300 s"),
        (["new"], None, body, 1_000, "missing"),
        (["new"], "t=abc,v1=00", body, 1_000, "not t="),
        (["new"], "t=1000,v1=zz", body, 1_000, "hexadecimal"),
    ):
        with pytest.raises(BadSignature, match=words):
            verify_webhook(secrets, signature, sent, now)


def test_click_ids_are_signed_and_expire():
    click = make_click("k", "user1", "p.1", 1_000)
    assert read_click("k", click, 2_000, ttl=3_600) == ("user1", "p.1", 1_000)
    with pytest.raises(BadSignature, match="expired"):
        read_click("k", click, 1_000 + 3_601, ttl=3_600)
    with pytest.raises(BadSignature, match="signature"):
        read_click("other", click, 2_000, ttl=3_600)
    payload, mac = click.split(".")
    with pytest.raises(BadSignature):
        read_click("k", f"{payload[:-2]}AA.{mac}", 2_000, ttl=3_600)
    with pytest.raises(BadSignature, match="not a click id"):
        read_click("k", "garbage", 2_000, ttl=3_600)


def _interleavings(draw_order: list[int], streams: dict[str, list]) -> list:
    """Merge the per-type streams in the order drawn (each type keeps its own order, as its consumer does)."""
    cursors = dict.fromkeys(streams, 0)
    merged = []
    names = sorted(streams)
    for pick in draw_order:
        live = [n for n in names if cursors[n] < len(streams[n])]
        if not live:
            break
        name = live[pick % len(live)]
        merged.append(streams[name][cursors[name]])
        cursors[name] += 1
    for name in names:
        merged.extend(streams[name][cursors[name] :])
    return merged


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    workouts=st.lists(
        st.tuples(st.sampled_from(["run", "ride"]), st.lists(st.integers(0, 50_000), min_size=1, max_size=3),
                  st.booleans()),
        min_size=1, max_size=6,
    ),
    order=st.lists(st.integers(0, 5), max_size=40),
    repeats=st.integers(0, 3),
)  # fmt: skip
def test_mileage_is_exact_whatever_order_the_three_event_types_arrive_in_and_however_often(
    tmp_path_factory, workouts, order, repeats
):
    """Each workout is recorded, edited, maybe deleted; the three types' streams interleave at random and a
    prefix is delivered again: each item's distance is the sum of its workouts' newest figures."""
    streams: dict[str, list] = {"workout.recorded": [], "workout.edited": [], "workout.deleted": []}
    expected = {"s1": 0.0, "b1": 0.0}
    seq = 0
    for n, (sport, distances, deleted) in enumerate(workouts):
        workout_id = f"w{n}"
        summaries = [{**_summary(workout_id, km=d / 1000, sport=sport)} for d in distances]
        seq += 1
        streams["workout.recorded"].append(("workout.recorded", 3, seq, {"owner": "u", "owner_name": "U",
            "region": None, "workout_id": workout_id, "visibility": "public", "summary": summaries[0]}))  # fmt: skip
        for before, after in zip(summaries, summaries[1:], strict=False):
            seq += 1
            streams["workout.edited"].append(("workout.edited", 1, seq, {"owner": "u", "workout_id": workout_id,
                                                                         "before": before, "after": after}))  # fmt: skip
        if deleted:
            seq += 1
            streams["workout.deleted"].append(("workout.deleted", 1, seq, {"owner": "u", "workout_id": workout_id,
                                                                           "summary": summaries[-1]}))  # fmt: skip
        else:
            expected["s1" if sport == "run" else "b1"] += distances[-1]
    merged = _interleavings(order, streams)
    deliveries = merged + merged[: repeats * len(merged) // 3]  # a relay that restarted sends a prefix again

    async def run() -> dict:
        world = World(tmp_path_factory.mktemp("gear"))
        await world.host.start()
        try:
            await world.ask("gear", "u", "add", {"gear_id": "s1", "fields": {"type": "shoes", "name": "S"},
                                                 "default_for": ["run"]})  # fmt: skip
            await world.ask("gear", "u", "add", {"gear_id": "b1", "fields": {"type": "bike", "name": "B"},
                                                 "default_for": ["ride"]})  # fmt: skip
            for type_, version, event_seq, fields in deliveries:
                wire = [type_, version, "account", "u", event_seq, 0, NOON, "u", fields, event_seq]
                await world.host.deliver([("gear", "u", EVENT_MESSAGE, {"events": [wire]}, None)])
            return {i["id"]: i["distance_m"] for i in (await world.ask("gear", "u", "listing"))["items"]}
        finally:
            await world.host.stop()

    # every workout counted once: equal up to the float sum's order (a millimetre over 30 km is 1e-8)
    assert asyncio.run(run()) == pytest.approx(expected, abs=1e-6)
