"""Access logging (docs/privacy.md): every read of another person's data through an admin's or an organizer's
tool is recorded, durable before the reader sees it, and shown to that person and in their export."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.test_api import assert_problem, signup
from tests.test_export import exported_archive
from tests.test_races import _admin, live_race, organizer, run_samples

pytestmark = pytest.mark.ray


async def test_an_organizer_reading_fair_play_flags_is_logged_for_the_flagged_athlete_alone(client):
    org_id, org = await organizer(client)
    race_id = await live_race(client, org)
    cheat_id, cheat = await signup(client, "Cheat")
    honest_id, honest = await signup(client, "Honest")
    for headers in (cheat, honest):
        await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)
    gun = time.time() - 600
    await client.patch(f"/races/{race_id}", json={"start_at": gun}, headers=org)
    for _ in range(200):
        if (await client.get(f"/races/{race_id}")).json()["status"] == "live":
            break
        await asyncio.sleep(0.02)
    await client.post(f"/races/{race_id}/telemetry", json={"samples": run_samples(gun, 60, 60)}, headers=cheat)
    await client.post(f"/races/{race_id}/telemetry", json={"samples": run_samples(gun, 60, 300)}, headers=honest)
    assert (await client.get("/me/access-log", headers=cheat)).json()["items"] == []

    flags = (await client.get(f"/races/{race_id}/flags", headers=org)).json()
    assert {f["user_id"] for f in flags} == {cheat_id}
    logged = (await client.get("/me/access-log", headers=cheat)).json()["items"]
    assert [(e["by"], e["role"], e["what"], e["where"]) for e in logged] == [
        (org_id, "organizer", "fair-play flags", race_id)
    ]
    assert (await client.get("/me/access-log", headers=honest)).json()["items"] == []
    assert (await client.get("/me/access-log", headers=org)).json()["items"] == []  # one's own reads are not logged
    archive = await exported_archive(client, cheat)
    assert [e["what"] for e in json.loads(archive.read("access_log.json"))] == ["fair-play flags"]


async def test_an_admin_reading_the_audit_log_is_logged_for_the_people_in_it(client):
    ana_id, ana = await signup(client, "Ana")
    changed = await client.post("/auth/password", json={"current_password": "correct horse battery",
                                                        "new_password": "another horse battery"}, headers=ana)  # fmt: skip
    assert changed.status_code == 204
    admin = await _admin(client)
    read = (await client.get("/admin/audit", headers=admin)).json()
    assert any(e.get("actor") == ana_id for e in read["items"])
    # Ana signs in afresh (the password change ended her sessions) and sees who read what
    ana_headers = await _sign_in_again(client, ana_id)
    logged = (await client.get("/me/access-log", headers=ana_headers)).json()["items"]
    assert logged and {(e["role"], e["what"]) for e in logged} == {("admin", "audit log")}


async def _sign_in_again(client, user_id: str) -> dict:
    # tests.test_api.signup registered "ana-…@example.com"; the address is in the account
    from actors.account import Account

    email = (await client.arena.ref(Account, user_id).ask(Account.me))["email"]
    login = await client.post("/auth/login", json={"email": email, "password": "another horse battery"})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def test_the_access_log_is_the_callers_own_and_pages(client):
    assert_problem(await client.get("/me/access-log"), 401)
    _, headers = await signup(client, "Pager")
    for query in ("?limit=0", "?limit=10000", "?cursor=%00%01", "?cursor=" + "x" * 5000):
        assert (await client.get("/me/access-log" + query, headers=headers)).status_code in (200, 400, 422)
