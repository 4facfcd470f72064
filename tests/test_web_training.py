"""The "My training" page in a real headless Chromium, against the real app: the fitness, fatigue
and form chart drawn from the athlete's workouts, the predictions with their bands, and a warning.
A screenshot goes to reports/screenshots/training.png."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.test_web import SHOTS, Api, server, sign_in  # noqa: F401 - the Chromium fixtures

pytestmark = pytest.mark.ray

DAY = 86_400


def _start(days_ago: int) -> str:
    return datetime.fromtimestamp((int(time.time()) // DAY - days_ago) * DAY + 7 * 3600, UTC).isoformat()


def test_my_training_shows_the_chart_the_predictions_and_a_warning(server, browser):  # noqa: F811
    base, _ = server
    client = Api(base)
    ana = client.account("Ana")
    for days_ago in range(35, 7, -1):  # four easy weeks, then a very hard one: a warning
        body = {"sport": "run", "start": _start(days_ago), "duration_s": 1800, "distance_m": 6000}
        assert client.http.post("/workouts", json=body, headers=ana["headers"]).status_code == 201
    for days_ago in range(7, 0, -1):
        body = {"sport": "run", "start": _start(days_ago), "duration_s": 10_800, "distance_m": 30_000}
        assert client.http.post("/workouts", json=body, headers=ana["headers"]).status_code == 201
    deadline = time.monotonic() + 30
    while not client.http.get("/me/training", headers=ana["headers"]).json()["warnings"]:
        assert time.monotonic() < deadline, "the training entity never saw the workouts"
        time.sleep(0.2)
    pace = client.http.put("/me/training/thresholds", json={"threshold_pace_s_per_km": 300}, headers=ana["headers"])
    assert pace.status_code == 200
    race = (datetime.now(UTC).date() + timedelta(days=40)).isoformat()
    goal = {"race_date": race, "distance_m": 10_000, "days_per_week": 4, "long_day": 6}
    assert client.http.put("/me/training/goal", json=goal, headers=ana["headers"]).status_code == 200

    page = browser.new_page(bypass_csp=True)
    sign_in(page, base, ana["email"], "/me/training")
    page.wait_for_selector("body[data-ready=yes]")
    assert page.locator("#pmc polyline.series").count() == 6  # three lines, and each one's forecast
    assert page.locator("#pmc polyline.ahead").count() == 3
    assert page.get_attribute("#pmc", "data-days") == "90"
    assert page.locator("#warnings li.warning").count() >= 1
    assert "times your 4-week average" in page.text_content("#warnings")
    assert "5:00" in page.text_content("#thresholds")  # the pace set, shown as a pace
    assert page.locator("#predictions tr.prediction").count() == 0  # typed-in runs have no best efforts
    assert "No best efforts yet" in page.text_content("#prediction-model")
    assert page.locator("#plan tr.plan-day").count() == 7  # this week, toward the 10 km
    assert "a recovery week" in page.text_content("#plan-goal") or "capped" in page.text_content("#plan-goal")
    page.screenshot(path=SHOTS / "training.png", full_page=True)
