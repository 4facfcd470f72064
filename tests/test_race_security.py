"""Races as an attacker tries them: hidden drafts, frozen results, owned devices, CSV formulas, private athletes."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid

import pytest

from engine.errors import Forbidden, Rejected
from serve.api.races import _cell
from serve.race_privacy import PRIVATE_NAME
from tests.test_api import assert_problem, signup
from tests.test_races import live_race, organizer, run_samples

pytestmark = pytest.mark.ray


async def _person(client, name: str) -> tuple[str, dict]:
    """An athlete named anything at all (``signup`` makes the email from the name)."""
    return await signup(client, name, email=f"p-{uuid.uuid4().hex[:12]}@example.com")


async def _admin_headers(client) -> dict:
    email, password = "chief@example.com", "correct horse battery"  # settings.admin_emails
    await client.post("/accounts", json={"email": email, "password": password, "display_name": "Chief"})
    login = await client.post("/auth/login", json={"email": email, "password": password})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _run(client, race_id: str, headers: dict, pace_s_per_km: float) -> None:
    gun = time.time() - 600
    samples = run_samples(gun, 300, pace_s_per_km)
    answer = await client.post(f"/races/{race_id}/telemetry", json={"samples": samples}, headers=headers)
    assert answer.status_code == 200, answer.text


async def _final_race(client) -> tuple[str, str, dict, dict]:
    """A final race with two finishers: (race, organizer's headers, {name: (id, headers)}, results by user)."""
    _, org = await organizer(client)
    race_id = await live_race(client, org)
    athletes = {}
    for name in ("First", "Second"):
        athletes[name] = await signup(client, name)
        await client.post(f"/races/{race_id}/athletes", json={}, headers=athletes[name][1])
    await client.patch(f"/races/{race_id}", json={"start_at": time.time() - 600}, headers=org)
    while (await client.get(f"/races/{race_id}")).json()["status"] != "live":
        await asyncio.sleep(0.02)
    await _run(client, race_id, athletes["First"][1], 240)
    await _run(client, race_id, athletes["Second"][1], 280)
    assert (await client.post(f"/races/{race_id}/actions/end", headers=org)).json()["status"] == "finished"
    for flag in (await client.get(f"/races/{race_id}/flags", headers=org)).json():  # fair play is not tested here
        await client.post(f"/races/{race_id}/flags/{flag['user_id']}/accept", headers=org)
    assert (await client.post(f"/races/{race_id}/actions/finalize", headers=org)).json()["status"] == "final"
    return race_id, org, athletes, await _places(client, race_id)


async def _places(client, race_id: str) -> dict:
    rows = (await client.get(f"/races/{race_id}/results")).json()["results"]
    return {r["user_id"]: (r["place"], r["status"]) for r in rows}


# -- drafts ------------------------------------------------------------------


async def test_a_draft_race_is_not_found_on_any_read_or_write_for_anyone_but_its_organizer(client):
    org_id, org = await organizer(client)
    created = await client.post(
        "/races", json={"name": "Secret", "sport": "run", "kind": "distance", "target_m": 5000}, headers=org
    )
    race_id = created.json()["id"]
    _, stranger = await signup(client, "Snoop")
    reads = [
        "",
        "/leaderboard",
        "/leaderboard?n=1",
        "/leaderboard/rows",
        "/leaderboard/rows?q=a&start=0&count=5",
        f"/leaderboard/around/{org_id}",
        "/live",
        "/results",
        "/results.csv",
    ]
    for path in reads:
        for headers in ({}, stranger):
            assert_problem(await client.get(f"/races/{race_id}{path}", headers=headers), 404, "no such race")
    assert_problem(await client.get(f"/races/{race_id}/leaderboard/friends", headers=stranger), 404)
    assert_problem(await client.get(f"/races/{race_id}/flags", headers=stranger), 404)
    assert_problem(await client.patch(f"/races/{race_id}", json={"name": "Mine"}, headers=stranger), 404)
    # Writes do not tell a draft exists either (no 403 "organizer", no 409 "the race is draft").
    assert_problem(await client.post(f"/races/{race_id}/athletes", json={}, headers=stranger), 404)
    assert_problem(await client.post(f"/races/{race_id}/actions/open", headers=stranger), 404)
    assert_problem(await client.post(f"/races/{race_id}/actions/cancel", headers=stranger), 404)
    samples = {"samples": run_samples(time.time(), 2)}
    assert_problem(await client.post(f"/races/{race_id}/telemetry", json=samples, headers=stranger), 404)
    assert race_id not in (await client.get("/races")).text
    # Its organizer and admins see it.
    assert (await client.get(f"/races/{race_id}/leaderboard", headers=org)).status_code == 200
    assert (await client.get(f"/races/{race_id}/leaderboard/rows", headers=org)).status_code == 200
    assert (await client.get(f"/races/{race_id}", headers=await _admin_headers(client))).json()["status"] == "draft"
    assert (await client.get(f"/races/{race_id}/leaderboard", headers=await _admin_headers(client))).status_code == 200
    # Once open, it is public.
    await client.post(f"/races/{race_id}/actions/open", headers=org)
    for _ in range(100):
        if (await client.get(f"/races/{race_id}/leaderboard")).status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert (await client.get(f"/races/{race_id}/leaderboard")).json()["status"] == "open"


# -- results stay put ----------------------------------------------------------


async def test_no_withdrawal_once_the_race_is_finished_final_or_cancelled(client):
    race_id, org, athletes, before = await _final_race(client)
    first_id, first = athletes["First"]
    assert before[first_id] == (1, "finished")
    assert_problem(await client.delete(f"/races/{race_id}/athletes/me", headers=first), 409, "final")
    assert await _places(client, race_id) == before

    _, org2 = await organizer(client)
    finished = await live_race(client, org2)
    _, runner = await signup(client, "Runner")
    await client.post(f"/races/{finished}/athletes", json={}, headers=runner)
    await client.post(f"/races/{finished}/actions/start", headers=org2)
    await client.post(f"/races/{finished}/actions/end", headers=org2)
    assert_problem(await client.delete(f"/races/{finished}/athletes/me", headers=runner), 409, "finished")

    cancelled = await live_race(client, org2)
    await client.post(f"/races/{cancelled}/athletes", json={}, headers=runner)
    await client.post(f"/races/{cancelled}/actions/cancel", headers=org2)
    assert_problem(await client.delete(f"/races/{cancelled}/athletes/me", headers=runner), 409, "cancelled")

    still_open = await live_race(client, org2)
    await client.post(f"/races/{still_open}/athletes", json={}, headers=runner)
    assert (await client.delete(f"/races/{still_open}/athletes/me", headers=runner)).status_code == 204


async def test_after_final_only_a_recorded_organizer_correction_changes_a_result(client):
    race_id, org, athletes, before = await _final_race(client)
    (first_id, first), (second_id, _) = athletes["First"], athletes["Second"]
    org_id = (await client.get("/me", headers=org)).json()["id"]

    assert_problem(await client.post(f"/races/{race_id}/flags/{first_id}/disqualify", headers=org), 409, "correction")
    assert_problem(await client.post(f"/races/{race_id}/flags/{first_id}/accept", headers=org), 409, "correction")
    assert await _places(client, race_id) == before

    body = {"user_id": first_id, "action": "disqualify", "reason": "course cut at km 3, judge report 12"}
    assert_problem(await client.post(f"/races/{race_id}/corrections", json=body, headers=first), 403, "organizer")
    assert_problem(await client.post(f"/races/{race_id}/corrections", json=body), 401)
    for bad in ({**body, "reason": ""}, {"user_id": first_id, "action": "disqualify"}, {**body, "action": "promote"}):
        assert_problem(await client.post(f"/races/{race_id}/corrections", json=bad, headers=org), 422)
    assert_problem(
        await client.post(f"/races/{race_id}/corrections", json={**body, "reason": "   "}, headers=org), 409, "reason"
    )
    assert_problem(
        await client.post(f"/races/{race_id}/corrections", json={**body, "user_id": uuid.uuid4().hex}, headers=org),
        404,
    )

    made = await client.post(f"/races/{race_id}/corrections", json=body, headers=org)
    assert made.status_code == 201, made.text
    correction = made.json()
    assert correction["by"] == org_id and correction["reason"] == body["reason"] and correction["at"] > 0
    assert (correction["from"], correction["to"], correction["action"]) == ("finished", "dsq", "disqualify")
    assert await _places(client, race_id) == {first_id: (None, "dsq"), second_id: (1, "finished")}
    results = (await client.get(f"/races/{race_id}/results")).json()
    assert results["official"] and results["corrections"][0]["reason"] == body["reason"]
    info = (await client.get(f"/races/{race_id}")).json()
    assert [c["action"] for c in info["corrections"]] == ["disqualify"]
    assert [t["status"] for t in info["transitions"]] == ["draft", "open", "live", "finished", "final"]

    again = await client.post(f"/races/{race_id}/corrections", json=body, headers=org)
    assert_problem(again, 409, "already")
    back = {"user_id": first_id, "action": "reinstate", "reason": "appeal upheld"}
    assert (await client.post(f"/races/{race_id}/corrections", json=back, headers=org)).json()["to"] == "finished"
    assert await _places(client, race_id) == before
    assert_problem(await client.post(f"/races/{race_id}/corrections", json=back, headers=org), 409, "disqualified")

    audit = await client.get("/admin/audit?event=race.", headers=await _admin_headers(client))
    events = [(e["event"], e["subject"]) for e in audit.json()["items"] if e["details"].get("race") == race_id]
    assert ("race.correct", first_id) in events and ("race.finalize", None) in events
    assert all(e["actor"] == org_id for e in audit.json()["items"] if e["details"].get("race") == race_id)


async def test_a_race_that_is_not_final_takes_no_corrections_and_review_decisions_are_audited(client):
    org_id, org = await organizer(client)
    race_id = await live_race(client, org)
    user_id, headers = await signup(client, "Cheat")
    await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)
    await client.post(f"/races/{race_id}/actions/start", headers=org)
    body = {"user_id": user_id, "action": "disqualify", "reason": "early"}
    assert_problem(await client.post(f"/races/{race_id}/corrections", json=body, headers=org), 409, "final")
    assert (await client.post(f"/races/{race_id}/flags/{user_id}/disqualify", headers=org)).status_code == 200
    await client.post(f"/races/{race_id}/actions/cancel", headers=org)
    assert_problem(await client.post(f"/races/{race_id}/flags/{user_id}/accept", headers=org), 409)
    audit = (await client.get("/admin/audit?event=race.", headers=await _admin_headers(client))).json()["items"]
    mine = {(e["event"], e["actor"], e["subject"]) for e in audit if e["details"].get("race") == race_id}
    assert mine == {("race.disqualify", org_id, user_id), ("race.cancel", org_id, None)}


