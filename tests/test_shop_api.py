"""The shop through the HTTP API against a real Arena (the app over real hosts, relay and store on the shared
Ray), with a real HTTP server playing the brand's platform (aiohttp on a free loopback port): it serves the
product feed Arena syncs from, and sends signed order webhooks to Arena served by uvicorn, forged, stale,
replayed, malformed and oversized ones included. Gear routes, promo codes (1,000 simultaneous attempts at
100 codes give exactly 100), and who may do what (401, 403, 404, 422)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web

from engine.commerce.signatures import read_click, sign_webhook
from loadtest.server import free_port
from serve.app import API_PREFIX, api
from tests.conftest import module_settings, stop_cluster_services
from tests.test_api import PASSWORD, assert_problem, signup

pytestmark = pytest.mark.ray

FEED_PORT = free_port()
SECRET = "whsec_" + "s" * 32
HEADER = "id\ttitle\tlink\tprice\tavailability\tbrand\tgtin\tmpn\tcustom_label_0\tcustom_label_1"
ROWS = {
    "shoe-1": "shoe-1\tTrail Runner\thttps://shop.example/p/shoe-1?c=blue\t120.00 EUR\tin_stock\tAcme\t\tTR-1\tshoes\trun",
    "shoe-2": "shoe-2\tRoad Runner\thttps://shop.example/p/shoe-2\t110.00 EUR\tin_stock\tAcme\t\tRR-1\tshoes\trun",
    "chain-1": "chain-1\tChain 11s\thttps://shop.example/p/chain-1\t35.00 EUR\tin_stock\tAcme\t\tCH-11\tcomponent:chain\tride",
}
BAD = ["bad-1\tNo price\thttps://shop.example/p/bad-1\t\tin_stock\tAcme\t\tX\tshoes\trun",
       "bad-2\tBoat\thttps://shop.example/p/bad-2\t10.00 EUR\tin_stock\tAcme\t\tX\tboat\tsail"]  # fmt: skip


@pytest.fixture(scope="module")
def settings(ray_cluster, tmp_path_factory):
    """As conftest's, with the shop configured: the platform's feed and the webhook key."""

    settings = module_settings(
        tmp_path_factory,
        "shop",
        shop_feed_url=f"http://127.0.0.1:{FEED_PORT}/feed.tsv",
        shop_webhook_secret=f"old-key,{SECRET}",
    )
    yield settings
    stop_cluster_services(settings.namespace)


class Platform:
    """The brand's e-commerce platform: serves its product feed, sends signed order webhooks."""

    def __init__(self) -> None:
        self.feed = "\n".join([HEADER, *ROWS.values(), *BAD]).encode()
        self.status = 200
        self.fetched = 0
        self.arena_url = ""
        self.http: aiohttp.ClientSession | None = None

    async def _feed(self, request: web.Request) -> web.Response:
        self.fetched += 1
        return web.Response(body=self.feed, status=self.status, content_type="text/tab-separated-values")

    async def send(self, order: dict | bytes, *, secret: str = SECRET, t: float | None = None,
                   header: str | None = None) -> tuple[int, dict]:  # fmt: skip
        body = order if isinstance(order, bytes) else json.dumps(order).encode()
        signature = header if header is not None else sign_webhook(secret, body, int(t or time.time()))
        assert self.http is not None
        async with self.http.post(f"{self.arena_url}/webhooks/shop/orders", data=body,
                                  headers={"Arena-Signature": signature, "Content-Type": "application/json"}) as answer:  # fmt: skip
            return answer.status, await answer.json(content_type=None)


@pytest.fixture
async def platform(client):
    import uvicorn

    shop = Platform()
    app = web.Application()
    app.router.add_get("/feed.tsv", shop._feed)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", FEED_PORT).start()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.05)
    shop.arena_url = f"http://127.0.0.1:{port}{API_PREFIX}"
    shop.http = aiohttp.ClientSession()
    yield shop
    await shop.http.close()
    server.should_exit = True
    await task
    await runner.cleanup()


