"""The gear and offers pages in a real headless Chromium against the real app: wear bars (a worn item marked),
adding an item through the form, retiring one, replacements from the catalogue; the offers on show and a
code redeemed once (the second try says why not); hostile names stay text. Screenshots go to
reports/screenshots/gear.png and offers.png."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from engine.commerce.feed import fingerprint
from tests.test_web import HOSTILE, PASSWORD, SHOTS, Api, server, sign_in  # noqa: F401  (fixtures)

pytestmark = pytest.mark.ray

PRODUCT = {"id": f"web-{uuid.uuid4().hex[:6]}", "title": "Trail Runner 4", "link": "https://shop.example/p/tr4",
           "image": None, "price": 12_500, "currency": "EUR", "availability": "in_stock", "brand": "Acme", "gtin": None,
           "mpn": "TR4", "product_type": None, "gear_type": "shoes", "component": None, "sports": ["run"]}  # fmt: skip


async def _drain() -> None:
    from serve.app import api

    await api.state.arena.drain()


async def _stock() -> None:
    """The catalogue holds one pair of running shoes (as a sync from the brand's feed would leave it)."""
    from actors.catalogue import Catalogue
    from actors.gear import CATALOGUE_ID
    from serve.app import api

    ref = api.state.arena.ref(Catalogue, CATALOGUE_ID)
    known = await ref.ask(Catalogue.fingerprints)
    await ref.ask(Catalogue.apply_sync, base=known["version"], upserts=[PRODUCT],
                  prints={PRODUCT["id"]: fingerprint(PRODUCT)}, removed=[], report={})  # fmt: skip


def test_my_gear_shows_wear_adds_retires_and_suggests_replacements(server, browser):  # noqa: F811
    base, on_loop = server
    client = Api(base)
    on_loop(_stock())
    athlete = client.account("Gear Runner")
    made = client.http.post("/me/gear", json={"type": "shoes", "name": HOSTILE[:80], "sports": ["run"], "default": True,
                                              "start_km": 700, "price": 12_000}, headers=athlete["headers"])  # fmt: skip
    assert made.status_code == 201, made.text
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0).isoformat()
    run = {"sport": "run", "start": start, "duration_s": 3600, "distance_m": 30_000}
    assert client.http.post("/workouts", json=run, headers=athlete["headers"]).status_code == 201
    on_loop(_drain())

    page = browser.new_page(bypass_csp=True)
    sign_in(page, base, athlete["email"], "/gear")
    page.wait_for_selector("body[data-ready=yes]")
    worn = page.locator(f"li.gear[data-gear='{made.json()['id']}']")
    assert "worn" in worn.get_attribute("class")
    assert worn.locator(".gear-name").text_content() == HOSTILE[:80]  # text, never markup
    assert page.evaluate("window.__pwned") is None
    assert worn.locator("progress.wear").get_attribute("value") == "91"
    assert "730.00 km of 800.00 km" in worn.text_content()
    worn.locator("button.suggest").click()
    page.wait_for_selector(f"li.suggestion[data-product='{PRODUCT['id']}']")
    page.fill("#gear-name", "Chain 11s")
    page.select_option("#gear-type", "component")
    page.select_option("#gear-component", "chain")
    page.select_option("#gear-sport", "ride")
    page.click("#gear-add")
    page.wait_for_selector("li.gear:has-text('Chain 11s')")
    assert "3000.00 km" in page.locator("li.gear:has-text('Chain 11s')").text_content()
    page.screenshot(path=SHOTS / "gear.png", full_page=True)
    worn.locator("button.retire").click()
    page.wait_for_selector("li.gear.retired")
    items = client.http.get("/me/gear", headers=athlete["headers"]).json()["items"]
    assert {i["name"]: i["retired"] for i in items} == {"Chain 11s": False, HOSTILE[:80]: True}
    page.close()


def test_offers_list_promotions_and_a_code_redeems_once(server, browser):  # noqa: F811
    base, on_loop = server
    client = Api(base)
    client.http.post("/accounts", json={"email": "boss@example.com", "password": PASSWORD, "display_name": "Boss"})
    boss = client.login("boss@example.com")
    promo_id = f"WEB{uuid.uuid4().hex[:6].upper()}"
    body = {"id": promo_id, "title": HOSTILE[:120], "description": "Ten percent off shoes", "discount": {"percent": 10},
            "expires": (datetime.now(UTC) + timedelta(days=3)).isoformat(), "mode": "shared", "total": 50}  # fmt: skip
    assert client.http.post("/shop/promotions", json=body, headers=boss).status_code == 201
    athlete = client.account("Bargain Hunter")
    on_loop(_drain())  # the list of offers follows promotion.listed

    page = browser.new_page(bypass_csp=True)
    sign_in(page, base, athlete["email"], "/offers")
    page.wait_for_selector("body[data-ready=yes]")
    page.wait_for_selector(f"li.offer[data-offer='{promo_id}']")
    assert HOSTILE[:120] in page.locator(f"li.offer[data-offer='{promo_id}'] strong").text_content()
    page.fill("#code", promo_id.lower())
    page.click("#redeem")
    page.wait_for_selector("#redeemed:has-text('10% off')")
    page.screenshot(path=SHOTS / "offers.png", full_page=True)
    page.click("#redeem")
    page.wait_for_selector("#redeem-error:has-text('limit per athlete')")
    page.fill("#code", "NOPE-ABCDEFGH")
    page.click("#redeem")
    page.wait_for_selector("#redeem-error:has-text('no such code')")
    assert page.evaluate("window.__pwned") is None
    page.close()