# -- devices -------------------------------------------------------------------


async def _device(client, headers) -> dict:
    answer = await client.post("/devices", json={"name": "Watch", "model": "W1"}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_a_device_is_bound_only_by_its_owner_and_the_device_keeps_the_binding(client):
    _, org = await organizer(client)
    race_id = await live_race(client, org)
    victim_id, victim = await signup(client, "Victim")
    _, attacker = await signup(client, "Attacker")
    for headers in (victim, attacker):
        await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)
    watch = await _device(client, victim)

    for path in (f"/races/{race_id}/devices/{watch['id']}", f"/devices/{watch['id']}/race/{race_id}"):
        assert_problem(await client.put(path, headers=attacker), 404, "no such device")
    made_up = uuid.uuid4().hex
    assert_problem(await client.put(f"/races/{race_id}/devices/{made_up}", headers=attacker), 404)
    assert made_up not in await client.arena.race(race_id, "device_map")
    assert watch["id"] not in await client.arena.race(race_id, "device_map")

    # The owner's own bind is not blocked by the attempts above, through either route.
    bound = await client.put(f"/races/{race_id}/devices/{watch['id']}", headers=victim)
    assert bound.status_code == 200, bound.text
    assert bound.json()["device"]["race_id"] == race_id and bound.json()["device"]["athlete"] == victim_id
    again = await client.put(f"/devices/{watch['id']}/race/{race_id}", headers=victim)
    assert again.json()["participant"] == bound.json()["participant"]
    route = await client.arena.ask("device", watch["id"], "route")
    assert route == {"owner": victim_id, "race_id": race_id, "revoked": False}  # what the MQTT hub reads

    # Moving it to another race is explicit: the first race forgets it.
    other = await live_race(client, org)
    assert_problem(await client.put(f"/races/{other}/devices/{watch['id']}", headers=victim), 404, "not in the race")
    await client.post(f"/races/{other}/athletes", json={}, headers=victim)
    moved = await client.put(f"/races/{other}/devices/{watch['id']}", headers=victim)
    assert moved.json()["device"]["race_id"] == other
    assert watch["id"] not in await client.arena.race(race_id, "device_map")
    assert watch["id"] in await client.arena.race(other, "device_map")

    assert (await client.delete(f"/devices/{watch['id']}", headers=victim)).status_code == 204
    assert watch["id"] not in await client.arena.race(other, "device_map")
    assert_problem(await client.put(f"/races/{other}/devices/{watch['id']}", headers=victim), 409, "revoked")