async def admin(client) -> dict:
    await client.post("/accounts", json={"email": "boss@example.com", "password": PASSWORD, "display_name": "Boss"})
    login = await client.post("/auth/login", json={"email": "boss@example.com", "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _routes(*prefixes: str) -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path.removeprefix(API_PREFIX))
        for path, methods in api.openapi()["paths"].items()
        if path.removeprefix(API_PREFIX).startswith(prefixes)
        for method in methods
    )


async def test_every_shop_and_gear_route_needs_a_token_or_a_signature(client):
    routes = _routes("/shop", "/offers", "/me/gear", "/webhooks", "/workouts/{workout_id}/gear")
    assert len(routes) == 21, routes  # the shop's and the billing provider's webhooks among them
    for method, path in routes:
        url = path.format(product_id="p1", promotion_id="ABC", gear_id="g1", workout_id="w1", sport="run")
        assert_problem(await client.request(method, url, json={}), 401)


async def test_the_catalogue_syncs_from_the_platforms_feed_with_deltas_and_a_report_of_rejected_rows(client, platform):
    boss = await admin(client)
    _, ana = await signup(client, "Ana")
    assert_problem(await client.post("/shop/catalogue/sync", headers=ana), 403, "admin")
    first = await client.post("/shop/catalogue/sync", headers=boss)
    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["new"], report["changed"], report["removed"], report["rejected_count"]) == (3, 0, 0, 2)
    reasons = {r["id"]: r["reasons"] for r in report["rejected"]}
    assert reasons["bad-1"] == ["price is missing"] and any("boat" in r for r in reasons["bad-2"])
    platform.feed = "\n".join([HEADER, ROWS["shoe-1"], ROWS["shoe-2"].replace("110.00", "99.00"),
                               "shoe-3\tNew\thttps://shop.example/p/shoe-3\t130 EUR\tin_stock\tAcme\t\tN3\tshoes\trun",
                               ]).encode()  # fmt: skip
    second = (await client.post("/shop/catalogue/sync", headers=boss)).json()
    assert (second["new"], second["changed"], second["removed"], second["unchanged"]) == (1, 1, 1, 1)
    assert second["products"] == 3 and platform.fetched == 2
    reports = (await client.get("/shop/catalogue/reports", headers=boss)).json()["items"]
    assert [r["version"] for r in reports] == [second["version"], report["version"]]
    assert_problem(await client.get("/shop/catalogue/reports", headers=ana), 403)
    listing = (await client.get("/shop/products", params={"gear_type": "shoes"}, headers=ana)).json()
    assert [p["id"] for p in listing["items"]] == ["shoe-1", "shoe-2", "shoe-3"]
    assert (await client.get("/shop/products/shoe-2", headers=ana)).json()["price"] == 9_900
    assert_problem(await client.get("/shop/products/chain-1", headers=ana), 404)
    platform.status = 500
    assert_problem(await client.post("/shop/catalogue/sync", headers=boss), 502, "HTTP 500")
    platform.status, platform.feed = 200, b"not\ta\tfeed"
    assert_problem(await client.post("/shop/catalogue/sync", headers=boss), 422, "header")


async def _order(client, platform, user: dict, product_id: str = "shoe-1") -> dict:
    link = await client.get(f"/shop/products/{product_id}/link", headers=user["headers"])
    assert link.status_code == 200, link.text
    click = parse_qs(urlsplit(link.json()["url"]).query)["arena_click"][0]
    return {"id": f"#{uuid.uuid4().hex[:10]}", "status": "paid", "currency": "EUR", "click_id": click,
            "lines": [{"product_id": product_id, "title": "Trail Runner", "quantity": 1, "price": "120.00"},
                      {"product_id": "socks-9", "title": "Socks", "quantity": 2, "price": "9.50"}]}  # fmt: skip


