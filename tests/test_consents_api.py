"""Consent (GDPR Articles 7 and 9; docs/privacy.md): health data is stored only with explicit consent to
a versioned text, withdrawal takes effect at once and removes what was stored, and every change is logged."""

from __future__ import annotations

import pytest

from loadtest.gpx import synthetic_gpx
from tests.test_groups_api import PASSWORD, signup

pytestmark = pytest.mark.ray


async def _version(client, purpose: str = "health") -> str:
    return (await client.get("/consents")).json()[purpose]["version"]


async def test_heart_rates_are_stored_only_with_consent_and_go_when_it_is_withdrawn(client):
    ana = await signup(client, "Ana")
    headers = ana["headers"]
    files = {"file": ("run.gpx", synthetic_gpx(), "application/gpx+xml")}
    without = (await client.post("/workouts/import", files=files, headers=headers)).json()
    assert "avg_hr" not in without and "max_hr" not in without  # the file had them: not kept
    assert (await client.put("/me/achievements/settings", json={"max_hr": 190}, headers=headers)).status_code == 409
    assert (await client.put("/me/training/thresholds", json={"threshold_hr": 170}, headers=headers)).status_code == 409

    stale = await client.put("/me/consents/health", json={"given": True, "version": "1999-01-01"}, headers=headers)
    assert stale.status_code == 409 and "GET /consents" in stale.json()["detail"]
    given = await client.put("/me/consents/health", json={"given": True, "version": await _version(client)},
                             headers=headers)  # fmt: skip
    assert given.json() == {"health": True, "marketing": False}
    with_consent = (await client.post("/workouts/import", files={"file": ("r.gpx", synthetic_gpx(start=None, lat0=48.0),
                    "application/gpx+xml")}, headers=headers)).json()  # fmt: skip
    assert with_consent["avg_hr"] > 100
    assert (await client.put("/me/achievements/settings", json={"max_hr": 190, "rest_hr": 50},
                             headers=headers)).status_code == 200  # fmt: skip
    assert (await client.put("/me/training/thresholds", json={"threshold_hr": 170}, headers=headers)).status_code == 200

    # Withdrawn: nothing more is stored, and what was is removed
    withdrawn = await client.put("/me/consents/health", json={"given": False, "version": await _version(client)},
                                 headers=headers)  # fmt: skip
    assert withdrawn.json()["health"] is False
    await client.arena.drain()
    assert "avg_hr" not in (await client.get(f"/workouts/{with_consent['id']}", headers=headers)).json()
    listed = (await client.get(f"/users/{ana['id']}/workouts", headers=headers)).json()["items"]
    assert all("avg_hr" not in w for w in listed)
    assert (await client.get("/me/achievements/settings", headers=headers)).json()["heart"] is None
    thresholds = (await client.get("/me/training", headers=headers)).json()["thresholds"]
    assert thresholds["threshold_hr"]["source"] != "set"

    log = (await client.get("/me/consents", headers=headers)).json()["log"]
    assert [(e["purpose"], e["consent"], e["via"]) for e in log] == [("health", True, "settings"),
                                                                      ("health", False, "settings")]  # fmt: skip
    version = await _version(client)
    assert all(e["version"] == version and e["at"] > 0 for e in log)


async def test_consent_given_at_registration_is_recorded_as_such_and_marketing_carries_its_version(client):
    email = "consenting@example.com"
    created = await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": "Cy",
                                                   "health_consent": True})  # fmt: skip
    assert created.status_code == 201 and created.json()["health_consent"] is True
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    await client.patch("/me", json={"marketing_consent": True}, headers=headers)
    log = (await client.get("/me/consents", headers=headers)).json()["log"]
    assert [(e["purpose"], e["via"], e["version"]) for e in log] == [
        ("health", "registration", await _version(client)), ("marketing", "settings", await _version(client, "marketing")),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "path, body",
    [("/me/consents/health", {"given": "yes", "version": "x"}), ("/me/consents/health", {"given": True}),
     ("/me/consents/health", {"given": True, "version": "x" * 100}), ("/me/consents/dna", {"given": True, "version": "x"}),
     ("/me/consents/health", {"given": True, "version": "x", "extra": 1}), ("/me/consents/health", [True])],
)  # fmt: skip
async def test_malformed_consents_get_a_422_and_change_nothing(client, path, body):
    ana = await signup(client, "Mal")
    assert (await client.put(path, json=body, headers=ana["headers"])).status_code == 422
    assert (await client.get("/me/consents", headers=ana["headers"])).json() == {"health": False, "marketing": False,
                                                                                  "log": []}  # fmt: skip
    assert (await client.put("/me/consents/health", json={"given": True, "version": "x"})).status_code == 401


async def test_a_race_keeps_no_heart_rate_or_weight_of_an_athlete_without_consent(client):
    from engine.codec import unpack
    from engine.telemetry import decode
    from persistence import open_store
    from tests.test_races import live_race, organizer, run_samples

    _, org = await organizer(client)
    race_id = await live_race(client, org)
    ana = await signup(client, "Ana")
    refused = await client.post(f"/races/{race_id}/athletes", json={"weight_kg": 60}, headers=ana["headers"])
    assert refused.status_code == 409 and "consent" in refused.json()["detail"]
    assert (await client.post(f"/races/{race_id}/athletes", json={}, headers=ana["headers"])).status_code == 201
    await client.post(f"/races/{race_id}/actions/start", headers=org)
    import time

    sent = await client.post(f"/races/{race_id}/telemetry", json={"samples": run_samples(time.time() - 30, 20)},
                             headers=ana["headers"])  # fmt: skip
    assert sent.status_code == 200, sent.text
    store = open_store(client.arena.settings.database_url)
    await store.open()
    try:
        journal = [e for e in await store.read_journal("race", race_id) if e.message_type == "ingest"]
    finally:
        await store.close()
    rates = [int(h) for entry in journal for h in decode(unpack(entry.body)["samples"])["hr"]]
    assert len(rates) == 20 and set(rates) == {0}  # sent with a heart rate; none kept