# -- exposure ------------------------------------------------------------------


def test_every_formula_opener_in_a_csv_cell_is_neutralised():
    for hostile in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"):
        assert _cell(hostile) == "'" + hostile
    assert _cell("Ana") == "Ana" and _cell(3) == 3 and _cell(None) is None and _cell(-1.5) == -1.5


async def test_results_csv_writes_no_live_formula_in_any_text_column(client):
    _, org = await organizer(client)
    race_id = await live_race(client, org, categories=['=HYPERLINK("http://evil")', "open"])
    hostile = ['=cmd|" /C calc"!A0', "+SUM(1,2)", "-2+3", "@SUM(A1:A9)"]
    for name in hostile:
        _, headers = await _person(client, name)
        joined = await client.post(
            f"/races/{race_id}/athletes", json={"category": '=HYPERLINK("http://evil")'}, headers=headers
        )
        assert joined.status_code == 201, joined.text
    await client.post(f"/races/{race_id}/actions/cancel", headers=org)
    table = list(csv.DictReader(io.StringIO((await client.get(f"/races/{race_id}/results.csv")).text)))
    assert sorted(row["name"] for row in table) == sorted("'" + name for name in hostile)
    for row in table:
        assert row["category"] == '\'=HYPERLINK("http://evil")'
        assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in row.values())