async def test_a_signed_order_webhook_adds_the_gear_once_and_forgeries_are_refused(client, platform, settings):
    await client.post("/shop/catalogue/sync", headers=await admin(client))
    user_id, headers = await signup(client, "Bo")
    bo = {"id": user_id, "headers": headers}
    link = (await client.get("/shop/products/shoe-1/link", headers=headers)).json()
    assert link["url"].startswith("https://shop.example/p/shoe-1?c=blue&arena_click=")
    assert read_click(settings.click_secret(), link["click_id"], time.time(), 60)[:2] == (user_id, "shoe-1")
    assert_problem(await client.get("/shop/products/nope/link", headers=headers), 404)
    order = await _order(client, platform, bo)
    for kwargs, words in (({"secret": "forged"}, "no signature matches"), ({"t": time.time() - 400}, "300 s"),
                          ({"header": ""}, "missing"), ({"header": "v1=abcd"}, "not t="), ({"header": "t=1,v1=zz"}, "hexadecimal")):  # fmt: skip
        status, problem = await platform.send(order, **kwargs)
        assert (status, words in problem["detail"]) == (401, True), problem
    status, answer = await platform.send(order)
    assert (status, answer["recorded"], answer["attributed"]) == (200, True, True)
    for _ in range(2):  # the platform retries (it never heard back, say): no second effect
        status, answer = await platform.send(order)
        assert (status, answer["duplicate"], answer["recorded"]) == (200, True, False)
    status, answer = await platform.send(order, secret="old-key")  # the key being rotated out still signs
    assert (status, answer["duplicate"]) == (200, True)
    await client.arena.drain()
    gear = (await client.get("/me/gear", headers=headers)).json()
    assert [(i["product_id"], i["type"], i["price"]) for i in gear["items"]] == [("shoe-1", "shoes", 12_000)]
    assert gear["defaults"] == {"run": gear["items"][0]["id"]}
    bought = gear["items"][0]["id"]
    assert (await client.patch(f"/me/gear/{bought}", json={"life_km": 700}, headers=headers)).status_code == 200
    twice = await _order(client, platform, bo, "chain-1")
    racing = await asyncio.gather(*(platform.send(twice, t=time.time() - n) for n in range(5)))  # retries at once
    assert sorted(answer["recorded"] for _, answer in racing) == [False] * 4 + [True]
    pending = {**await _order(client, platform, bo), "status": "pending"}
    assert (await platform.send(pending))[1]["recorded"] is False
    stranger = {**await _order(client, platform, bo), "click_id": "forged.click"}
    status, answer = await platform.send(stranger)
    assert (status, answer["attributed"]) == (200, False)
    await client.arena.drain()
    items = (await client.get("/me/gear", headers=headers)).json()["items"]
    assert sorted(i["product_id"] for i in items) == ["chain-1", "shoe-1"]  # one each: no retry added any


@pytest.mark.parametrize("body, status", [
    (b"{", 422), (b"[]", 422), (b'{"id": "1", "status": "paid", "currency": "EUR", "lines": []}', 422),
    (b'{"id": "1", "status": "paid", "currency": "EUR", "lines": [{"product_id": "p", "quantity": 1, '
     b'"price": "-1"}]}', 422),
    (b'{"id": NaN}', 422), (b"x" * 300_000, 413)])  # fmt: skip
async def test_malformed_and_oversized_webhooks_get_a_clear_4xx_even_when_signed(client, platform, body, status):
    answer_status, problem = await platform.send(body)
    assert answer_status == status, problem
    assert problem["status"] == status


