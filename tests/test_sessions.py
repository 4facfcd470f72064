"""Sessions as an attacker tries them: forged refresh tokens, revoked sessions, proxies, operators.

The real app in-process over real hosts and store (the ``client`` fixture); the open
stream test runs the app under uvicorn so the response really streams.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import pytest
from pydantic import SecretStr

from persistence import open_store
from serve.addresses import TrustedProxies
from serve.revocation import EngineRevocations
from tests.test_api import PASSWORD, assert_problem

pytestmark = pytest.mark.ray


async def _account(client, name: str = "Sam") -> tuple[str, str]:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    answer = await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": name})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], email


async def _login(client, email: str, headers: dict | None = None) -> dict:
    answer = await client.post("/auth/login", json={"email": email, "password": PASSWORD}, headers=headers or {})
    assert answer.status_code == 200, answer.text
    return answer.json()


def _bearer(pair: dict) -> dict:
    return {"Authorization": f"Bearer {pair['access_token']}"}


# -- 2. requests that fail authentication write nothing -----------------------


async def test_a_made_up_refresh_token_writes_nothing_and_wakes_no_account(client, settings):
    victim = uuid.uuid4().hex
    forged = [
        f"{victim}.{uuid.uuid4().hex}.{'s' * 43}",  # the old three-part shape
        f"{victim}.{uuid.uuid4().hex}.{'s' * 43}.{'m' * 43}",  # the new shape, a guessed MAC
        f"{victim}.fam.secret.{'A' * 43}",
    ]
    for token in forged:
        assert_problem(await client.post("/auth/refresh", json={"refresh_token": token}), 401, "not valid")
    await client.arena.drain()
    store = open_store(settings.database_url)
    await store.open()
    try:
        assert await store.read_journal("account", victim) == []
        assert await store.load_snapshot("account", victim) is None
    finally:
        await store.close()


async def test_a_refresh_token_with_another_users_id_spliced_in_is_refused(client):
    _, email = await _account(client)
    other, _ = await _account(client, "Other")
    pair = await _login(client, email)
    _, family, secret, mac = pair["refresh_token"].split(".")
    spliced = f"{other}.{family}.{secret}.{mac}"
    assert_problem(await client.post("/auth/refresh", json={"refresh_token": spliced}), 401, "not valid")
    assert (await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})).status_code == 200


# -- 4. revocation reaches every access token of the session ---------------------


async def test_logout_revokes_every_access_token_of_the_session(client):
    _, email = await _account(client)
    first = await _login(client, email)
    second = (await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    other_session = await _login(client, email)
    assert (await client.post("/auth/logout", headers=_bearer(second))).status_code == 204
    for pair in (first, second):  # both tokens of the signed-out session
        assert_problem(await client.get("/me", headers=_bearer(pair)), 401, "revoked")
    assert (await client.get("/me", headers=_bearer(other_session))).status_code == 200


async def test_a_detected_refresh_token_reuse_revokes_the_sessions_access_tokens(client):
    _, email = await _account(client)
    stolen = await _login(client, email)
    rotated = (await client.post("/auth/refresh", json={"refresh_token": stolen["refresh_token"]})).json()
    assert (await client.get("/me", headers=_bearer(rotated))).status_code == 200
    replay = await client.post("/auth/refresh", json={"refresh_token": stolen["refresh_token"]})
    assert_problem(replay, 401, "already used")
    for pair in (stolen, rotated):
        assert_problem(await client.get("/me", headers=_bearer(pair)), 401, "revoked")


async def test_a_password_change_revokes_every_session_at_once(client):
    _, email = await _account(client)
    phone, laptop = await _login(client, email), await _login(client, email)
    changed = await client.post(
        "/auth/password",
        json={"current_password": PASSWORD, "new_password": "another long password"},
        headers=_bearer(phone),
    )
    assert changed.status_code == 204
    for pair in (phone, laptop):
        assert_problem(await client.get("/me", headers=_bearer(pair)), 401, "revoked")
        assert_problem(await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)


async def test_a_revocation_on_one_replica_reaches_another_without_redis(client):
    replica_one = EngineRevocations(client.arena.cluster.ask, interval=0.2)
    replica_two = EngineRevocations(client.arena.cluster.ask, interval=0.2)
    sid, issued = uuid.uuid4().hex, time.time()
    assert not await replica_two.is_revoked("j", sid, "u", issued)
    await replica_one.revoke_session(sid, 60)
    assert await replica_one.is_revoked("j", sid, "u", issued)  # at once where it was made
    deadline = time.monotonic() + 30
    while not await replica_two.is_revoked("j", sid, "u", issued):
        assert time.monotonic() < deadline, "the other replica never learned of the revocation"
        await asyncio.sleep(0.1)
    await replica_one.aclose()
    await replica_two.aclose()


@pytest.fixture
async def served(client):
    """The same app on a real HTTP port (uvicorn), so event streams really stream."""
    import uvicorn

    from loadtest.server import free_port
    from serve.app import api

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.05)
    yield f"http://127.0.0.1:{port}/api/v1"
    server.should_exit = True
    await task


async def _events(http: httpx.AsyncClient, url: str, token: str, seen: list[dict]) -> None:
    async with http.stream("GET", f"{url}/notifications/stream", params={"access_token": token}) as stream:
        assert stream.status_code == 200
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                seen.append(json.loads(line[5:]))


@pytest.mark.parametrize("how", ["logout", "password", "quiet"])
async def test_an_open_notification_stream_ends_when_its_session_is_revoked(client, served, how):
    _, email = await _account(client)
    watched, other = await _login(client, email), await _login(client, email)
    seen: list[dict] = []
    async with httpx.AsyncClient(timeout=60) as http:
        reader = asyncio.ensure_future(_events(http, served, watched["access_token"], seen))
        deadline = time.monotonic() + 30
        while not seen:
            assert time.monotonic() < deadline and not reader.done(), "the stream never said ready"
            await asyncio.sleep(0.05)
        if how == "logout":
            assert (await http.post(f"{served}/auth/logout", headers=_bearer(watched))).status_code == 204
        elif how == "password":
            body = {"current_password": PASSWORD, "new_password": "a brand new password"}
            assert (await http.post(f"{served}/auth/password", json=body, headers=_bearer(other))).status_code == 204
        else:  # no notice on the bus: the stream's own periodic check must find it
            session = client.arena.tokens.caller(watched["access_token"]).family
            await client.arena.revocations.revoke_session(session, 60)
        await asyncio.wait_for(reader, 30)  # the server ended the stream
    assert seen[0]["type"] == "ready" and seen[-1] == {"type": "end", "reason": "revoked"}


async def test_a_stream_of_another_session_stays_open_after_a_logout(client, served):
    user_id, email = await _account(client)
    watched, leaving = await _login(client, email), await _login(client, email)
    seen: list[dict] = []
    async with httpx.AsyncClient(timeout=60) as http:
        reader = asyncio.ensure_future(_events(http, served, watched["access_token"], seen))
        deadline = time.monotonic() + 30
        while not seen:
            assert time.monotonic() < deadline and not reader.done(), "the stream never said ready"
            await asyncio.sleep(0.05)
        assert (await http.post(f"{served}/auth/logout", headers=_bearer(leaving))).status_code == 204
        # The logout's notice went out on the user's channel first: once an event sent after it
        # arrives, the stream has read the notice and kept going.
        await client.arena.bus.publish(user_id, {"type": "after_logout"})
        while not any(event["type"] == "after_logout" for event in seen):
            assert time.monotonic() < deadline and not reader.done(), f"the stream ended: {seen}"
            await asyncio.sleep(0.05)
        assert not reader.done() and all(event["type"] != "end" for event in seen)
        reader.cancel()


# -- 3. the client address: X-Forwarded-For only from trusted proxies ---------------


async def _fail_logins(client, count: int, forwarded: callable) -> list[int]:
    codes = []
    for n in range(count):
        answer = await client.post(
            "/auth/login",
            json={"email": f"nobody-{n}-{uuid.uuid4().hex[:6]}@example.com", "password": "wrong password"},
            headers={"X-Forwarded-For": forwarded(n)},
        )
        codes.append(answer.status_code)
    return codes


async def test_a_new_forwarded_for_per_try_does_not_walk_around_the_address_limit(client):
    # The peer (10.1.2.3) is no trusted proxy: its X-Forwarded-For is the attacker's word.
    codes = await _fail_logins(client, 21, lambda n: f"203.0.113.{n}")
    assert codes[:20] == [401] * 20 and codes[20] == 429


async def test_behind_a_trusted_proxy_each_client_is_counted_on_its_own(client):
    client.arena.trusted_proxies = TrustedProxies(["10.0.0.0/8"])
    # The proxy appended the address it saw; whatever a client put before it is ignored.
    codes = await _fail_logins(client, 21, lambda n: f"198.51.100.7, 203.0.113.{n}")
    assert codes == [401] * 21
    same = await _fail_logins(client, 21, lambda n: f"{n}.{n}.{n}.{n}, 203.0.113.200")
    assert same[:20] == [401] * 20 and same[20] == 429


@pytest.mark.parametrize(
    ("peer", "headers", "client"),
    [
        ("10.1.2.3", [], "10.1.2.3"),
        ("8.8.8.8", ["1.1.1.1"], "8.8.8.8"),  # untrusted peer: the header is ignored
        ("10.0.0.5", ["1.1.1.1"], "1.1.1.1"),
        ("10.0.0.5", ["6.6.6.6, 1.1.1.1"], "1.1.1.1"),  # the rightmost untrusted hop
        ("10.0.0.5", ["1.1.1.1, 10.0.0.9"], "1.1.1.1"),  # past our own inner proxy
        ("10.0.0.5", ["1.1.1.1", "10.0.0.9"], "1.1.1.1"),  # repeated headers are one list
        ("10.0.0.5", ["not-an-ip"], "10.0.0.5"),  # garbage: believe only the peer
        ("10.0.0.5", [", ".join(["1.1.1.1"] * 50)], "10.0.0.5"),  # an absurd chain
        ("10.0.0.5", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("10.0.0.5", ["10.0.0.7"], "10.0.0.7"),  # every hop ours
        (None, ["1.1.1.1"], "unknown"),
    ],
)
def test_the_client_address_believes_only_trusted_proxies(peer, headers, client):
    assert TrustedProxies(["10.0.0.0/8"]).client(peer, headers) == client


def test_trusted_proxies_auto_means_loopback_only_behind_arenas_own_haproxy():
    from serve.settings import Settings

    assert "127.0.0.0/8" in Settings(ingress="haproxy").proxy_networks()
    assert Settings(ingress="proxy").proxy_networks() == ()
    assert Settings(trusted_proxies="10.0.0.0/8", ingress="proxy").proxy_networks() == ("10.0.0.0/8",)
    assert Settings(trusted_proxies="", ingress="haproxy").proxy_networks() == ()
    with pytest.raises(ValueError, match="ARENA_TRUSTED_PROXIES"):
        Settings(trusted_proxies="everyone")


# -- 6. exposure: operators' views, blocks both ways ------------------------------------


async def test_health_tells_anonymous_callers_only_whether_arena_is_up(client):
    answer = await client.get("http://arena/health")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    for path in ("/health/details", "/metrics"):
        assert_problem(await client.get(f"http://arena{path}"), 403, "operators only")


async def test_operators_read_details_and_metrics_with_their_token_or_an_admins(client):
    client.arena.settings = client.arena.settings.model_copy(update={"operator_token": SecretStr("op-" + "x" * 40)})
    operator = {"Authorization": f"Bearer op-{'x' * 40}"}
    details = await client.get("http://arena/health/details", headers=operator)
    assert details.status_code == 200 and details.json()["hosts"]
    assert (await client.get("http://arena/metrics", headers=operator)).status_code == 200
    wrong = {"Authorization": f"Bearer op-{'y' * 40}"}
    assert_problem(await client.get("http://arena/metrics", headers=wrong), 403)
    _, athlete_email = await _account(client)
    athlete = _bearer(await _login(client, athlete_email))
    assert_problem(await client.get("http://arena/metrics", headers=athlete), 403)
    await client.post("/accounts", json={"email": "boss@example.com", "password": PASSWORD, "display_name": "B"})
    admin = _bearer(await _login(client, "boss@example.com"))
    assert (await client.get("http://arena/metrics", headers=admin)).status_code == 200


async def test_a_forwarded_loopback_address_is_no_operator(client):
    spoofed = {"X-Forwarded-For": "127.0.0.1"}
    assert_problem(await client.get("http://arena/metrics", headers=spoofed), 403)


async def test_whoever_blocked_someone_cannot_follow_them_either(client):
    blocker, blocker_email = await _account(client, "Blocker")
    blocked, blocked_email = await _account(client, "Blocked")
    blocker_h = _bearer(await _login(client, blocker_email))
    blocked_h = _bearer(await _login(client, blocked_email))
    assert (await client.put(f"/users/{blocked}/block", headers=blocker_h)).status_code == 204
    assert_problem(await client.post(f"/users/{blocked}/follow", headers=blocker_h), 409, "blocked")
    assert_problem(await client.post(f"/users/{blocker}/follow", headers=blocked_h), 409)
    followers = (await client.get(f"/users/{blocked}/followers", headers=blocked_h)).json()["items"]
    assert blocker not in [f["id"] for f in followers]
    assert (await client.delete(f"/users/{blocked}/block", headers=blocker_h)).status_code == 204
    assert (await client.post(f"/users/{blocked}/follow", headers=blocker_h)).json() == {"status": "following"}


# -- the audit log -----------------------------------------------------------------------


async def test_security_events_reach_the_audit_log_without_secrets_and_only_admins_read_it(client):
    user, email = await _account(client)
    wrong = await client.post("/auth/login", json={"email": email, "password": "not my password"})
    assert wrong.status_code == 401
    pair = await _login(client, email)
    await client.post("/auth/logout", headers=_bearer(pair))
    athlete = _bearer(await _login(client, email))
    assert_problem(await client.get("/admin/audit", headers=athlete), 403)
    await client.post("/accounts", json={"email": "chief@example.com", "password": PASSWORD, "display_name": "C"})
    admin = _bearer(await _login(client, "chief@example.com"))
    promoted = await client.put(f"/users/{user}/roles", json={"roles": ["athlete", "organizer"]}, headers=admin)
    assert promoted.status_code == 200
    log = await client.get("/admin/audit", params={"event": "auth.", "limit": 100}, headers=admin)
    assert log.status_code == 200, log.text
    mine = [e for e in log.json()["items"] if user in (e["actor"], e["subject"])]
    assert {"auth.login_failed", "auth.login", "auth.logout"} <= {e["event"] for e in mine}
    assert all(e["address"] == "10.1.2.3" for e in mine)
    roles = await client.get("/admin/audit", params={"event": "admin.roles_changed"}, headers=admin)
    assert [e["details"]["after"] for e in roles.json()["items"] if e["subject"] == user] == [["athlete", "organizer"]]
    text = json.dumps(log.json())
    assert PASSWORD not in text and pair["refresh_token"] not in text and pair["access_token"] not in text
    for bad in ({"day": "2026-13-99x"}, {"event": "DROP TABLE"}, {"cursor": "!!"}):
        assert (await client.get("/admin/audit", params=bad, headers=admin)).status_code in (400, 422)
