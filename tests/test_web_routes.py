"""A route's page and a segment's page in a real headless Chromium, against the real app: the track and the
elevation profile drawn as SVG, saving the route, the segment's line and its board tabs. A hostile route name
stays text. Screenshots go to reports/screenshots/."""

from __future__ import annotations

import random

import pytest

from tests.test_routes import _gpx
from tests.test_web import HOSTILE, SHOTS, Api, browser, server, sign_in  # noqa: F401 - the Chromium fixtures

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
    seg.screenshot(path=SHOTS / "segment.png", full_page=True)

    missing = browser.new_page(bypass_csp=True)
    sign_in(missing, base, bob["email"], "/routes/no-such-route")
    missing.wait_for_function("document.getElementById('route-name').textContent === 'No such route'")
    for opened in (page, seg, missing):
        opened.close()
