"""Client input crafted to make the server fail, tried as an attacker would: every answer is a 4xx problem.

Crafted pagination cursors on every paged route, odd sign-in emails, workouts dated in
year 1 or 9999 (and such data already stored), lenient JSON, engine errors that must not
show their text, and over-limit bodies sent chunked, with no Content-Length.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from connectors.workout_files import MAX_FILE_BYTES
from engine.errors import HandlerFailed, MalformedMessage, Overloaded, UnknownMessage
from loadtest.gpx import synthetic_gpx
from serve import problems
from serve.app import api
from tests.test_api import PASSWORD, assert_problem, manual, signup

pytestmark = pytest.mark.ray

ENUMS = {"which": "followers"}
_ADMINS: dict[str, tuple[str, dict]] = {}


async def admin(client) -> tuple[str, dict]:
    """The settings' admin address, signed up once per test module (each has its own store)."""
    namespace = client.arena.settings.namespace
    if namespace not in _ADMINS:
        _ADMINS[namespace] = await signup(client, "Boss", email="boss@example.com")
    return _ADMINS[namespace]


async def organizer(client) -> dict:
    user_id, headers = await signup(client, "Org")
    _, boss = await admin(client)
    granted = await client.put(f"/users/{user_id}/roles", json={"roles": ["athlete", "organizer"]}, headers=boss)
    assert granted.status_code == 200, granted.text
    email = (await client.get("/me", headers=headers)).json()["email"]
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode().rstrip("=")


CRAFTED = {
    "a huge integer": _cursor(f'[{2**70},"a"]'),
    "a negative huge integer": _cursor(f'[-{2**64},"a"]'),
    "1e999": _cursor('[1e999,"a"]'),
    "NaN": _cursor('[NaN,"a"]'),
    "-Infinity": _cursor('[-Infinity,"a"]'),
    "a lone surrogate": _cursor('[1,"\\ud800"]'),
    "a raw lone surrogate": _cursor('[1,"\ud800"]'),
    "nested types": _cursor('[[1,2],{"a":[]}]'),
    "a boolean time": _cursor('[true,"a"]'),
    "a null id": _cursor("[1,null]"),
    "an id outside the alphabet": _cursor('[1,"../../x"]'),
    "an overlong id": _cursor(f'[1,"{"a" * 200}"]'),
    "three fields": _cursor('[1,"a",3]'),
    "deep nesting": _cursor("[" * 150 + "]" * 150),
    "not JSON": _cursor("\xff\xfe"),
    "not base64": "%%%%",
}


def _paged_routes() -> list[str]:
    spec = api.openapi()
    return sorted(
        path.removeprefix("/api/v1")
        for path, methods in spec["paths"].items()
        if "get" in methods and any(p["name"] == "cursor" for p in methods["get"].get("parameters", []))
    )


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ENUMS.get(m.group(1)) or ids[m.group(1)], path)


def test_the_crafted_cursors_cover_every_paged_route():
    assert len(_paged_routes()) >= 6


async def test_crafted_cursors_answer_400_on_every_paged_route_signed_in_or_not(client):
    user_id, headers = await admin(client)  # an admin: /admin/audit pages too
    workout_id = (await manual(client, headers))["id"]
    group = await client.post("/groups", json={"name": "Cursor Club", "sports": ["run"]}, headers=headers)
    assert group.status_code == 201, group.text
    group_id = group.json()["id"]
    post = await client.post(f"/groups/{group_id}/posts", json={"text": "Saturday?"}, headers=headers)
    assert post.status_code in (200, 201), post.text
    event = await client.post(
        f"/groups/{group_id}/events",
        json={"title": "Run", "sport": "run", "start": f"{datetime.now(UTC).year + 1}-01-01T09:00:00Z",
              "time_zone": "UTC", "meeting_point": {"lat": 48.8, "lon": 2.3, "label": "Here"}},
        headers=headers,
    )  # fmt: skip
    assert event.status_code == 201, event.text
    sport_event = await client.post(
        "/events",
        json={"title": "Ten", "sport": "run", "start": f"{datetime.now(UTC).year + 1}-01-01T09:00:00Z",
              "end": f"{datetime.now(UTC).year + 1}-01-01T11:00:00Z", "time_zone": "UTC",
              "venue": {"lat": 48.8, "lon": 2.3, "address": "Here"}},
        headers=headers,
    )  # fmt: skip
    assert sport_event.status_code == 201, sport_event.text
    ids = {"user_id": user_id, "workout_id": workout_id, "group_id": group_id, "post_id": post.json()["id"],
           "event_id": event.json()["id"], "sport_event_id": sport_event.json()["id"]}  # fmt: skip
    for path in _paged_routes():
        url = _fill(path, ids)
        assert (await client.get(url, headers=headers)).status_code == 200, url
        for what, cursor in CRAFTED.items():
            signed_in = await client.get(url, params={"cursor": cursor}, headers=headers)
            assert_problem(signed_in, 400, "cursor")
            anonymous = await client.get(url, params={"cursor": cursor})
            assert anonymous.status_code in (400, 401, 404), (url, what, anonymous.text)
            assert anonymous.headers["content-type"] == "application/problem+json"


