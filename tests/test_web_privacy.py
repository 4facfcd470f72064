"""Privacy zones on the live race page, in a real headless Chromium (docs/privacy.md): a spectator's page
never receives an athlete's GPS fixes, so nothing of where they started (their home, here) reaches it;
the athlete's own workout page keeps everything for them, and others get the track outside the zone."""

from __future__ import annotations

import time

import pytest

from engine.privacy_zones import _distance_m
from loadtest.gpx import synthetic_gpx
from tests.test_web import Api, server  # noqa: F401 - the page fixtures (Chromium is conftest's `browser`)

pytestmark = pytest.mark.ray

HOME = (48.85, 2.35)


def _fixes(start: float, seconds: int) -> list[dict]:
    """A run north from home, 3.3 m/s, with a position on every sample."""
    return [{"seq": i, "t": start + i, "distance": 3.3 * i, "speed": 3.3, "lat": HOME[0] + 3.3 * i / 111_195,
             "lon": HOME[1]} for i in range(seconds)]  # fmt: skip


def test_a_spectator_page_never_receives_an_athletes_positions(server, browser):  # noqa: F811
    base, _ = server
    client = Api(base)
    boss = client.account("Boss", "chief@example.com")  # an admin (settings.admin_emails)
    assert client.http.put(f"/users/{boss['id']}/roles", json={"roles": ["organizer"]},
                           headers=boss["headers"]).status_code == 200  # fmt: skip
    organizer = {"Authorization": client.login("chief@example.com")["Authorization"]}
    home = client.account("Homebody")
    zone = client.http.post("/me/privacy-zones", json={"lat": HOME[0], "lon": HOME[1], "radius_m": 300},
                            headers=home["headers"])  # fmt: skip
    assert zone.status_code == 201, zone.text
    race = client.http.post("/races", json={"name": "Doorstep 5k", "sport": "run", "kind": "distance",
                                            "target_m": 5000}, headers=organizer).json()["id"]  # fmt: skip
    client.http.post(f"/races/{race}/actions/open", headers=organizer)
    assert client.http.post(f"/races/{race}/athletes", json={}, headers=home["headers"]).status_code == 201
    gun = time.time() - 600
    client.http.patch(f"/races/{race}", json={"start_at": gun}, headers=organizer)
    for _ in range(200):
        if client.http.get(f"/races/{race}").json()["status"] == "live":
            break
        time.sleep(0.02)

    page = browser.new_page(bypass_csp=True)
    received: list[str] = []
    page.on("response", lambda r: received.append(r.text()) if "/api/" in r.url and r.ok else None)
    page.goto(f"{base}/races/{race}")
    sent = client.http.post(f"/races/{race}/telemetry", json={"samples": _fixes(gun, 120)},
                            headers=home["headers"])  # fmt: skip
    assert sent.status_code == 200, sent.text
    page.wait_for_selector(f".row[data-user='{home['id']}'] .dist", timeout=20_000)
    page.wait_for_function(  # the page shows how far they ran: it has had the race's news
        "id => /[1-9]/.test((document.querySelector(`.row[data-user='${id}'] .dist`) || {}).textContent || '')",
        arg=home["id"], timeout=20_000,
    )  # fmt: skip
    html = page.content()
    assert received, "the page read the race through the API"
    for text in [html, *received]:  # not one fix, anywhere the page got
        assert "48.85" not in text  # every fix's latitude starts so
    page.close()


def test_the_workout_page_shows_others_the_track_only_outside_the_zone(server, browser):  # noqa: F811
    base, _ = server
    client = Api(base)
    home, friend = client.account("Homebody"), client.account("Friend")
    client.http.post("/me/privacy-zones", json={"lat": HOME[0], "lon": HOME[1], "radius_m": 300}, headers=home["headers"])
    files = {"file": ("run.gpx", synthetic_gpx(), "application/gpx+xml")}
    workout = client.http.post("/workouts/import", files=files, headers=home["headers"]).json()
    page = browser.new_page(bypass_csp=True)
    shown = {}
    for who in (home, friend):
        answer = page.request.get(f"{base}/api/v1/workouts/{workout['id']}", headers=who["headers"])
        shown[who["id"]] = answer.json()
    assert len(shown[home["id"]]["track"]) == 120
    track = shown[friend["id"]]["track"]
    assert track and all(_distance_m(*HOME, p[0], p[1]) > 300 for p in track)
    page.close()