async def test_gear_routes_assign_by_hand_and_who_may_touch_a_workouts_gear(client):
    ana_id, ana = await signup(client, "Ana")
    _, bo = await signup(client, "Bo")
    for bad in ({"type": "boat", "name": "x"}, {"type": "shoes", "name": "x", "component": "chain"},
                {"type": "shoes", "name": ""}, {"type": "shoes", "name": "x", "life_km": -1},
                {"type": "shoes", "name": "x", "sports": ["curling"]}, {"type": "shoes", "name": "x", "extra": 1}):  # fmt: skip
        assert_problem(await client.post("/me/gear", json=bad, headers=ana), 422)
    shoes = await client.post("/me/gear", json={"type": "shoes", "name": "Pegasus", "sports": ["run"], "default": True,
                                                "start_km": 100, "purchased": "2026-01-02"}, headers=ana)  # fmt: skip
    assert shoes.status_code == 201, shoes.text
    shoes = shoes.json()
    assert (shoes["used_m"], shoes["life_m"], shoes["default_for"]) == (100_000, 800_000, ["run"])
    chain = (await client.post("/me/gear", json={"type": "component", "component": "chain", "name": "KMC"},
                               headers=ana)).json()  # fmt: skip
    assert chain["life_m"] == 3_000_000
    start = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0).isoformat()
    run = await client.post("/workouts", json={"sport": "run", "start": start, "duration_s": 1800, "distance_m": 6000},
                            headers=ana)  # fmt: skip
    hidden = await client.post("/workouts", json={"sport": "run", "start": start, "duration_s": 60, "distance_m": 100,
                                                  "visibility": "private"}, headers=ana)  # fmt: skip
    run_id, hidden_id = run.json()["id"], hidden.json()["id"]
    await client.arena.drain()
    assert (await client.get(f"/me/gear/{shoes['id']}", headers=ana)).json()["distance_m"] == 6_100
    assert (await client.get(f"/workouts/{run_id}/gear", headers=bo)).json()["gear_id"] == shoes["id"]
    assert_problem(await client.put(f"/workouts/{run_id}/gear", json={"gear_id": chain["id"]}, headers=bo), 403)
    assert_problem(await client.put(f"/workouts/{hidden_id}/gear", json={"gear_id": None}, headers=bo), 404)
    assert_problem(await client.get(f"/workouts/{hidden_id}/gear", headers=bo), 404)
    assert_problem(await client.put(f"/workouts/{run_id}/gear", json={"gear_id": "nope"}, headers=ana), 404)
    assert_problem(await client.put(f"/workouts/{run_id}/gear", json={"gear": 1}, headers=ana), 422)
    moved = await client.put(f"/workouts/{run_id}/gear", json={"gear_id": chain["id"]}, headers=ana)
    assert moved.json() == {"workout_id": run_id, "gear_id": chain["id"]}
    assert (await client.get(f"/me/gear/{shoes['id']}", headers=ana)).json()["distance_m"] == 100
    await client.delete(f"/workouts/{run_id}", headers=ana)
    await client.arena.drain()
    assert (await client.get(f"/me/gear/{chain['id']}", headers=ana)).json()["distance_m"] == 0
    retired = await client.patch(f"/me/gear/{shoes['id']}", json={"retired": True, "life_km": 600}, headers=ana)
    assert (retired.json()["retired"], retired.json()["life_m"], retired.json()["default_for"]) == (True, 600_000, [])
    assert (await client.get("/me/gear", params={"retired": "false"}, headers=ana)).json()["items"][0]["id"] == chain[
        "id"
    ]
    assert_problem(
        await client.put("/me/gear-defaults/run", json={"gear_id": shoes["id"]}, headers=ana), 409, "retired"
    )
    assert (await client.put("/me/gear-defaults/ride", json={"gear_id": chain["id"]}, headers=ana)).json() == {
        "defaults": {"ride": chain["id"]}}  # fmt: skip
    assert_problem(await client.put("/me/gear-defaults/curling", json={}, headers=ana), 422)
    assert (await client.get(f"/me/gear/{shoes['id']}/suggestions", headers=ana)).status_code == 200
    assert_problem(await client.get(f"/me/gear/{shoes['id']}", headers=bo), 404)  # another's gear: not there
    assert_problem(await client.delete(f"/me/gear/{shoes['id']}", headers=bo), 404)
    assert (await client.delete(f"/me/gear/{shoes['id']}", headers=ana)).status_code == 204
    assert_problem(await client.get(f"/me/gear/{shoes['id']}", headers=ana), 404)
    assert ana_id


def _promotion(**fields) -> dict:
    expires = (datetime.now(UTC) + timedelta(days=7)).isoformat()
    return {"id": f"P{uuid.uuid4().hex[:8].upper()}", "title": "Spring sale", "discount": {"percent": 15},
            "expires": expires, "mode": "codes", "codes": 100, "per_user": 100, **fields}  # fmt: skip


