"""The pages in a real headless Chromium (Debian's, never a downloaded one), against the real app.

The app runs in-process under uvicorn on the shared test Ray; athletes stream telemetry
through the API (``POST /races/{id}/telemetry``, one request per athlete per second), the
same path a phone takes. Screenshots of each page go to reports/screenshots/.

Pages open with ``bypass_csp``: Playwright's waits evaluate strings, which the pages' policy
forbids, and it makes the hostile-name check stronger (only textContent stands in the way).
"""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from loadtest.server import free_port
from tests.conftest import SHOTS  # the Chromium (`browser`) is conftest's, one for the session

pytestmark = pytest.mark.ray

PASSWORD = "correct horse battery"
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


@pytest.fixture(scope="module")
def server(settings):
    """The API and pages over HTTP on a free port; yields (base url, run-on-its-loop)."""
    import ray
    import uvicorn

    from serve.app import api
    from serve.context import Arena

    port = free_port()
    arena = Arena.build(settings)
    api.state.arena = arena
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started

    def on_loop(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(30)

    yield f"http://127.0.0.1:{port}", on_loop
    server.should_exit = True
    thread.join(10)
    for handle in arena.cluster.hosts[settings.hosts :]:
        ray.kill(handle, no_restart=True)


class Api:
    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=f"{base}/api/v1", timeout=30)

    def account(self, name: str, email: str | None = None) -> dict:
        email = email or f"{uuid.uuid4().hex[:10]}@example.com"
        answer = self.http.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": name})
        assert answer.status_code == 201, answer.text
        return {"id": answer.json()["id"], "email": email, "headers": self.login(email)}

    def login(self, email: str) -> dict:
        answer = self.http.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def sign_in(page, base: str, email: str, then: str) -> None:
    page.goto(f"{base}/login?next={then}")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{base}{then}*")


class Streaming(threading.Thread):
    """The device swarm: every athlete's samples, once a second, through the telemetry route."""

    def __init__(self, client: Api, race_id: str, athletes: list[dict], cheaters: int) -> None:
        from serve.demo import Swarm

        super().__init__(daemon=True)
        self.client, self.race_id, self.athletes = client, race_id, {a["id"]: a for a in athletes}
        self.swarm = Swarm([a["id"] for a in athletes], cheaters=cheaters, seed=3)
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.rounds = 0  # rounds of samples sent (each round's posts all answered)

    def silence(self, user_id: str) -> None:
        """The athlete's device sends nothing more: once this returns, no sample of theirs is on its way
        (a round already under way may have computed one; the next round starts without it)."""
        next(r for r in self.swarm.runners if r.user_id == user_id).silent_until = float("inf")
        started = self.rounds
        deadline = time.monotonic() + 30
        while self.rounds < started + 2:
            assert time.monotonic() < deadline, "the swarm stopped sending"
            time.sleep(0.05)

    def run(self) -> None:
        while not self.stopping.is_set():
            for user, sample in self.swarm.tick(time.time()).items():
                body = {"samples": [sample.model_dump(exclude_none=True)]}
                answer = self.client.http.post(
                    f"/races/{self.race_id}/telemetry", json=body, headers=self.athletes[user]["headers"]
                )
                if answer.status_code != 200:
                    self.errors.append(answer.text)
            self.rounds += 1
            self.stopping.wait(1.0)


