"""Request limits, tried as an attacker would: one address, many accounts, forged headers and tokens.

The counters run on a clock the tests move, in process and in the local Redis; the routes
run in the real app (``client``) with the limits of docs/security.md's table (scale 1).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import jwt
import pytest

from engine.counters import MemoryCounters, Rate
from persistence.redis_counters import RedisCounters
from serve.problems import Problem
from serve.throttle import POLICIES, ROUTES, Policy, Throttle, counters, policies
from tests.conftest import T0

PASSWORD = "correct horse battery"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "security.md"


@pytest.fixture(params=["memory", "redis"])
async def make(request, clock):
    """Builds counters of one kind on the shared test clock; Redis ones share one database, like replicas."""
    made = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def build():
        made.append(RedisCounters(url, clock=clock) if url else MemoryCounters(clock=clock))
        return made[-1]

    yield build
    for one in made:
        await one.aclose()


# -- the counters -------------------------------------------------------------


async def test_a_burst_over_the_rate_is_refused_with_the_wait_until_it_fits(make, clock):
    counts = make()
    rate = Rate(5, 60)
    for _ in range(5):
        assert await counts.hit([("k", rate)]) is None
    assert await counts.hit([("k", rate)]) == 80  # six counted: the window's end, then until they weigh four
    clock.now = T0 + 60 + 20  # the six weigh 6 × 2/3 = 4 by now
    assert await counts.hit([("k", rate)]) is None


async def test_the_previous_window_still_counts_for_the_part_that_overlaps(make, clock):
    counts = make()
    rate = Rate(10, 60)
    for _ in range(10):
        assert await counts.hit([("k", rate)]) is None
    clock.now = T0 + 60 + 6  # 10 % into the next window: the last one weighs 9
    assert await counts.hit([("k", rate)]) is None  # 9 + 1
    assert await counts.hit([("k", rate)]) == 12  # 9 + 2 is over; fits again once the last weighs 7 (at 18 s)
    clock.now = T0 + 60 + 18
    assert await counts.hit([("k", rate)]) is None  # 7 + 3


async def test_a_steady_device_is_never_refused_and_a_burst_of_ten_after_silence_fits(clock):
    throttle = Throttle(policies(), MemoryCounters(clock=clock))
    for second in range(120):  # one telemetry batch a second for two minutes
        clock.now = T0 + second + 0.37
        await throttle.check("telemetry", "198.51.100.7", lambda: "athlete")
    clock.now += 30  # out of coverage, then the phone sends what it buffered
    for _ in range(10):
        await throttle.check("telemetry", "198.51.100.7", lambda: "athlete")
    with pytest.raises(Problem) as refused:
        await throttle.check("telemetry", "198.51.100.7", lambda: "athlete")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}


async def test_every_key_of_a_hit_counts_and_any_one_over_refuses(make):
    counts = make()
    tight, loose = Rate(2, 60), Rate(100, 60)
    assert await counts.hit([("acct:a", tight), ("addr:x", loose)]) is None
    assert await counts.hit([("acct:a", tight), ("addr:y", loose)]) is None
    assert await counts.hit([("acct:a", tight), ("addr:z", loose)]) is not None  # the account, from a third address
    assert await counts.hit([("acct:b", tight), ("addr:z", loose)]) is None  # the address itself is not over


async def test_two_counters_on_one_redis_share_counts_like_two_api_replicas(redis_url, clock):
    first, second = RedisCounters(redis_url, clock=clock), counters(redis_url)
    second._clock = clock
    try:
        rate = Rate(4, 60)
        for one in (first, second, first, second):
            assert await one.hit([("shared", rate)]) is None
        assert await second.hit([("shared", rate)]) is not None
        assert await first._redis.ttl(f"shared:{int(T0 // 60)}") <= 121  # gone two windows on
    finally:
        await first.aclose()
        await second.aclose()


async def test_memory_counters_keep_at_most_max_keys(clock):
    counts = MemoryCounters(clock=clock, max_keys=100)
    for i in range(1_000):  # an attacker with a thousand addresses
        await counts.hit([(f"addr:{i}", Rate(1, 60))])
    assert len(counts._windows) == 100


def test_the_factory_picks_memory_without_redis():
    assert isinstance(counters(None), MemoryCounters)


# -- the policies -------------------------------------------------------------


def test_the_scale_multiplies_every_count_and_zero_turns_limits_off():
    assert policies(2.0)["comment"] == Policy(Rate(20, 60), Rate(200, 60))
    assert policies(0.001)["register"].address == Rate(1, 3600)  # never below one
    assert all(p == Policy(None, None) for p in policies(0).values())


def test_overrides_change_one_limit_and_leave_the_rest():
    table = policies(1.0, ["telemetry.account=20/1", "join.address=off"])
    assert table["telemetry"] == Policy(Rate(20, 1), POLICIES["telemetry"].address)
    assert table["join"] == Policy(POLICIES["join"].account, None)
    assert table["comment"] == POLICIES["comment"]


@pytest.mark.parametrize("item", ["comment=1/1", "comment.user=1/1", "nope.account=1/1", "comment.account=0/60", "x"])
def test_a_nonsense_override_is_refused_with_the_setting_named(item):
    from serve.settings import Settings

    with pytest.raises(ValueError, match="ARENA_RATE_LIMITS"):
        Settings(rate_limits=item)


def test_every_limited_route_exists_in_the_api():
    from serve.app import API_PREFIX, api

    operations = {(m.upper(), p.removeprefix(API_PREFIX)) for p, ops in api.openapi()["paths"].items() for m in ops}
    assert set(ROUTES) <= operations, set(ROUTES) - operations
    assert set(ROUTES.values()) == set(POLICIES)


def test_docs_security_md_lists_every_policy_with_its_limits():
    text = DOCS.read_text()
    section = text[text.index("## Rate limits") :]
    for name, policy in POLICIES.items():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{name}` ")), None)
        assert row is not None, f"docs/security.md has no row for {name}"
        for method, path in (route for route, policy_name in ROUTES.items() if policy_name == name):
            assert f"{method} {path}" in row.replace("`", ""), (name, method, path)
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        assert [_rate_cell(cells[2]), _rate_cell(cells[3])] == [policy.account, policy.address], row


def _rate_cell(cell: str) -> Rate | None:
    found = re.fullmatch(r"([\d,]+) / (second|minute|hour)", cell)
    if found is None:
        return None
    return Rate(int(found[1].replace(",", "")), {"second": 1, "minute": 60, "hour": 3600}[found[2]])


# -- the routes, as an attacker tries them ------------------------------------


@pytest.fixture(scope="module")
def settings(settings):
    """The shared test settings with docs/security.md's limits as they are (conftest scales them up)."""
    return settings.model_copy(update={"rate_limit_scale": 1.0})


