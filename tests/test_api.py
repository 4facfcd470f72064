"""The HTTP API end to end: the real FastAPI app, real hosts on the shared Ray cluster, a real store.

The app is called in-process (httpx's ASGI transport) so each test is fast; the
Serve proxy in front of it is covered by tests/test_serve.py.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from loadtest.gpx import synthetic_gpx

pytestmark = pytest.mark.ray

PASSWORD = "correct horse battery"


async def signup(client: httpx.AsyncClient, name: str = "Ana", email: str | None = None) -> tuple[str, dict]:
    email = email or f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    answer = await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": name})
    assert answer.status_code == 201, answer.text
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return answer.json()["id"], {"Authorization": f"Bearer {login.json()['access_token']}"}


def assert_problem(answer: httpx.Response, status: int, words: str = "") -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["status"] == status and body["title"] and isinstance(body["detail"], str)
    assert words.lower() in body["detail"].lower(), body
    return body


async def manual(client, headers, **fields) -> dict:
    body = {"sport": "run", "start": "2026-11-20T07:00:00Z", "duration_s": 1800, "distance_m": 6000, **fields}
    answer = await client.post("/workouts", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


# -- accounts ---------------------------------------------------------------


async def test_registering_returns_the_account_without_secrets(client):
    answer = await client.post(
        "/accounts", json={"email": "Zoe.Q@Example.COM", "password": PASSWORD, "display_name": "Zoé"}
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body["email"] == "zoe.q@example.com" and body["roles"] == ["athlete"]
    assert "password" not in str(body) and "hash" not in str(body)


async def test_an_email_registers_once_whatever_its_case(client):
    email = f"dup-{uuid.uuid4().hex[:6]}@example.com"
    first = await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": "A"})
    assert first.status_code == 201
    again = await client.post("/accounts", json={"email": email.upper(), "password": PASSWORD, "display_name": "B"})
    assert_problem(again, 409, "already registered")


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD, "display_name": "A"},
        {"email": "a@example.com", "password": "short", "display_name": "A"},
        {"email": "a@example.com", "password": PASSWORD, "display_name": ""},
        {"email": "a@example.com", "password": PASSWORD, "display_name": "A", "roles": ["admin"]},
        {"email": "a@example.com" * 30, "password": PASSWORD, "display_name": "A"},
        {"password": PASSWORD, "display_name": "A"},
        ["not", "an", "object"],
    ],
)
async def test_malformed_registrations_get_a_422_that_says_why(client, body):
    body = assert_problem(await client.post("/accounts", json=body), 422, "not valid")
    assert body["errors"]


async def test_broken_json_and_oversized_bodies_are_refused(client):
    broken = await client.post("/accounts", content=b'{"email": ', headers={"content-type": "application/json"})
    assert_problem(broken, 422)
    huge = await client.post(
        "/accounts", content=b"x" * (2 * 1024 * 1024), headers={"content-type": "application/json"}
    )
    assert_problem(huge, 413, "limit")


async def test_sign_in_works_and_wrong_passwords_or_unknown_emails_get_the_same_401(client):
    user_id, headers = await signup(client, "Bo")
    me = await client.get("/me", headers=headers)
    assert me.status_code == 200 and me.json()["id"] == user_id
    me_email = me.json()["email"]
    wrong = await client.post("/auth/login", json={"email": me_email, "password": "wrong password!"})
    unknown = await client.post("/auth/login", json={"email": "nobody@example.com", "password": "wrong password!"})
    assert assert_problem(wrong, 401)["detail"] == assert_problem(unknown, 401)["detail"]


async def test_repeated_failed_sign_ins_are_rate_limited_with_retry_after(client):
    _, headers = await signup(client, "Cy")
    email = (await client.get("/me", headers=headers)).json()["email"]
    for _ in range(5):
        assert (await client.post("/auth/login", json={"email": email, "password": "guess guess!"})).status_code == 401
    limited = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(limited, 429, "too many")
    assert 0 < int(limited.headers["Retry-After"]) <= 900


async def test_refresh_rotates_and_a_reused_refresh_token_revokes_its_session(client):
    email = f"rot-{uuid.uuid4().hex[:6]}@example.com"
    await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": "R"})
    first = (await client.post("/auth/login", json={"email": email, "password": PASSWORD})).json()
    second = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200 and second.json()["refresh_token"] != first["refresh_token"]
    replay = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(replay, 401, "already used")
    # the thief's replay killed the family: the legitimate newer token is dead too
    assert_problem(await client.post("/auth/refresh", json={"refresh_token": second.json()["refresh_token"]}), 401)
    for garbage in ("", "a.b", "x" * 300, "..", f"{uuid.uuid4().hex}.{uuid.uuid4().hex}.nope"):
        assert_problem(await client.post("/auth/refresh", json={"refresh_token": garbage}), 401)


async def test_logout_revokes_the_access_token_and_the_session(client):
    email = f"out-{uuid.uuid4().hex[:6]}@example.com"
    await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": "O"})
    tokens = (await client.post("/auth/login", json={"email": email, "password": PASSWORD})).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.post("/auth/logout", headers=headers)).status_code == 204
    assert_problem(await client.get("/me", headers=headers), 401, "revoked")
    assert_problem(await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)


async def test_changing_the_password_signs_out_every_session(client):
    email = f"pw-{uuid.uuid4().hex[:6]}@example.com"
    await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": "P"})
    tokens = (await client.post("/auth/login", json={"email": email, "password": PASSWORD})).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    refused = await client.post(
        "/auth/password",
        json={"current_password": "not it at all", "new_password": "another long one"},
        headers=headers,
    )
    assert_problem(refused, 403, "wrong")
    changed = await client.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": "another long one"}, headers=headers
    )
    assert changed.status_code == 204
    assert_problem(await client.get("/me", headers=headers), 401)
    assert_problem(await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    assert (await client.post("/auth/login", json={"email": email, "password": PASSWORD})).status_code == 401
    assert (await client.post("/auth/login", json={"email": email, "password": "another long one"})).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not.a.jwt", "Basic dXNlcjpwYXNz", "Bearer " + "e" * 5000],
)
async def test_endpoints_that_need_a_caller_answer_401(client, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    answer = await client.get("/me", headers=headers)
    assert_problem(answer, 401)
    assert "Bearer" in answer.headers["WWW-Authenticate"]


async def test_a_token_signed_with_another_key_is_refused(client):
    import jwt

    forged = jwt.encode(
        {"sub": "x", "roles": ["admin"], "jti": "j", "iat": 1, "exp": 4_000_000_000}, "y" * 48, algorithm="HS256"
    )
    assert_problem(await client.get("/me", headers={"Authorization": f"Bearer {forged}"}), 401)


async def test_only_an_admin_changes_roles(client):
    athlete, athlete_headers = await signup(client, "Ath")
    _, boss_headers = await signup(client, "Boss", email="boss@example.com")
    denied = await client.put(f"/users/{athlete}/roles", json={"roles": ["organizer"]}, headers=athlete_headers)
    assert_problem(denied, 403, "admin")
    granted = await client.put(
        f"/users/{athlete}/roles", json={"roles": ["athlete", "organizer"]}, headers=boss_headers
    )
    assert granted.json() == {"roles": ["athlete", "organizer"]}
    assert_problem(await client.put(f"/users/{athlete}/roles", json={"roles": ["emperor"]}, headers=boss_headers), 422)
    assert_problem(
        await client.put(f"/users/{uuid.uuid4().hex}/roles", json={"roles": ["athlete"]}, headers=boss_headers), 404
    )


async def test_profiles_respect_privacy_and_ids_are_validated(client):
    ana, ana_headers = await signup(client, "Ana")
    bo, bo_headers = await signup(client, "Bo")
    edit = {"profile": {"city": "Lyon", "sports": ["run"]}, "private": True}
    assert (await client.patch("/me", json=edit, headers=ana_headers)).json()["profile"]["city"] == "Lyon"
    seen = (await client.get(f"/users/{ana}", headers=bo_headers)).json()
    assert seen["private"] and "profile" not in seen
    assert (await client.get(f"/users/{ana}", headers=ana_headers)).json()["profile"]["city"] == "Lyon"
    assert_problem(await client.patch("/me", json={"profile": {"colour": "red"}}, headers=ana_headers), 422)
    assert_problem(await client.get(f"/users/{uuid.uuid4().hex}"), 404)
    assert (await client.get("/users/" + "x" * 65)).status_code == 422
    assert (await client.get("/users/bad%20id")).status_code == 422


# -- workouts ---------------------------------------------------------------


async def test_a_manual_indoor_workout_is_recorded_and_listed(client):
    ana, headers = await signup(client, "Ana")
    workout = await manual(client, headers, sport="ride", distance_m=0, indoor=True, avg_hr=131)
    assert workout["indoor"] and workout["pace_s_per_km"] is None and workout["source"] == "manual"
    listed = (await client.get(f"/users/{ana}/workouts", headers=headers)).json()
    assert [w["id"] for w in listed["items"]] == [workout["id"]]
    # without consent to health data, the heart rate is not stored (docs/privacy.md)
    assert "avg_hr" not in (await client.get(f"/workouts/{workout['id']}", headers=headers)).json()
    version = (await client.get("/consents")).json()["health"]["version"]
    await client.put("/me/consents/health", json={"given": True, "version": version}, headers=headers)
    workout = await manual(client, headers, sport="ride", distance_m=0, indoor=True, avg_hr=131)
    assert (await client.get(f"/workouts/{workout['id']}", headers=headers)).json()["avg_hr"] == 131


async def test_importing_a_gpx_computes_the_track_and_a_second_upload_is_a_duplicate(client):
    _, headers = await signup(client, "Gil")
    files = {"file": ("run.gpx", synthetic_gpx(), "application/gpx+xml")}
    answer = await client.post("/workouts/import", files=files, headers=headers)
    assert answer.status_code == 201, answer.text
    workout = answer.json()
    assert workout["source"] == "gpx" and workout["sport"] == "run"
    assert 3_800 < workout["distance_m"] < 4_100
    detail = (await client.get(f"/workouts/{workout['id']}", headers=headers)).json()
    assert len(detail["splits"]) == 4 and detail["track"]
    again = await client.post("/workouts/import", files=files, headers=headers)
    assert_problem(again, 409, "duplicate")


@pytest.mark.parametrize(
    "content",
    [b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, b"<gpx><trk>", b"just text", synthetic_gpx()[:500]],
)
async def test_a_bad_file_gets_a_422_that_says_why(client, content):
    _, headers = await signup(client, "Bad")
    answer = await client.post(
        "/workouts/import", files={"file": ("x.gpx", content, "application/gpx+xml")}, headers=headers
    )
    assert_problem(answer, 422, "cannot be imported")


async def test_an_xml_bomb_is_refused_without_expanding_it(client):
    _, headers = await signup(client, "Bomb")
    entities = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE gpx [{entities}]>'
        '<gpx xmlns="http://www.topografix.com/GPX/1/1"><trk><name>&lol9;</name></trk></gpx>'
    ).encode()
    answer = await client.post(
        "/workouts/import", files={"file": ("bomb.gpx", bomb, "application/gpx+xml")}, headers=headers
    )
    assert_problem(answer, 422)


async def test_an_oversized_upload_is_cut_off_with_413(client):
    _, headers = await signup(client, "Big")
    answer = await client.post(
        "/workouts/import",
        files={"file": ("big.gpx", b"<" * (26 * 1024 * 1024), "application/gpx+xml")},
        headers=headers,
    )
    assert_problem(answer, 413, "limit")


async def test_private_workouts_are_invisible_to_others_even_by_id(client):
    ana, ana_headers = await signup(client, "Ana")
    _, bo_headers = await signup(client, "Bo")
    hidden = await manual(client, ana_headers, visibility="private")
    shown = await manual(client, ana_headers, visibility="public", start="2026-11-21T07:00:00Z")
    assert_problem(await client.get(f"/workouts/{hidden['id']}", headers=bo_headers), 404)
    assert_problem(await client.get(f"/workouts/{hidden['id']}"), 404)
    listed = (await client.get(f"/users/{ana}/workouts", headers=bo_headers)).json()
    assert [w["id"] for w in listed["items"]] == [shown["id"]]


async def test_only_the_owner_edits_or_deletes_a_workout(client):
    _, ana_headers = await signup(client, "Ana")
    _, bo_headers = await signup(client, "Bo")
    workout = await manual(client, ana_headers)
    assert_problem(await client.patch(f"/workouts/{workout['id']}", json={"title": "mine"}, headers=bo_headers), 403)
    assert_problem(await client.delete(f"/workouts/{workout['id']}", headers=bo_headers), 403)
    assert_problem(await client.patch(f"/workouts/{workout['id']}", json={"owner": "me"}, headers=ana_headers), 422)
    edited = await client.patch(f"/workouts/{workout['id']}", json={"title": "Tempo"}, headers=ana_headers)
    assert edited.json()["title"] == "Tempo"
    assert (await client.delete(f"/workouts/{workout['id']}", headers=ana_headers)).status_code == 204
    assert_problem(await client.get(f"/workouts/{workout['id']}", headers=ana_headers), 404)


async def test_kudos_and_comments_notify_the_owner(client):
    ana, ana_headers = await signup(client, "Ana")
    bo, bo_headers = await signup(client, "Bo")
    workout = await manual(client, ana_headers)
    assert (await client.put(f"/workouts/{workout['id']}/kudos", headers=bo_headers)).json() == {"kudos": 1}
    assert (await client.put(f"/workouts/{workout['id']}/kudos", headers=bo_headers)).json() == {"kudos": 1}
    assert_problem(await client.put(f"/workouts/{workout['id']}/kudos", headers=ana_headers), 409, "own")
    said = await client.post(f"/workouts/{workout['id']}/comments", json={"text": " Great pace! "}, headers=bo_headers)
    assert said.status_code == 201 and said.json()["text"] == "Great pace!"
    assert_problem(
        await client.post(f"/workouts/{workout['id']}/comments", json={"text": "x" * 2001}, headers=bo_headers), 422
    )
    inbox = (await client.get("/notifications", headers=ana_headers)).json()
    assert inbox["unread"] == 2
    assert [n["type"] for n in inbox["items"]] == ["comment", "kudos"]
    assert inbox["items"][1]["data"] == {"workout_id": workout["id"], "from": bo}
    _, cy_headers = await signup(client, "Cy")
    comment_id = said.json()["id"]
    assert_problem(await client.delete(f"/workouts/{workout['id']}/comments/{comment_id}", headers=cy_headers), 403)
    assert (
        await client.delete(f"/workouts/{workout['id']}/comments/{comment_id}", headers=ana_headers)
    ).status_code == 204
    assert (await client.get(f"/workouts/{workout['id']}/comments")).json()["items"] == []
    assert ana != bo


# -- social -------------------------------------------------------------------


async def test_followers_see_new_workouts_in_their_feed(client):
    ana, ana_headers = await signup(client, "Ana")
    _, bo_headers = await signup(client, "Bo")
    assert (await client.post(f"/users/{ana}/follow", headers=bo_headers)).json() == {"status": "following"}
    workout = await manual(client, ana_headers, title="Hills")
    await client.arena.drain()
    feed = (await client.get("/feed", headers=bo_headers)).json()
    assert [(i["id"], i["title"], i["owner"]) for i in feed["items"]] == [(workout["id"], "Hills", ana)]
    assert (await client.delete(f"/users/{ana}/follow", headers=bo_headers)).status_code == 204
    assert (await client.get("/feed", headers=bo_headers)).json()["items"] == []


async def test_a_private_profile_needs_follow_approval(client):
    ana, ana_headers = await signup(client, "Ana")
    bo, bo_headers = await signup(client, "Bo")
    await client.patch("/me", json={"private": True}, headers=ana_headers)
    assert (await client.post(f"/users/{ana}/follow", headers=bo_headers)).json() == {"status": "requested"}
    assert_problem(await client.get(f"/users/{ana}/followers", headers=bo_headers), 403, "private")
    requests = (await client.get("/me/follow-requests", headers=ana_headers)).json()
    assert [r["id"] for r in requests["items"]] == [bo]
    assert (await client.post(f"/me/follow-requests/{bo}/accept", headers=ana_headers)).json() == {"accepted": True}
    assert_problem(await client.post(f"/me/follow-requests/{bo}/accept", headers=ana_headers), 404)
    assert (await client.get(f"/users/{ana}", headers=bo_headers)).json()["relation"]["following"]
    types = [n["type"] for n in (await client.get("/notifications", headers=bo_headers)).json()["items"]]
    assert types == ["follow_accepted"]


async def test_blocking_cuts_both_ways(client):
    ana, ana_headers = await signup(client, "Ana")
    bo, bo_headers = await signup(client, "Bo")
    await client.post(f"/users/{ana}/follow", headers=bo_headers)
    assert (await client.put(f"/users/{bo}/block", headers=ana_headers)).status_code == 204
    assert_problem(await client.get(f"/users/{ana}", headers=bo_headers), 404)
    assert_problem(await client.post(f"/users/{ana}/follow", headers=bo_headers), 409)
    workout = await manual(client, ana_headers)
    assert_problem(await client.put(f"/workouts/{workout['id']}/kudos", headers=bo_headers), 404)
    assert_problem(await client.post(f"/users/{ana}/follow", headers=ana_headers), 422, "yourself")


async def test_follower_lists_page_with_opaque_cursors(client):
    ana, ana_headers = await signup(client, "Ana")
    for name in ("F1", "F2", "F3"):
        _, headers = await signup(client, name)
        await client.post(f"/users/{ana}/follow", headers=headers)
    first = (await client.get(f"/users/{ana}/followers?limit=2", headers=ana_headers)).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    second = (
        await client.get(f"/users/{ana}/followers?limit=2&cursor={first['next_cursor']}", headers=ana_headers)
    ).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    assert {i["id"] for i in first["items"]}.isdisjoint({i["id"] for i in second["items"]})
    for cursor in ("garbage", "eyJ4Ijox", "W10"):
        assert_problem(await client.get(f"/users/{ana}/followers?cursor={cursor}", headers=ana_headers), 400, "cursor")


# -- notifications and analytics ------------------------------------------------


async def test_muted_types_are_not_stored_and_read_marks_count_down(client):
    ana, ana_headers = await signup(client, "Ana")
    _, bo_headers = await signup(client, "Bo")
    _, cy_headers = await signup(client, "Cy")
    assert (await client.put("/notifications/mutes/kudos", headers=ana_headers)).json() == {"muted": ["kudos"]}
    assert_problem(await client.put("/notifications/mutes/spam", headers=ana_headers), 404)
    workout = await manual(client, ana_headers)
    await client.put(f"/workouts/{workout['id']}/kudos", headers=bo_headers)
    await client.post(f"/users/{ana}/follow", headers=bo_headers)
    await client.post(f"/users/{ana}/follow", headers=cy_headers)
    inbox = (await client.get("/notifications", headers=ana_headers)).json()
    assert inbox["unread"] == 2 and {n["type"] for n in inbox["items"]} == {"follower"}
    one = inbox["items"][0]["id"]
    assert (await client.post("/notifications/read", json={"ids": [one]}, headers=ana_headers)).json() == {"unread": 1}
    unread = (await client.get("/notifications?unread_only=true", headers=ana_headers)).json()
    assert [n["id"] for n in unread["items"]] == [inbox["items"][1]["id"]]
    assert (await client.post("/notifications/read", json={}, headers=ana_headers)).json() == {"unread": 0}


async def test_analytics_sum_weeks_find_records_and_count_streaks(client):
    _, headers = await signup(client, "Ana")
    today = datetime.now(UTC).replace(hour=7, minute=0, second=0, microsecond=0)
    for days_ago, distance in ((0, 5000), (1, 10000), (2, 8000)):
        start = (today - timedelta(days=days_ago)).isoformat()
        await manual(client, headers, start=start, distance_m=distance, duration_s=distance * 0.3)
    weeks = (await client.get("/me/analytics/totals?period=week", headers=headers)).json()["items"]
    assert sum(row["count"] for row in weeks) == 3
    assert sum(row["distance_m"] for row in weeks) == 23000
    records = (await client.get("/me/analytics/records", headers=headers)).json()
    assert records["run"]["longest"]["distance_m"] == 10000
    streaks = (await client.get("/me/analytics/streaks", headers=headers)).json()
    assert streaks["current_days"] == 3
    assert_problem(await client.get("/me/analytics/totals?period=year", headers=headers), 422)
    assert_problem(await client.get("/me/analytics/streaks"), 401)


async def test_openapi_lists_the_api(client):
    spec = (await client.get("http://arena/openapi.json")).json()
    assert "/api/v1/feed" in spec["paths"] and "/api/v1/workouts/import" in spec["paths"]
