"""Security headers on every kind of answer, CORS as configured, and the pages under their enforced policy."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from serve.headers import API_POLICY, PAGE_POLICY
from tests.test_web import Api, server, sign_in  # noqa: F401 - the Chromium fixtures

pytestmark = pytest.mark.ray

CLUB = "https://club.example"
EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}


@pytest.fixture(scope="module")
def settings(settings):
    """The shared test settings, with one origin allowed to call the API from a browser."""
    return settings.model_copy(update={"cors_origins": (CLUB,)})


@pytest.fixture
async def site(client):
    """The same app as ``client``, from the site's root (pages, assets, docs)."""
    from serve.app import api

    transport = httpx.ASGITransport(app=api, client=("10.1.2.3", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://arena") as http:
        yield http


def assert_secured(answer: httpx.Response, policy: str = API_POLICY) -> None:
    for name, value in EXPECTED.items():
        assert answer.headers.get(name) == value, (name, answer.headers)
    assert answer.headers["content-security-policy"] == policy
    assert (
        "camera=()" in answer.headers["permissions-policy"] and "geolocation=()" in answer.headers["permissions-policy"]
    )
    assert "strict-transport-security" not in answer.headers  # not without ARENA_HTTPS


async def test_api_json_and_its_errors_carry_the_headers(client):
    listed = await client.get("/races")
    assert listed.status_code == 200 and listed.headers["content-type"] == "application/json"
    assert_secured(listed)
    assert listed.headers["cache-control"] == "no-store"
    for answer in (
        await client.get("/me"),  # 401 problem
        await client.get("/no/such/route"),  # 404 problem
        await client.post("/accounts", json={"email": 1}),  # 422 problem
        await client.post("/accounts", content=b"x" * (2 * 1024 * 1024)),  # 413 from the body limit
    ):
        assert (
            answer.status_code in (401, 404, 413, 422) and answer.headers["content-type"] == "application/problem+json"
        )
        assert_secured(answer)


async def test_pages_and_assets_get_the_page_policy_with_no_inline_script(site):
    for path in ("/", "/login", "/me", "/organizer", "/races/r1"):
        page = await site.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert_secured(page, PAGE_POLICY)
        assert page.headers["cache-control"] == "no-cache"  # the page's own value stays
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), f"{path} has an inline script"
    assert "'unsafe-inline'" not in PAGE_POLICY and "frame-ancestors 'none'" in PAGE_POLICY
    script = await site.get("/static/common.js")
    assert script.status_code == 200
    assert_secured(script)
    for missing in ("/static/nope.js", "/no-such-page"):
        answer = await site.get(missing)
        assert answer.status_code == 404
        assert_secured(answer)


async def test_the_docs_allow_their_own_inline_script_by_hash_and_no_other(site):
    docs = await site.get("/docs")
    assert docs.status_code == 200
    policy = docs.headers["content-security-policy"]
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    inline = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assert inline, "FastAPI's docs page changed: no inline script to allow"
    for body in inline:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in script_src
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
    assert "frame-ancestors 'none'" in policy
    assert (await site.get("/openapi.json")).headers["content-security-policy"] == API_POLICY


async def test_hsts_only_when_the_settings_say_the_deployment_is_https(client):
    client.arena.settings = client.arena.settings.model_copy(update={"https": True})  # this test's Arena only
    answer = await client.get("/races")
    assert answer.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"


def preflight(origin: str, method: str = "POST") -> dict:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_a_preflight_from_an_unlisted_origin_gets_no_allow_origin(client):
    answer = await client.options("/workouts", headers=preflight("https://evil.example"))
    assert "access-control-allow-origin" not in answer.headers
    assert_secured(answer)
    simple = await client.get("/races", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


async def test_a_preflight_from_a_listed_origin_gets_explicit_methods_and_headers(client):
    answer = await client.options("/workouts", headers=preflight(CLUB))
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == CLUB
    methods = {m.strip() for m in answer.headers["access-control-allow-methods"].split(",")}
    assert methods == {"GET", "POST", "PUT", "PATCH", "DELETE"}
    assert "authorization" in answer.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in answer.headers
    assert_secured(answer)
    simple = await client.get("/races", headers={"Origin": CLUB})
    assert simple.headers["access-control-allow-origin"] == CLUB
    assert "retry-after" in simple.headers["access-control-expose-headers"].lower()
    refused = await client.options("/workouts", headers=preflight(CLUB, method="TRACE"))
    assert refused.status_code == 400


async def test_without_origins_the_api_is_same_origin_only(client):
    client.arena.settings = client.arena.settings.model_copy(update={"cors_origins": ()})  # this test's Arena only
    for origin in (CLUB, "https://evil.example"):
        answer = await client.options("/workouts", headers=preflight(origin))
        assert "access-control-allow-origin" not in answer.headers
        assert_secured(answer)
        simple = await client.get("/races", headers={"Origin": origin})
        assert "access-control-allow-origin" not in simple.headers


def test_the_pages_run_under_their_enforced_policy_without_a_violation(server, browser):  # noqa: F811
    base, _ = server
    athlete = Api(base).account("Policy")
    page = browser.new_page()  # unlike tests/test_web.py, the policy is enforced
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        for path in ("/", "/login", "/organizer"):
            page.goto(f"{base}{path}")
            page.wait_for_selector("#top a.brand")  # written by the pages' scripts: they ran
        sign_in(page, base, athlete["email"], "/me")
        page.wait_for_selector("#who-name")
        page.goto(f"{base}/races/no-such-race")
        page.wait_for_selector("#top a.brand")
    finally:
        page.close()
    violations = [p for p in problems if "Content Security Policy" in p or "Refused to" in p]
    assert violations == [], problems


def test_an_unexpected_error_answers_a_bare_500_with_the_security_headers():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from serve import problems
    from serve.headers import SecurityHeaders

    app = FastAPI()
    problems.install(app)
    app.add_middleware(SecurityHeaders)

    @app.get("/boom")
    async def boom() -> dict:
        raise RuntimeError("secret internal detail at /srv/arena/db.sqlite")

    with TestClient(app, raise_server_exceptions=False) as http:
        answer = http.get("/boom")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert "secret" not in answer.text and "sqlite" not in answer.text and answer.json()["error_id"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