async def _eventually(check, what: str) -> None:
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


async def test_a_private_athlete_is_hidden_from_everyone_who_may_not_see_the_profile(client):
    _, org = await organizer(client)
    race_id = await live_race(client, org)
    secret = f"Zed Hidden {uuid.uuid4().hex[:6]}"
    private_id, private = await _person(client, secret)
    await client.patch("/me", json={"private": True}, headers=private)
    public_id, public = await _person(client, "Open Runner")
    fan_id, fan = await _person(client, "Approved Fan")
    _, stranger = await signup(client, "Stranger")
    await client.post(f"/users/{private_id}/follow", headers=fan)
    await client.post(f"/me/follow-requests/{fan_id}/accept", headers=private)
    _, pending = await _person(client, "Pending Fan")
    await client.post(f"/users/{private_id}/follow", headers=pending)  # asked, never approved
    for headers in (private, public):
        assert (await client.post(f"/races/{race_id}/athletes", json={}, headers=headers)).status_code == 201
    await client.post(f"/races/{race_id}/actions/start", headers=org)

    def leaks(text: str) -> bool:
        return secret in text or private_id in text

    for headers in ({}, stranger, pending):
        for path in ("/leaderboard", "/leaderboard/rows", "/leaderboard/rows?start=0&count=1&category="):
            answer = await client.get(f"/races/{race_id}{path}", headers=headers)
            assert answer.status_code == 200 and not leaks(answer.text), (path, answer.text)
            assert PRIVATE_NAME in answer.text
        for q in ("Zed", "hidden", secret):  # name search finds nothing that is hidden
            found = (await client.get(f"/races/{race_id}/leaderboard/rows", params={"q": q}, headers=headers)).json()
            assert found["total"] == 0 and found["rows"] == []
        assert_problem(await client.get(f"/races/{race_id}/leaderboard/around/{private_id}", headers=headers), 404)
        around = await client.get(f"/races/{race_id}/leaderboard/around/{public_id}", headers=headers)
        assert around.status_code == 200 and not leaks(around.text)
    friends = await client.get(f"/races/{race_id}/leaderboard/friends", headers=pending)
    assert not leaks(friends.text)

    # The athlete, the follower they approved and the organizer see who it is; search still does not match.
    for headers in (private, fan, org):
        rows = (await client.get(f"/races/{race_id}/leaderboard/rows", headers=headers)).json()["rows"]
        assert {r["name"] for r in rows} == {secret, "Open Runner"}
        board = (await client.get(f"/races/{race_id}/leaderboard", headers=headers)).json()["entries"]
        assert private_id in {e["user_id"] for e in board}
        around = await client.get(f"/races/{race_id}/leaderboard/around/{private_id}", headers=headers)
        assert around.status_code == 200 and secret in around.text
    fan_board = (await client.get(f"/races/{race_id}/leaderboard/friends", headers=fan)).json()["entries"]
    assert [e["name"] for e in fan_board] == [secret]

    # Results, CSV and the live stream (a public stream, the same for every viewer).
    await client.post(f"/races/{race_id}/actions/end", headers=org)
    await client.post(f"/races/{race_id}/actions/finalize", headers=org)
    for headers in ({}, stranger):
        for path in ("/results", "/results.csv", "/live", ""):
            answer = await client.get(f"/races/{race_id}{path}", headers=headers)
            assert answer.status_code == 200 and not leaks(answer.text), (path, answer.text)
        assert PRIVATE_NAME in (await client.get(f"/races/{race_id}/results.csv", headers=headers)).text
    for headers in (fan, org):
        assert secret in (await client.get(f"/races/{race_id}/results", headers=headers)).text
    # A correction names its athlete: hidden too.
    correction = {"user_id": private_id, "action": "disqualify", "reason": "no chip"}
    assert (await client.post(f"/races/{race_id}/corrections", json=correction, headers=org)).status_code == 201
    for path in ("", "/results"):
        assert not leaks((await client.get(f"/races/{race_id}{path}")).text)
    correction = {"user_id": public_id, "action": "disqualify", "reason": "no bib"}
    assert (await client.post(f"/races/{race_id}/corrections", json=correction, headers=org)).status_code == 201
    assert public_id in (await client.get(f"/races/{race_id}")).text

    # Privacy follows the profile: made public, the name shows; a public athlete gone private is hidden.
    assert (await client.patch("/me", json={"private": False}, headers=private)).json()["private"] is False
    assert (await client.patch("/me", json={"private": True}, headers=public)).json()["private"] is True
    results = (await client.get(f"/races/{race_id}/results")).text
    assert secret in results and public_id not in results and "Open Runner" not in results
    assert public_id not in (await client.get(f"/races/{race_id}")).text  # its correction too

    async def spectators_caught_up() -> bool:
        text = (await client.get(f"/races/{race_id}/leaderboard/rows")).text
        return secret in text and "Open Runner" not in text

    await _eventually(spectators_caught_up, "the spectators' view did not follow the privacy change")