async def test_a_cursor_this_api_issued_still_pages_on(client):
    _, headers = await signup(client, "Pager")
    made = [await manual(client, headers, start=f"2026-11-{day:02d}T07:00:00Z") for day in range(1, 4)]
    me = (await client.get("/me", headers=headers)).json()["id"]
    first = (await client.get(f"/users/{me}/workouts", params={"limit": 2}, headers=headers)).json()
    rest = await client.get(
        f"/users/{me}/workouts", params={"limit": 2, "cursor": first["next_cursor"]}, headers=headers
    )
    assert [w["id"] for w in first["items"] + rest.json()["items"]] == [w["id"] for w in made[::-1]]


@pytest.mark.parametrize(
    "email",
    ["", " ", "@", "a@", "@b", "a@b", "x" * 254, "a@-.com", "a@[1.2.3.4]", "é@é", "\u0000@x.com", "a\u202e@x.io"],
)
async def test_odd_sign_in_emails_answer_401_and_show_nothing_internal(client, email):
    answer = await client.post("/auth/login", json={"email": email, "password": "whatever it is"})
    body = assert_problem(answer, 401, "wrong email or password")
    assert "entity" not in answer.text and "malformed" not in answer.text.lower()
    assert set(body) <= {"type", "title", "status", "detail", "instance"}


@pytest.mark.parametrize(
    "start",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+05:00",  # before year 1 in UTC
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-05:00",  # after year 9999 in UTC
        "1899-12-31T23:59:59Z",
        "2999-01-01T00:00:00Z",
    ],
)
async def test_a_workout_dated_out_of_any_sane_window_is_refused_and_analytics_keep_working(client, start):
    _, headers = await signup(client, "Timey")
    await manual(client, headers)
    answer = await client.post(
        "/workouts", json={"sport": "run", "start": start, "duration_s": 60, "distance_m": 100}, headers=headers
    )
    assert_problem(answer, 422)
    for route in ("totals", "totals?period=month", "records", "streaks", "streaks?tz_offset_minutes=-1079"):
        assert (await client.get(f"/me/analytics/{route}", headers=headers)).status_code == 200, route


async def test_workouts_stored_before_the_checks_are_left_out_of_analytics_not_500(client):
    user_id, headers = await signup(client, "Legacy")
    await manual(client, headers)
    for start in (-62_135_596_800.0, 253_402_300_799.0, float("nan")):  # year 1, year 9999, garbage
        summary = {"id": uuid.uuid4().hex, "sport": "run", "start": start, "distance_m": 1.0, "moving_s": 1.0}
        summary.update(visibility="private", title="old", elapsed_s=1.0)
        await client.arena.ask("account", user_id, "add_workout", {"summary": summary})
    totals = await client.get("/me/analytics/totals", headers=headers)
    assert totals.status_code == 200 and sum(row["count"] for row in totals.json()["items"]) == 1
    for route in ("records", "streaks"):
        assert (await client.get(f"/me/analytics/{route}", headers=headers)).status_code == 200


async def test_the_accepted_window_runs_from_1900_to_a_day_ahead(client):
    _, headers = await signup(client, "Edge")
    await manual(client, headers, start="1900-01-01T00:00:00Z")
    await manual(client, headers, start=datetime.now(UTC).replace(microsecond=0).isoformat())
    assert (await client.get("/me/analytics/records", headers=headers)).status_code == 200


@pytest.mark.parametrize("year, zone", [(1, "Z"), (1, "+05:00"), (9999, "Z"), (2200, "Z"), (1850, "Z")])
async def test_imported_files_dated_out_of_the_window_are_refused(client, year, zone):
    _, headers = await signup(client, "Importer")
    gpx = synthetic_gpx(10).decode()
    gpx = re.sub(r"<time>\d{4}-(\d\d-\d\dT\d\d:\d\d:\d\d)Z</time>", rf"<time>{year:04d}-\1{zone}</time>", gpx)
    answer = await client.post(
        "/workouts/import", files={"file": ("old.gpx", gpx.encode(), "application/gpx+xml")}, headers=headers
    )
    assert_problem(answer, 422, "cannot be imported")


@pytest.mark.parametrize(
    "times",
    [
        {"start_at": 1e300},
        {"start_at": 253_402_300_800},
        {"registration_opens": -1e300},
        {"registration_closes": 1e300},
        {"registration_opens": -62_135_596_800},
    ],
)
async def test_race_times_out_of_the_window_are_refused(client, times):
    org = await organizer(client)
    body = {"name": "Far away", "sport": "run", "kind": "distance", "target_m": 1000}
    assert_problem(await client.post("/races", json={**body, **times}, headers=org), 422)
    race_id = (await client.post("/races", json=body, headers=org)).json()["id"]
    assert_problem(await client.patch(f"/races/{race_id}", json=times, headers=org), 422)


