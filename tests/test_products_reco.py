"""Products and gear to recommend: the content rules on worked examples, the co-purchase index, and the
route over a catalogue seeded through its entity's own sync and orders recorded by their entities."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from actors.catalogue import Catalogue
from actors.co_purchase import MAX_NEIGHBOURS, CoPurchase
from actors.gear import CATALOGUE_ID
from actors.orders import ShopOrder
from engine.commerce.feed import fingerprint
from engine.recommend.products import Pick, needs, rank, worn
from tests.test_api import assert_problem, signup


def _item(**fields) -> dict:
    return {"id": "g", "type": "shoes", "component": None, "name": "Pegasus", "sports": ["run"], "used_m": 0.0,
            "life_m": 800_000, "price": 12_000, "retired": False, "product_id": None, **fields}  # fmt: skip


def _product(pid: str, **fields) -> dict:
    return {"id": pid, "title": pid, "link": f"https://shop.example/{pid}", "image": None, "price": 12_000,
            "currency": "EUR", "availability": "in_stock", "brand": "Acme", "gtin": None, "mpn": pid,
            "product_type": None, "gear_type": "shoes", "component": None, "sports": ["run"], **fields}  # fmt: skip


def test_an_item_past_four_fifths_of_its_life_is_worn_with_its_figures():
    items = [_item(id="a", used_m=700_000), _item(id="b", used_m=500_000), _item(id="c", used_m=790_000, retired=True)]
    ((item, why),) = worn(items)
    assert item["id"] == "a"
    assert why == "your Pegasus has done 700 km of its 800 km (88%): a replacement of the same kind, priced like it"


def test_volume_asks_for_shoes_that_last_and_a_second_pair_at_sixty_km_a_week():
    assert needs([], {"run": 5_000}) == []  # under 10 km a week: no rule
    (none,) = needs([], {"run": 30_000})
    assert none.why == "you run 30 km a week and have no running shoes in your gear" and none.gear_type == "shoes"
    (short,) = needs([_item(used_m=600_000)], {"run": 30_000})
    assert short.why == "you run 30 km a week: your shoes have 200 km left, about 7 weeks" and short.price == 12_000
    assert needs([_item(used_m=100_000)], {"run": 30_000}) == []  # 700 km left: 23 weeks
    (rotate,) = needs([_item(used_m=100_000)], {"run": 62_000})
    assert rotate.why == "you run 62 km a week: a second pair to wear in turn lasts both longer"
    (chain,) = needs([], {"ride": 150_000})
    assert (chain.gear_type, chain.component) == ("component", "chain")


def test_ranking_keeps_stock_drops_what_is_owned_and_merges_reasons():
    a, b, gone, mine = (
        _product("a"),
        _product("b", price=9_000),
        _product("gone", availability="preorder"),
        _product("m"),
    )
    picks = [Pick("sport", a, "for run"), Pick("wear", a, "worn", 0.1), Pick("co_purchase", b, "bought", 0.5),
             Pick("wear", gone, "worn"), Pick("volume", mine, "volume")]  # fmt: skip
    ranked = rank(picks, owned={"m"}, limit=10)
    assert [(r["product"]["id"], r["source"], r["why"]) for r in ranked] == [
        ("a", "wear", ["worn", "for run"]),
        ("b", "co_purchase", ["bought"]),
    ]
    assert ranked[0]["score"] == 3.1 and len(rank(picks, set(), limit=1)) == 1


def test_the_co_purchase_index_counts_athletes_once_and_stays_bounded():
    from engine.events import Event

    index = CoPurchase("shop")

    def bought(user: str, *products: str) -> None:
        fields = {"user_id": user, "lines": [{"product_id": p} for p in products]}
        index.on_purchased(Event("shop.purchased", 1, "shop_order", "o", 1, 0, 0.0, user, fields, 0))

    bought("u1", "shoe", "sock")
    bought("u2", "shoe")
    bought("u2", "sock", "gel")
    bought("u2", "sock")  # again: nothing more
    assert index.pairs["shoe"] == {"sock": 2, "gel": 1}
    assert [(t["id"], t["athletes"], t["with"]) for t in index.together(["shoe"])] == [("sock", 2, "shoe"),
                                                                                        ("gel", 1, "shoe")]  # fmt: skip
    for n in range(MAX_NEIGHBOURS + 5):
        bought(f"x{n}", "hub", f"p{n}")
    assert len(index.pairs["hub"]) == MAX_NEIGHBOURS
    index.forget("u2")
    assert index.bought("u2") == [] and index.bought("u1") == ["shoe", "sock"]


# -- the route -----------------------------------------------------------------------------------------

DAY = 86_400


async def _run(client, headers, days_ago: int, km: float) -> None:
    start = datetime.fromtimestamp((int(time.time()) // DAY - days_ago) * DAY + 7 * 3600, UTC).isoformat()
    body = {"sport": "run", "start": start, "duration_s": km * 330, "distance_m": km * 1000}
    assert (await client.post("/workouts", json=body, headers=headers)).status_code == 201


@pytest.mark.ray
async def test_worn_shoes_volume_and_what_others_bought_each_say_why(client):
    tag = uuid.uuid4().hex[:6]
    near, dear, other_sport, out, socks, gel = (f"{tag}-{n}" for n in ("near", "dear", "bike", "out", "socks", "gel"))
    catalogue = [_product(near, price=11_000), _product(dear, price=40_000), _product(out, availability="out_of_stock"),
                 _product(other_sport, gear_type="bike", sports=["ride"]), _product(gel, title="Gel", gear_type=None),
                 _product(socks, gear_type="other", price=1_500)]  # fmt: skip
    ref = client.arena.ref(Catalogue, CATALOGUE_ID)
    known = await ref.ask(Catalogue.fingerprints)
    await ref.ask(Catalogue.apply_sync, base=known["version"], upserts=catalogue,
                  prints={p["id"]: fingerprint(p) for p in catalogue}, removed=[], report={})  # fmt: skip

    ana, headers = await signup(client, "Ana")
    bo, _ = await signup(client, "Bo")
    line = {"product_id": gel, "title": "Gel", "brand": "Acme", "quantity": 1, "price": 300, "gear_type": None,
            "component": None, "sports": ["run"]}  # fmt: skip
    sock_line = {**line, "product_id": socks, "title": "Socks", "gear_type": "other", "price": 1_500}
    assert (await client.patch("/me", json={"profile": {"sports": ["run"]}}, headers=headers)).status_code == 200
    for n, (user, lines) in enumerate([(ana, [line]), (bo, [line, sock_line])]):
        order = {"id": f"{tag}-{n}", "total": 1, "currency": "EUR", "lines": lines}
        await client.arena.ref(ShopOrder, f"{tag}-{n}").ask(ShopOrder.record, order=order, user_id=user)
    shoes = await client.post("/me/gear", json={"type": "shoes", "name": "Pegasus", "sports": ["run"], "price": 11_500,
                                                "start_km": 700}, headers=headers)  # fmt: skip
    assert shoes.status_code == 201, shoes.text
    for days_ago in range(1, 28, 2):
        await _run(client, headers, days_ago, 10)  # 14 × 10 km in 4 weeks: 35 km a week
    assert await client.arena.drain()

    answer = await client.get("/me/recommendations/products", headers=headers)
    assert answer.status_code == 200, answer.text
    items = {i["product"]["id"]: i for i in answer.json()["items"]}
    assert items[near]["source"] == "wear" and items[near]["why"][:2] == [
        "your Pegasus has done 700 km of its 800 km (88%): a replacement of the same kind, priced like it",
        "you run 35 km a week: your shoes have 100 km left, about 3 weeks",
    ]
    assert items[socks]["source"] == "co_purchase"
    assert items[socks]["why"][0] == "bought by 1 athlete who also bought Gel"
    assert items[dear]["source"] == "volume" and items[dear]["why"] == [  # not priced like the worn pair
        "you run 35 km a week: your shoes have 100 km left, about 3 weeks",
        "for run, one of your sports",
    ]
    assert out not in items and gel not in items and other_sport not in items  # out of stock, bought, ride
    assert [i["product"]["id"] for i in answer.json()["items"]][:3] == [near, dear, socks]


@pytest.mark.ray
async def test_products_route_answers_401_422_and_nothing_for_a_newcomer(client):
    assert_problem(await client.get("/me/recommendations/products"), 401)
    _, headers = await signup(client, "New")
    for limit in (0, 31, "x" * 5_000, "1e9", "-1"):
        assert_problem(await client.get("/me/recommendations/products", params={"limit": limit}, headers=headers), 422)
    answer = await client.get("/me/recommendations/products", headers=headers)
    assert answer.status_code == 200 and answer.json() == {"items": []}