# -- the rules without Ray -----------------------------------------------------


async def test_corrections_and_private_marks_come_back_from_the_snapshot(tmp_path):
    from tests.test_race_entity import RIDE, make_host

    host = make_host(tmp_path)
    await host.start()
    await host.ask("race", "r", "create", {"organizer": "org", "config": RIDE})
    await host.ask("race", "r", "open", {"by": "org"})
    await host.ask("race", "r", "join", {"user_id": "u1", "name": "One", "private": True})
    await host.ask("race", "r", "join", {"user_id": "u2", "name": "Two"})
    for action in ("start", "end", "finalize"):
        await host.ask("race", "r", action, {"by": "org"})
    with pytest.raises(Rejected):
        await host.ask("race", "r", "withdraw", {"user_id": "u2"})
    with pytest.raises(Forbidden):
        await host.ask("race", "r", "correct", {"by": "u1", "user_id": "u2", "action": "disqualify", "reason": "x"})
    await host.ask("race", "r", "correct", {"by": "org", "user_id": "u2", "action": "disqualify", "reason": "cut"})
    await host.stop()

    again = make_host(tmp_path)
    await again.start()
    info = await again.ask("race", "r", "info")
    assert [(c["user_id"], c["to"], c["reason"]) for c in info["corrections"]] == [("u2", "dsq", "cut")]
    assert (await again.ask("race", "r", "view"))["private"] == [0]
    back = {"by": "org", "user_id": "u2", "action": "reinstate", "reason": "appeal"}
    assert (await again.ask("race", "r", "correct", back))["to"] == "dns"  # what they were before
    await again.stop()


def test_a_hidden_athlete_is_concealed_by_name_and_id_and_never_matched_by_search():
    import numpy as np

    from serve.race_privacy import Audience, conceal
    from serve.spectators import RaceView

    view = RaceView(
        "r", 1, "live", 0.0, {}, ["Ann Secret", "Bob Open"], ["ann", "bob"],
        np.array([0, 1], np.uint32), np.array([10, 5], np.float32), {}, {"ann": 0, "bob": 1}, set(),
        private={0},
    )  # fmt: skip
    assert view.filtered(text="secret").tolist() == [] and view.filtered(text="bob").tolist() == [1]
    rows = view.rows(0, 2)
    public = conceal(rows, view.private, Audience())
    assert [(r["user_id"], r["name"]) for r in public] == [("private-0", PRIVATE_NAME), ("bob", "Bob Open")]
    assert rows[0]["name"] == "Ann Secret"  # the cached rows are not changed
    for viewer in (Audience(everyone=True), Audience(known=frozenset({"ann"}))):
        assert conceal(rows, view.private, viewer) == rows
