"""A route's page, a segment's page and an organizer event's page in a real headless Chromium, against the real
app: the track and the elevation profile drawn as SVG, saving the route, the segment's line and its board tabs;
an event's tiers and places, registering with the questions answered, the waitlist, the check-in code and
partner offers. Hostile names stay text. Screenshots go to reports/screenshots/."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.test_routes import _gpx
from tests.test_web import HOSTILE, PASSWORD, SHOTS, Api, server, sign_in  # noqa: F401 - the Chromium fixtures

pytestmark = pytest.mark.ray


def test_a_route_page_and_a_segment_page_draw_their_tracks_and_boards(server, browser):  # noqa: F811
    base, _ = server
    client = Api(base)
    ann, bob = client.account("Ann"), client.account("Bob")
    lat, lon = random.uniform(-40, 40), random.uniform(-100, 100)
    files = {"file": ("ride.gpx", _gpx(lat, lon, points=150), "application/gpx+xml")}
    route = client.http.post(
        "/routes", files=files, data={"name": HOSTILE, "surface": "gravel"}, headers=ann["headers"]
    )
    assert route.status_code == 201, route.text
    workout = client.http.post("/workouts/import", files=files, headers=ann["headers"]).json()["id"]
    segment = client.http.post("/segments", json={"workout_id": workout, "name": "The climb", "from_m": 300,
                                                   "to_m": 2_500}, headers=ann["headers"])  # fmt: skip
    assert segment.status_code == 201, segment.text
    # Ann's effort reaches the board through the segment's backfill (a Ray job) and then the relay; the page
    # reads the board when a tab is clicked, so the board must hold it before the page opens.
    board = f"/segments/{segment.json()['id']}/leaderboard"
    deadline = time.monotonic() + 180
    while not client.http.get(board, headers=ann["headers"]).json()["rows"]:
        state = client.http.get(f"/segments/{segment.json()['id']}", headers=ann["headers"]).json()["backfill"]
        assert time.monotonic() < deadline, f"Ann's effort never reached the board; the backfill: {state}"
        time.sleep(0.2)

    page = browser.new_page(bypass_csp=True)
    sign_in(page, base, bob["email"], f"/routes/{route.json()['id']}")
    page.wait_for_selector("#track-line polyline", state="attached")
    assert page.text_content("#route-name") == HOSTILE, "a hostile name shows as text"
    assert page.evaluate("window.__pwned") is None
    assert len(page.get_attribute("#track-line polyline", "points").split()) == 150
    assert page.locator("#profile-chart path").count() == 1
    assert "gravel" in page.text_content("#route-figures")
    page.click("#save")
    page.wait_for_function("document.getElementById('save').dataset.saved === 'yes'")
    assert client.http.get(f"/routes/{route.json()['id']}", headers=bob["headers"]).json()["saved"] is True
    with page.expect_download() as downloaded:
        page.click("#gpx")
    assert downloaded.value.suggested_filename.endswith(".gpx")
    page.screenshot(path=SHOTS / "route.png", full_page=True)

    seg = browser.new_page(bypass_csp=True)
    sign_in(seg, base, ann["email"], f"/segments/{segment.json()['id']}")
    seg.wait_for_selector("#segment-line polyline", state="attached")
    assert seg.text_content("#segment-name") == "The climb"
    seg.wait_for_selector("#board-rows tr")
    for board in ("year", "friends", "legend"):
        seg.click(f".board[data-board={board}]")
        seg.wait_for_function(
            f"document.querySelector('.board[data-board={board}]').getAttribute('aria-selected') === 'true'"
        )
    assert seg.text_content("#figure-head") == "Efforts (90 days)"
    seg.click(".board[data-board=overall]")
    seg.wait_for_function("document.getElementById('board-note').textContent.startsWith('KOM')")
    seg.select_option("#board-sex", "women")  # Ann gave no sex: on the overall board only
    seg.wait_for_function("document.getElementById('board-rows').textContent === 'No efforts yet.'")
    seg.select_option("#board-sex", "")
    seg.wait_for_function("document.getElementById('board-note').textContent.startsWith('KOM')")
    seg.screenshot(path=SHOTS / "segment.png", full_page=True)

    missing = browser.new_page(bypass_csp=True)
    sign_in(missing, base, bob["email"], "/routes/no-such-route")
    missing.wait_for_function("document.getElementById('route-name').textContent === 'No such route'")
    for opened in (page, seg, missing):
        opened.close()


def test_an_athlete_registers_for_an_event_on_its_page_and_the_next_one_for_a_full_tier_waits(server, browser):  # noqa: F811
    base, _ = server
    client = Api(base)
    admin_email = "boss@example.com"  # an admin (settings.admin_emails); a repeat is a 409
    client.http.post("/accounts", json={"email": admin_email, "password": PASSWORD, "display_name": "Boss"})
    admin = client.login(admin_email)
    org, ann, bob = client.account("Organizer Olga"), client.account("Ann"), client.account("Bob")
    granted = client.http.put(f"/users/{org['id']}/roles", json={"roles": ["athlete", "organizer"]}, headers=admin)
    assert granted.status_code == 200, granted.text
    org["headers"] = client.login(org["email"])  # a token carries its roles

    lat, lon = random.uniform(-40, 40), random.uniform(-100, 100)
    files = {"file": ("loop.gpx", _gpx(lat, lon, points=60), "application/gpx+xml")}
    route = client.http.post("/routes", files=files, data={"name": "Harbour loop"}, headers=org["headers"])
    race = client.http.post("/races", json={"name": "Harbour 10k", "sport": "run", "kind": "distance",
                                            "target_m": 10_000}, headers=org["headers"])  # fmt: skip
    assert route.status_code == 201 and race.status_code == 201, (route.text, race.text)
    opened = client.http.post(f"/races/{race.json()['id']}/actions/open", headers=org["headers"])
    assert opened.status_code == 200, opened.text  # a draft is its organizer's alone
    offers = {"offers": [{"id": "harbour-hotel", "kind": "lodging", "title": "Hotel on the quay", "partner": "Stay&Co",
                          "url": "https://stay.example/q", "lat": lat, "lon": lon, "radius_km": 20},
                         {"id": "night-train", "kind": "travel", "title": "Night train", "partner": "Rail",
                          "url": "https://rail.example/"}]}  # fmt: skip
    assert client.http.put("/admin/partner-offers", json=offers, headers=admin).status_code == 200
    day = (datetime.now(UTC) + timedelta(days=10)).date()
    event = client.http.post("/events", json={
        "title": HOSTILE, "description": "Ten laps of the harbour.", "sport": "run", "time_zone": "Europe/Paris",
        "start": f"{day}T09:00:00", "end": f"{day}T13:00:00", "venue": {"lat": lat, "lon": lon, "address": "The quay"},
        "capacity": 50, "races": [race.json()["id"]], "route_id": route.json()["id"],
        "tiers": [{"id": "open", "name": "Open", "price": 25}, {"id": "elite", "name": "Elite wave", "capacity": 1}],
        "questions": [{"id": "size", "label": "T-shirt size", "kind": "choice", "choices": ["S", "M", "L"],
                       "required": True}],
    }, headers=org["headers"])  # fmt: skip
    assert event.status_code == 201, event.text
    event_id = event.json()["id"]

    page = browser.new_page(bypass_csp=True, locale="en-GB")
    sign_in(page, base, ann["email"], f"/events/{event_id}")
    page.wait_for_selector("body[data-ready=yes]")
    assert page.text_content("#event-title") == HOSTILE, "a hostile title shows as text"
    assert page.evaluate("window.__pwned") is None
    when = page.text_content("#event-when")  # at the venue's hours, whatever the browser's zone
    assert "09:00" in when and "13:00" in when and when.endswith("(Europe/Paris)")
    assert page.text_content("#event-where") == "The quay"
    assert page.text_content("#event-facts") == "run · organized by Organizer Olga"
    assert page.text_content("tr[data-tier=elite] .places") == "1 place left"
    race_id = race.json()["id"]
    race_link = page.locator(f"li[data-race='{race_id}'] a")
    assert race_link.text_content() == "Harbour 10k" and race_link.get_attribute("href") == f"/races/{race_id}"
    assert page.text_content("#route-link") == "Harbour loop"
    hotel = page.locator("li[data-offer=harbour-hotel]")
    assert hotel.locator("a").get_attribute("rel") == "noopener sponsored"
    assert hotel.locator("a").get_attribute("href").startswith("https://stay.example/q?arena_click=")
    assert hotel.locator(".attribution").text_content() == "Offer by Stay&Co"
    assert page.locator("li[data-offer]").count() == 2
    page.select_option("#tier", "elite")
    page.select_option("#answer-size", "M")
    page.click("#register")
    page.wait_for_selector("#mine[data-status=registered]")
    assert page.text_content("#my-status") == "Registered (Elite wave) · bib 1"
    mine = client.http.get(f"/events/{event_id}/registrations/me", headers=ann["headers"]).json()
    assert mine["answers"] == {"size": "M"} and page.text_content("#ticket") == mine["ticket"]
    page.wait_for_selector("#ticket-qr svg path.qrline")  # the ticket drawn as a QR code, above its text
    assert page.evaluate("document.querySelector('#ticket-qr svg').namespaceURI") == "http://www.w3.org/2000/svg"
    assert "/api/v1/me/calendar.ics?token=" in page.get_attribute("#calendar", "href")
    assert page.text_content("tr[data-tier=elite] .places") == "waitlist"
    page.screenshot(path=SHOTS / "event.png", full_page=True)

    late = browser.new_page(bypass_csp=True)
    sign_in(late, base, bob["email"], f"/events/{event_id}")
    late.wait_for_selector("body[data-ready=yes]")
    assert late.text_content("tr[data-tier=elite] .places") == "waitlist"
    late.select_option("#tier", "elite")
    assert late.evaluate("document.getElementById('answer-size').validity.valueMissing")  # asked before sending
    late.select_option("#answer-size", "L")
    late.click("#register")
    late.wait_for_selector("#mine[data-status=waitlisted]")
    assert late.text_content("#my-status") == "On the waitlist (Elite wave), position 1"
    assert late.locator("#my-ticket").is_hidden() and late.locator("#ticket-qr svg").count() == 0
    late.click("#cancel")
    late.wait_for_selector("#register-form:not([hidden])")
    assert client.http.get(f"/events/{event_id}/registrations/me", headers=bob["headers"]).status_code == 404

    visitor = browser.new_page(bypass_csp=True)
    visitor.goto(f"{base}/events/{event_id}")
    visitor.wait_for_selector("#signin-link")
    assert visitor.get_attribute("#signin-link", "href") == f"/login?next=%2Fevents%2F{event_id}"
    assert httpx.get(f"{base}/events/bad%20id").status_code == 422
    for opened in (page, late, visitor):
        opened.close()
