"""Every endpoint in the OpenAPI document, probed with no token, unknown ids, malformed ids and hostile bodies.

Whatever the route, the answer is a deliberate 4xx problem document, never a 500.
"""

from __future__ import annotations

import re
import uuid

import pytest

from serve.app import api

pytestmark = pytest.mark.ray

PUBLIC = {
    ("POST", "/api/v1/accounts"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("GET", "/api/v1/users/{user_id}"),
    ("GET", "/api/v1/users/{user_id}/workouts"),
    ("GET", "/api/v1/users/{user_id}/achievements"),
    ("GET", "/api/v1/badges"),
    ("GET", "/api/v1/workouts/{workout_id}"),
    ("GET", "/api/v1/workouts/{workout_id}/kudos"),
    ("GET", "/api/v1/workouts/{workout_id}/comments"),
    ("GET", "/api/v1/notifications/stream"),
    ("GET", "/api/v1/races"),
    ("GET", "/api/v1/races/{race_id}"),
    ("GET", "/api/v1/races/{race_id}/leaderboard/rows"),
    ("GET", "/api/v1/races/{race_id}/leaderboard"),
    ("GET", "/api/v1/races/{race_id}/leaderboard/around/{user_id}"),
    ("GET", "/api/v1/races/{race_id}/live"),
    ("GET", "/api/v1/races/{race_id}/results"),
    ("GET", "/api/v1/races/{race_id}/results.csv"),
    ("GET", "/api/v1/consents"),  # the texts one is asked to agree to, before signing up too
}
ENUMS = {"which": "followers", "answer": "accept", "action": "open", "decision": "accept", "type": "kudos"}


def _endpoints() -> list[tuple[str, str]]:
    spec = api.openapi()
    return sorted(
        (method.upper(), path)
        for path, methods in spec["paths"].items()
        if path.startswith("/api/v1")
        for method in methods
    )


def _fill(path: str, value: str) -> str:
    """The route with its parameters filled in, relative to the client's /api/v1 base."""
    return re.sub(r"\{(\w+)\}", lambda m: ENUMS.get(m.group(1), value), path.removeprefix("/api/v1"))


def test_the_probe_lists_every_route():
    assert len(_endpoints()) > 40
    assert PUBLIC <= set(_endpoints())


@pytest.mark.parametrize("method, path", _endpoints())
async def test_without_a_token_private_endpoints_answer_401_and_none_answers_500(client, method, path):
    answer = await client.request(method, _fill(path, uuid.uuid4().hex), json={})
    assert answer.status_code < 500, answer.text
    if (method, path) not in PUBLIC:
        assert answer.status_code in (401, 422), answer.text  # 422: a body or query checked before the token
    if answer.status_code >= 400:
        assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("method, path", [e for e in _endpoints() if "{" in e[1]])
async def test_malformed_ids_are_refused_before_any_entity_is_touched(client, method, path):
    for bad in ("x" * 65, "bad%20id", "..%2F..%2Fetc", "%00"):
        answer = await client.request(method, _fill(path, bad), json={})
        assert answer.status_code in (401, 404, 422), (bad, answer.text)


@pytest.mark.parametrize("method, path", [e for e in _endpoints() if e[0] in ("POST", "PUT", "PATCH")])
async def test_hostile_bodies_get_a_clear_4xx(client, method, path):
    url = _fill(path, uuid.uuid4().hex)
    for body in (b"{", b"[]", b'"x"', b"null", b'{"a": ' * 200 + b"1" + b"}" * 200, "é".encode() * 10):
        answer = await client.request(method, url, content=body, headers={"content-type": "application/json"})
        assert 400 <= answer.status_code < 500, (body[:20], answer.text)