async def test_a_thousand_simultaneous_attempts_at_a_hundred_codes_give_exactly_a_hundred(client):
    boss = await admin(client)
    created = await client.post("/shop/promotions", json=_promotion(), headers=boss)
    assert created.status_code == 201, created.text
    codes = created.json()["codes"]
    assert len(set(codes)) == 100
    people = [(await signup(client, f"P{n}"))[1] for n in range(20)]
    attempts = [client.post("/offers/redeem", json={"code": codes[i // 10].lower()}, headers=people[i % 20])
                for i in range(1_000)]  # fmt: skip
    answers = await asyncio.gather(*attempts)
    statuses = [a.status_code for a in answers]
    assert statuses.count(200) == 100 and statuses.count(409) == 900, sorted(set(statuses))
    assert {a.json()["code"] for a in answers if a.status_code == 200} == set(codes)
    state = (await client.get(f"/shop/promotions/{created.json()['id']}", headers=boss)).json()
    assert state["redeemed"] == 100 and state["left"] == 0 and all(c["redeemed"] for c in state["codes"])
    shared = (await client.post("/shop/promotions", json=_promotion(mode="shared", codes=None, total=100),
                                headers=boss)).json()  # fmt: skip
    answers = await asyncio.gather(*(client.post("/offers/redeem", json={"code": shared["id"]},
                                                 headers=people[i % 20]) for i in range(1_000)))  # fmt: skip
    assert [a.status_code for a in answers].count(200) == 100
    assert_problem(answers[-1] if answers[-1].status_code == 409 else next(a for a in answers if a.status_code == 409),
                   409, "exhausted")  # fmt: skip


async def test_an_exclusive_discount_is_for_members_whose_plan_has_it(client):
    from actors.subscription import Subscription

    boss = await admin(client)
    ana_id, ana = await signup(client, "Ana")
    made = await client.post("/shop/promotions", json=_promotion(mode="shared", codes=None, total=10, exclusive=True),
                             headers=boss)  # fmt: skip
    assert made.status_code == 201 and made.json()["exclusive"] is True, made.text
    code = made.json()["id"]
    refused = assert_problem(await client.post("/offers/redeem", json={"code": code}, headers=ana), 403)
    assert refused["entitlement"] == "exclusive_discounts" and refused["plan"] == "premium_plus"
    for plan, status in (("premium", 403), ("premium_plus", 200)):  # premium lacks it, premium_plus has it
        await client.arena.ref(Subscription, ana_id).ask(
            Subscription.apply, event_id=f"evt-{plan}", type="subscription.renewed", created=int(time.time()),
            sequence=0 if plan == "premium" else 1, plan=plan, period_end=time.time() + 86_400, grace_s=86_400,
        )  # fmt: skip
        answer = await client.post("/offers/redeem", json={"code": code}, headers=ana)
        assert answer.status_code == status, answer.text
    assert_problem(await client.post("/shop/promotions", json=_promotion(exclusive="perhaps"), headers=boss), 422)


async def test_promotions_expired_per_user_unknown_codes_and_who_may_manage_them(client):
    boss = await admin(client)
    _, ana = await signup(client, "Ana")
    assert_problem(await client.post("/shop/promotions", json=_promotion(), headers=ana), 403, "admin")
    for bad in (_promotion(codes=None), _promotion(mode="shared", codes=None), _promotion(discount={}),
                _promotion(discount={"percent": 10, "amount": 5}), _promotion(id="lower"), _promotion(codes=10_001),
                _promotion(expires="2026-01-01T00:00:00")):  # fmt: skip
        assert_problem(await client.post("/shop/promotions", json=bad, headers=boss), 422)
    past = _promotion(expires=(datetime.now(UTC) - timedelta(days=1)).isoformat())
    assert_problem(await client.post("/shop/promotions", json=past, headers=boss), 422, "expire")
    once = _promotion(mode="shared", codes=None, total=10, per_user=1)
    created = (await client.post("/shop/promotions", json=once, headers=boss)).json()
    assert_problem(await client.post("/shop/promotions", json=once, headers=boss), 409, "already exists")
    await client.arena.drain()  # the list of offers follows promotion.listed
    offers = (await client.get("/offers", headers=ana)).json()["items"]
    assert created["id"] in [o["id"] for o in offers]
    assert (await client.post("/offers/redeem", json={"code": created["id"]}, headers=ana)).status_code == 200
    assert_problem(await client.post("/offers/redeem", json={"code": created["id"]}, headers=ana), 409, "limit")
    for code in ("NOPE1234", f"{created['id']}-ABCDEFGH", "bad code!"):
        assert_problem(await client.post("/offers/redeem", json={"code": code}, headers=ana), 404)
    assert_problem(await client.post("/offers/redeem", json={"code": "x" * 41}, headers=ana), 422)
    assert_problem(await client.post(f"/shop/promotions/{created['id']}/end", headers=ana), 403)
    assert_problem(await client.get(f"/shop/promotions/{created['id']}", headers=ana), 403)
    assert_problem(await client.get("/shop/promotions/NOSUCH", headers=boss), 404)
    ended = await client.post(f"/shop/promotions/{created['id']}/end", headers=boss)
    assert ended.json()["ended"] is True
    _, bo = await signup(client, "Bo")
    assert_problem(await client.post("/offers/redeem", json={"code": created["id"]}, headers=bo), 409, "expired")
    await client.arena.drain()
    assert created["id"] not in [o["id"] for o in (await client.get("/offers", headers=ana)).json()["items"]]