async def test_a_number_too_large_for_a_float_is_refused_not_stored_as_infinity(client):
    org = await organizer(client)
    race = b'{"name": "Far", "sport": "run", "kind": "course", "checkpoints_m": [100, 1e999]}'
    answer = await client.post("/races", content=race, headers={**org, "content-type": "application/json"})
    assert_problem(answer, 422)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"text": "\\ud800"}',
        b'{"text": "ok", "\\udfff": 1}',
        b'{"text": NaN}',
        b'{"text": "x", "n": Infinity}',
    ],
)
async def test_json_that_only_python_reads_is_refused_with_a_422(client, raw):
    _, headers = await signup(client, "Lenient")
    workout_id = (await manual(client, headers))["id"]
    answer = await client.post(
        f"/workouts/{workout_id}/comments", content=raw, headers={**headers, "content-type": "application/json"}
    )
    assert_problem(answer, 422, "not valid JSON")


async def test_lenient_json_is_refused_on_public_routes_too(client):
    raw = b'{"email": "a\\ud800@example.com", "password": "correct horse battery", "display_name": "\\udc00"}'
    assert_problem(await client.post("/accounts", content=raw), 422)
    raw = b'{"email": "a@example.com", "password": NaN}'
    assert_problem(await client.post("/auth/login", content=raw), 422)


async def test_a_chunked_json_body_over_the_limit_gets_413(client):
    async def body():
        yield b'{"email": "a@example.com", "display_name": "'
        for _ in range(40):
            yield b"x" * 32 * 1024
        yield b'", "password": "correct horse battery"}'

    answer = await client.post("/accounts", content=body(), headers={"content-type": "application/json"})
    assert "content-length" not in answer.request.headers
    assert_problem(answer, 413, "limit")


async def test_a_chunked_upload_over_the_file_limit_gets_413(client):
    _, headers = await signup(client, "Uploader")
    boundary = uuid.uuid4().hex

    async def body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.gpx"\r\n'
            "Content-Type: application/gpx+xml\r\n\r\n"
        ).encode()
        chunk = b"<!-- " + b"x" * (1024 * 1024) + b" -->"
        for _ in range(MAX_FILE_BYTES // len(chunk) + 2):
            yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = await client.post(
        "/workouts/import",
        content=body(),
        headers={**headers, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "content-length" not in answer.request.headers
    assert_problem(answer, 413, "limit")


async def test_a_chunked_body_under_the_limit_still_goes_through(client):
    async def body():
        email = f"chunky-{uuid.uuid4().hex[:6]}@example.com"
        yield json.dumps({"email": email, "password": "correct horse battery", "display_name": "C"}).encode()

    answer = await client.post("/accounts", content=body(), headers={"content-type": "application/json"})
    assert answer.status_code == 201, answer.text


# -- what an engine says, and any other failure, never reaches a client -----------------


def _failing_app() -> FastAPI:
    app = FastAPI()
    problems.install(app)
    failures = {
        "handler": HandlerFailed("account.credentials failed: KeyError: 'password_hash' at /srv/arena"),
        "malformed": MalformedMessage("an entity id is a string of 1 to 256 characters"),
        "unknown": UnknownMessage("account has no handler 'secret_admin_thing'"),
        "overloaded": Overloaded("account/abc has too many messages waiting; retry later"),
        "bug": ZeroDivisionError("division by zero in /srv/arena/engine/secret.py"),
    }

    @app.get("/fail/{what}")
    async def fail(what: str) -> None:
        raise failures[what]

    return app


@pytest.mark.parametrize("what", ["handler", "malformed", "unknown", "bug"])
async def test_internal_failures_answer_a_generic_500_with_an_error_id(what, caplog):
    transport = httpx.ASGITransport(app=_failing_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        answer = await http.get(f"/fail/{what}")
    body = assert_problem(answer, 500, "error id")
    assert set(body) == {"type", "title", "status", "detail", "instance", "error_id"}
    for secret in ("KeyError", "/srv", "entity id", "handler", "division", "password_hash"):
        assert secret not in body["detail"]
    assert re.fullmatch(r"[0-9a-f]{32}", body["error_id"]) and body["error_id"] in body["detail"]
    assert body["error_id"] in caplog.text  # the operator finds the cause under the id the client quotes


async def test_a_busy_engine_answers_503_retry_after_without_its_text():
    transport = httpx.ASGITransport(app=_failing_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        answer = await http.get("/fail/overloaded")
    assert_problem(answer, 503, "retry")
    assert answer.headers["retry-after"] == "1" and "account/abc" not in answer.text
