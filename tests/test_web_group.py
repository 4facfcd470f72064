"""A group's page in a real headless Chromium, against the real app: a member answers an event and
posts; an outsider sees a private group's about page, is told its content is for members, and asks
to join. Hostile names and titles stay text. Screenshots go to reports/screenshots/."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.test_web import HOSTILE, SHOTS, Api, server, sign_in  # noqa: F401 - the Chromium fixtures

pytestmark = pytest.mark.ray

MEETING = {"lat": 48.8462, "lon": 2.3371, "label": "Medicis fountain"}


def _group(client: Api, owner: dict, **fields) -> str:
    body = {"name": "Paris Runners", "sports": ["run"], "city": "Paris", "description": "Easy runs", **fields}
    answer = client.http.post("/groups", json=body, headers=owner["headers"])
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def _event(client: Api, group_id: str, owner: dict, title: str, capacity: int = 10) -> str:
    start = (datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=3)).replace(hour=9, minute=0, second=0,
                                                                                  microsecond=0, tzinfo=None)  # fmt: skip
    body = {"title": title, "sport": "run", "start": start.isoformat(), "time_zone": "Europe/Paris",
            "meeting_point": MEETING, "capacity": capacity, "pace_groups": [{"label": "5:30/km", "pace_s_per_km": 330}]}  # fmt: skip
    answer = client.http.post(f"/groups/{group_id}/events", json=body, headers=owner["headers"])
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_a_member_answers_and_posts_and_an_outsider_sees_a_private_group_from_outside(server, browser):  # noqa: F811
    base, _ = server
    client = Api(base)
    owner, ana, zed = client.account("Olga"), client.account(HOSTILE), client.account("Zed")
    public = _group(client, owner)
    assert client.http.post(f"/groups/{public}/join", headers=ana["headers"]).json()["status"] == "member"
    event = _event(client, public, owner, "Saturday long run", capacity=1)
    _event(client, public, owner, HOSTILE)
    post = client.http.post(f"/groups/{public}/posts", json={"text": "Coffee after?"}, headers=owner["headers"])
    assert post.status_code == 201

    page = browser.new_page(bypass_csp=True)
    sign_in(page, base, ana["email"], f"/groups/{public}")
    page.wait_for_function("document.getElementById('group-name').textContent === 'Paris Runners'")
    assert page.text_content("#my-role") == "member"
    page.wait_for_selector(f"#event-{event} .rsvp-yes")
    page.click(f"#event-{event} .rsvp-yes")
    page.wait_for_selector(f"#event-{event} .my-rsvp")
    assert page.text_content(f"#event-{event} .my-rsvp") == "going"
    assert "1/1 going" in page.text_content(f"#event-{event}")
    page.wait_for_selector("#feed .post")
    page.fill("#post-text", "See you at the fountain")
    page.click("#post-submit")
    page.wait_for_function("document.getElementById('feed').textContent.includes('See you at the fountain')")
    assert page.locator("#members .member").count() == 2
    assert page.locator(".event-title", has_text="<script>").count() == 1, "a hostile title shows as text"
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=SHOTS / "group-member.png", full_page=True)
    answer = client.http.get(f"/groups/{public}/events/{event}", headers=ana["headers"]).json()
    assert answer["me"]["rsvp"] == "going", "the click reached the event"

    private = _group(client, owner, name="Night Owls", visibility="private", join_policy="request")
    _event(client, private, owner, "Midnight run")
    outside = browser.new_page(bypass_csp=True)
    sign_in(outside, base, zed["email"], f"/groups/{private}")
    outside.wait_for_function("document.getElementById('group-name').textContent === 'Night Owls'")
    for section in ("#events", "#feed", "#members"):  # each section asks on its own: wait for each answer
        outside.wait_for_selector(f"{section} .refused")
        assert "for its members" in outside.text_content(section), section
    assert "Midnight run" not in outside.text_content("main")
    assert outside.is_hidden("#post-form")
    assert outside.text_content("#membership-action") == "Ask to join"
    outside.screenshot(path=SHOTS / "group-private-outsider.png", full_page=True)
    outside.click("#membership-action")
    outside.wait_for_function("document.getElementById('membership').textContent.includes('request is waiting')")

    missing = browser.new_page(bypass_csp=True)
    sign_in(missing, base, zed["email"], "/groups/no-such-group")
    missing.wait_for_function("document.getElementById('group-name').textContent === 'No such group'")
    for opened in (page, outside, missing):
        opened.close()