def test_an_organizer_runs_a_race_from_the_console_while_the_live_page_follows_it(server, browser):
    base, on_loop = server
    client = Api(base)
    boss = client.account("Boss", "boss@example.com")  # an admin (settings.admin_emails)
    roles = client.http.put(f"/users/{boss['id']}/roles", json={"roles": ["organizer"]}, headers=boss["headers"])
    assert roles.status_code == 200, roles.text

    console = browser.new_page(accept_downloads=True, bypass_csp=True)
    console.goto(f"{base}/login?next=/organizer")
    console.screenshot(path=SHOTS / "login.png", full_page=True)
    sign_in(console, base, boss["email"], "/organizer")
    console.fill("#create-form-name", "Browser 5k")
    console.select_option("#create-form-kind", "distance")
    console.fill("#create-form-target_km", "5")
    console.fill("#create-form-categories", "women, men")
    console.click("#create-form-submit")
    console.wait_for_function("document.getElementById('race-status').textContent === 'draft'")
    race_id = console.evaluate("location.hash.slice(1)")
    console.click("[data-action=open]")
    console.wait_for_function("document.getElementById('race-status').textContent === 'open'")

    athletes = [client.account(name) for name in ("Cheater McFast", HOSTILE, "Lost Signal", "Ana", "Ben", "Cleo")]
    for i, athlete in enumerate(athletes):
        joined = client.http.post(
            f"/races/{race_id}/athletes", json={"category": ("women", "men")[i % 2]}, headers=athlete["headers"]
        )
        assert joined.status_code == 201, joined.text
    cheater, hostile, lost = athletes[:3]
    watch = client.http.post("/devices", json={"name": "Watch", "model": "W1"}, headers=lost["headers"]).json()["id"]
    device = client.http.put(f"/races/{race_id}/devices/{watch}", headers=lost["headers"])
    assert device.status_code == 200, device.text

    console.click("[data-action=start]")
    console.wait_for_function("document.getElementById('race-status').textContent === 'live'")
    swarm = Streaming(client, race_id, athletes, cheaters=1)
    swarm.start()
    try:
        live = browser.new_page(bypass_csp=True)
        live.goto(f"{base}/races/{race_id}")
        live.wait_for_selector(".row[data-user] .name")
        leader_distance = live.locator(".row[data-place='1'] .dist").text_content()
        live.wait_for_function(  # the board moves while we watch, without a reload
            "d => { const n = document.querySelector(\".row[data-place='1'] .dist\"); return n && n.textContent !== d }",
            arg=leader_distance,
            timeout=20_000,
        )
        assert live.locator(".row[data-user] .name", has_text="<script>").count() == 1  # shown as text
        assert live.evaluate("window.__pwned") is None

        # A device goes silent: its athlete is marked, and the dots follow whoever is followed. (A sample
        # that arrived after the offline signal would rightly clear the mark: silence waits for the last.)
        swarm.silence(lost["id"])
        on_loop(_signal_lost(race_id, watch))
        live.wait_for_selector(f".row[data-user='{lost['id']}'] .badge.lost", timeout=20_000)
        live.click(f".row[data-user='{athletes[3]['id']}']")
        live.wait_for_selector("#followed-row")
        live.wait_for_selector("svg.course .dot.followed")
        live.wait_for_selector(f".row[data-user='{cheater['id']}'] .badge.provisional", timeout=20_000)
        live.select_option("#category", "men")
        live.wait_for_function("document.getElementById('board-count').textContent.startsWith('3 ')")
        live.select_option("#category", "")
        live.screenshot(path=SHOTS / "race-live.png", full_page=True)

        # The console shows the flag with its evidence; the organizer disqualifies.
        flag = console.locator(f"tr.flag[data-user='{cheater['id']}']")
        flag.wait_for(timeout=20_000)
        assert "speed" in flag.text_content()
        console.wait_for_function(
            "Number(document.querySelector('[data-counter=flagged] b').textContent) >= 1", timeout=10_000
        )
        console.screenshot(path=SHOTS / "organizer-flags.png", full_page=True)
        flag.locator("button.disqualify").click()
        console.wait_for_selector(f"tr.flag[data-user='{cheater['id']}'] [data-decision=dsq]")
        live.wait_for_selector(f".row[data-user='{cheater['id']}'] .badge.dsq", timeout=20_000)
    finally:
        swarm.stopping.set()
        swarm.join(10)
    assert not swarm.errors, swarm.errors[:3]

    console.click("[data-action=end]")
    console.wait_for_function("document.getElementById('race-status').textContent === 'finished'")
    live.wait_for_function("document.getElementById('race-status').textContent === 'finished'", timeout=20_000)
    live.screenshot(path=SHOTS / "race-finished.png", full_page=True)
    with console.expect_download() as download:
        console.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert download.value.suggested_filename == f"race-{race_id}-results.csv"
    assert {row["user_id"] for row in rows} == {a["id"] for a in athletes}
    by_user = {row["user_id"]: row for row in rows}
    assert by_user[cheater["id"]]["status"] == "dsq"
    assert by_user[hostile["id"]]["name"] == HOSTILE
    console.screenshot(path=SHOTS / "organizer.png", full_page=True)


async def _signal_lost(race_id: str, device_id: str) -> None:
    from serve.app import api

    await api.state.arena.race(race_id, "signal", {"device_id": device_id, "state": "offline"})


