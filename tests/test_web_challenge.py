"""The challenge page in a real headless Chromium against the real app: the goal and period, the signed-in
athlete's progress bar after joining, the live board (top, friends), leaving; a hostile name stays text.
The screenshot goes to reports/screenshots/challenge.png."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.test_web import HOSTILE, PASSWORD, SHOTS, Api, server, sign_in  # noqa: F401  (fixtures)

pytestmark = pytest.mark.ray


def _organizer(client: Api) -> dict:
    email = "boss@example.com"  # the settings' admin address grants the role
    client.http.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": "Boss"})
    org = client.account("Organizer")
    granted = client.http.put(f"/users/{org['id']}/roles", json={"roles": ["athlete", "organizer"]},
                              headers=client.login(email))  # fmt: skip
    assert granted.status_code == 200, granted.text
    return {**org, "headers": client.login(org["email"])}


def _run(client: Api, who: dict, km: float) -> None:
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0).isoformat()
    body = {"sport": "run", "start": start, "duration_s": km * 300, "distance_m": km * 1000}
    assert client.http.post("/workouts", json=body, headers=who["headers"]).status_code == 201


def test_an_athlete_joins_sees_their_progress_and_the_live_board_then_leaves(server, browser):  # noqa: F811
    base, on_loop = server
    client = Api(base)
    org = _organizer(client)
    today = datetime.now(UTC).date()
    body = {"title": "Spring 20 km", "description": "Run 20 km before the month is out.", "goal_type": "distance_m",
            "goal": 20_000, "sports": ["run"], "first_day": (today - timedelta(days=3)).isoformat(),
            "last_day": (today + timedelta(days=3)).isoformat()}  # fmt: skip
    made = client.http.post("/challenges", json=body, headers=org["headers"])
    assert made.status_code == 201, made.text
    challenge_id = made.json()["id"]
    rival = client.account(HOSTILE)
    _run(client, rival, 15)
    assert client.http.post(f"/challenges/{challenge_id}/join", headers=rival["headers"]).status_code == 200
    athlete = client.account("Page Runner")
    _run(client, athlete, 8)
    assert client.http.post(f"/users/{rival['id']}/follow", headers=athlete["headers"]).status_code < 300
    on_loop(_drain())

    page = browser.new_page(bypass_csp=True)
    sign_in(page, base, athlete["email"], f"/challenges/{challenge_id}")
    page.wait_for_selector("body[data-ready=yes]")
    assert page.text_content("#challenge-title") == "Spring 20 km"
    assert "20.00 km" in page.text_content("#challenge-goal")
    assert page.is_visible("#join") and not page.is_visible("#leave")
    page.wait_for_selector("#board-rows tr[data-user]")
    assert page.locator("#board-rows tr[data-user]").count() == 1
    page.click("#join")
    page.wait_for_selector("body[data-joined=yes]")
    assert float(page.get_attribute("#my-progress", "value") or 0) == pytest.approx(0.4)  # 8 of 20 km
    assert "8.00 km of 20.00 km" in page.text_content("#my-figures")
    page.wait_for_function("() => document.querySelectorAll('#board-rows tr[data-user]').length === 2")
    page.click("button[data-view=friends]")
    page.wait_for_selector("body[data-view=friends]")
    names = page.locator("#board-rows td.name").all_text_contents()
    assert names == [HOSTILE, "Page Runner"]  # shown as text, never run
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=SHOTS / "challenge.png", full_page=True)
    page.click("#leave")
    page.wait_for_selector("#join:visible")
    assert page.text_content("#my-figures") == "Not joined yet."
    page.goto(f"{base}/challenges/nope")
    page.wait_for_function("() => document.getElementById('challenge-error').textContent.length > 0")
    assert "No such challenge" in page.text_content("#challenge-error")


async def _drain() -> None:
    """The relay has moved every event (joins to the boards, workouts to progress)."""
    from serve.app import api

    await api.state.arena.drain()