def from_address(address: str) -> httpx.AsyncClient:
    """Another client of the same app, connecting from ``address``."""
    from serve.app import api

    transport = httpx.ASGITransport(app=api, client=(address, 5000))
    return httpx.AsyncClient(transport=transport, base_url="http://arena/api/v1")


async def signup(client: httpx.AsyncClient) -> tuple[str, dict]:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    answer = await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": "Ana"})
    assert answer.status_code == 201, answer.text
    login = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return answer.json()["id"], {"Authorization": f"Bearer {login.json()['access_token']}"}


def assert_throttled(answer: httpx.Response, policy: str) -> int:
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 429 and answer.json()["policy"] == policy
    assert answer.headers["x-content-type-options"] == "nosniff"  # a refusal is an answer like any other
    retry_after = int(answer.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


@pytest.mark.ray
async def test_hammering_registration_from_one_address_gets_429_with_retry_after(client):
    for i in range(20):
        email = f"bot{i}-{uuid.uuid4().hex[:6]}@example.com"
        answer = await client.post("/accounts", json={"email": email, "password": PASSWORD, "display_name": "Bot"})
        assert answer.status_code == 201, answer.text
    body = {"email": f"bot-{uuid.uuid4().hex[:6]}@example.com", "password": PASSWORD, "display_name": "Bot"}
    assert assert_throttled(await client.post("/accounts", json=body), "register") > 60
    assert_throttled(await client.post("/accounts", json={"junk": 1}), "register")  # refused before it is validated
    async with from_address("10.9.9.9") as elsewhere:  # someone else is not locked out
        assert (await elsewhere.post("/accounts", json=body)).status_code == 201


@pytest.mark.ray
async def test_a_new_x_forwarded_for_per_try_does_not_walk_around_the_limit(client):
    answers = []
    for i in range(120):  # made-up refresh tokens, each "from" another address
        answer = await client.post(
            "/auth/refresh", json={"refresh_token": "a.b.c"}, headers={"X-Forwarded-For": f"203.0.113.{i}"}
        )
        answers.append(answer)
        if answer.status_code == 429:
            break
    assert [a.status_code for a in answers[:60]] == [401] * 60
    assert_throttled(answers[-1], "refresh")  # a minute's window fades slowly: within a few more tries


@pytest.mark.ray
async def test_behind_a_trusted_proxy_each_client_has_its_own_count(client):
    from serve.addresses import TrustedProxies

    client.arena.trusted_proxies = TrustedProxies(["10.1.2.3/32"])  # the test client's peer: this test's Arena only
    hammer = {"X-Forwarded-For": "203.0.113.50"}
    statuses = [(await client.post("/auth/refresh", json={"refresh_token": "a.b.c"}, headers=hammer)).status_code]
    while statuses[-1] != 429 and len(statuses) < 120:
        statuses.append(
            (await client.post("/auth/refresh", json={"refresh_token": "a.b.c"}, headers=hammer)).status_code
        )
    assert statuses[:60] == [401] * 60 and statuses[-1] == 429
    other = await client.post(
        "/auth/refresh", json={"refresh_token": "a.b.c"}, headers={"X-Forwarded-For": "198.51.100.9"}
    )
    assert other.status_code == 401  # not locked out by the client beside it


@pytest.mark.ray
async def test_rotating_accounts_from_one_address_is_still_limited(client):
    # Stolen sessions guessing current passwords: four tries each stays under the account's five.
    sessions = [await signup(client) for _ in range(6)]
    wrong = {"current_password": "not the password", "new_password": "a brand new password"}
    for _, headers in sessions[:5]:
        for _ in range(4):
            assert (await client.post("/auth/password", json=wrong, headers=headers)).status_code == 403
    assert_throttled(await client.post("/auth/password", json=wrong, headers=sessions[5][1]), "password")


@pytest.mark.ray
async def test_the_account_limit_holds_across_addresses(client):
    _, headers = await signup(client)
    wrong = {"current_password": "not the password", "new_password": "a brand new password"}
    for i in range(5):
        async with from_address(f"192.0.2.{i + 1}") as somewhere:
            assert (await somewhere.post("/auth/password", json=wrong, headers=headers)).status_code == 403
    async with from_address("192.0.2.99") as fresh:
        assert_throttled(await fresh.post("/auth/password", json=wrong, headers=headers), "password")


@pytest.mark.ray
async def test_a_forged_token_is_counted_by_address_and_cannot_use_up_its_victims_account(client, settings):
    victim, headers = await signup(client)
    forged = jwt.encode(
        {"sub": victim, "roles": ["athlete"], "jti": "x", "iat": 1, "exp": 4_000_000_000}, "y" * 48, algorithm="HS256"
    )
    async with from_address("10.66.6.6") as attacker:
        for _ in range(5):
            answer = await attacker.get("/me/export", headers={"Authorization": f"Bearer {forged}"})
            assert answer.status_code == 401
    assert (await client.get("/me/export", headers=headers)).status_code == 200