def test_the_athlete_page_shows_workouts_totals_records_and_live_notifications(server, browser):
    base, _ = server
    client = Api(base)
    athlete = client.account("Runner Page")
    for day, km in ((2, 5.0), (3, 10.0), (9, 3.0)):  # two ISO weeks
        body = {
            "sport": "run",
            "start": f"2026-03-{day:02d}T07:00:00+00:00",
            "duration_s": km * 300,
            "distance_m": km * 1000,
        }
        assert client.http.post("/workouts", json=body, headers=athlete["headers"]).status_code == 201
    page = browser.new_page(bypass_csp=True)
    sign_in(page, base, athlete["email"], "/me")
    page.wait_for_selector("#workouts tr")
    assert page.locator("#workouts tr").count() == 3
    assert page.locator("#weekly g.week").count() == 2
    page.wait_for_selector("#records-body tr")
    page.wait_for_selector("#badges li")  # level, points and badges (none for three runs typed in)
    assert page.text_content("#level") == "1" and page.locator("#badges li.badge-earned").count() == 0
    before = page.locator("#notifications li").count()
    page.wait_for_selector("body[data-notifications=live]")  # the stream said "ready": it has subscribed
    fan = client.account("A Fan")
    assert client.http.post(f"/users/{athlete['id']}/follow", headers=fan["headers"]).status_code < 300
    page.wait_for_function("n => document.querySelectorAll('#notifications li').length > n", arg=before)
    assert page.locator("#notifications li[data-type=follower]").count() == 1
    assert page.text_content("#unread") == "1"
    page.screenshot(path=SHOTS / "athlete.png", full_page=True)
    page.click("#logout")
    page.wait_for_url(f"{base}/login*")
    assert page.evaluate("localStorage.getItem('arena.session')") is None


def test_a_wrong_password_says_so_and_an_unknown_race_says_so(server, browser):
    base, _ = server
    page = browser.new_page(bypass_csp=True)
    page.goto(f"{base}/login")
    page.fill("#email", "nobody@example.com")
    page.fill("#password", "not the password")
    page.click("#login-submit")
    page.wait_for_function("document.getElementById('login-error').textContent.length > 0")
    assert "Wrong email or password" in page.text_content("#login-error")
    page.goto(f"{base}/races/{uuid.uuid4().hex}")
    page.wait_for_function("document.getElementById('race-error').textContent.length > 0")
    assert page.text_content("#race-error") == "There is no such race."
    page.goto(f"{base}/")
    page.wait_for_selector("#races li")
    page.screenshot(path=SHOTS / "index.png", full_page=True)


def test_pages_are_served_with_a_strict_policy_and_stay_out_of_the_api_schema(server):
    from serve.app import api

    base, _ = server
    for path in ("/", "/login", "/me", "/organizer", f"/races/{uuid.uuid4().hex}"):
        answer = httpx.get(f"{base}{path}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert httpx.get(f"{base}/static/race.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{base}/static/..%2Fpages.py").status_code == 404
    assert httpx.get(f"{base}/races/bad%20id").status_code == 422
    assert not [
        p
        for p in api.openapi()["paths"]
        if not p.startswith(("/api/", "/ops/")) and p not in ("/health", "/health/details", "/metrics", "/livez")
    ]


def test_rows_are_read_in_windows_filtered_by_category_or_name(server):
    base, _ = server
    client = Api(base)
    boss = client.account("Org", "chief@example.com")  # an admin (settings.admin_emails)
    client.http.put(f"/users/{boss['id']}/roles", json={"roles": ["organizer"]}, headers=boss["headers"])
    boss["headers"] = client.login(boss["email"])
    body = {"name": "Windows", "sport": "run", "kind": "distance", "target_m": 1000, "categories": ["a", "b"]}
    race = client.http.post("/races", json=body, headers=boss["headers"]).json()
    client.http.post(f"/races/{race['id']}/actions/open", headers=boss["headers"])
    for i, name in enumerate(("Zoe", "Yan", "Xia")):
        athlete = client.account(name)
        joined = client.http.post(
            f"/races/{race['id']}/athletes", json={"category": "ab"[i % 2]}, headers=athlete["headers"]
        )
        assert joined.status_code == 201
    assert race["id"] in [r["id"] for r in client.http.get("/races?mine=true", headers=boss["headers"]).json()["items"]]
    rows = client.http.get(f"/races/{race['id']}/leaderboard/rows?start=1&count=5").json()
    assert rows["total"] == 3 and [r["place"] for r in rows["rows"]] == [2, 3]
    only_a = client.http.get(f"/races/{race['id']}/leaderboard/rows?category=a").json()
    assert only_a["total"] == 2 and {r["category"] for r in only_a["rows"]} == {"a"}
    named = client.http.get(f"/races/{race['id']}/leaderboard/rows?q=ya").json()
    assert [r["name"] for r in named["rows"]] == ["Yan"]
    bad_route = client.http.patch(f"/races/{race['id']}", json={"route": [[100, 0], [0, 0]]}, headers=boss["headers"])
    assert bad_route.status_code == 422
