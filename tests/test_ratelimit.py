"""Failed-login limiting, in process and in Redis, on a clock the tests move."""

from __future__ import annotations

import pytest

from engine.login_limits import MemoryLoginLimiter, RateLimited
from persistence.redis_login_limits import RedisLoginLimiter
from serve.ratelimit import login_limiter
from tests.conftest import T0


@pytest.fixture(params=["memory", "redis"])
async def make(request, clock):
    """Builds limiters of one kind on the shared test clock; Redis ones share one database."""
    made = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None

    def build(**policy):
        limiter = login_limiter(url, clock=clock, **policy)
        made.append(limiter)
        return limiter

    yield build
    for limiter in made:
        await limiter.aclose()


async def retry_after(limiter, account: str, address: str) -> int | None:
    try:
        await limiter.check(account, address)
    except RateLimited as locked:
        return locked.retry_after
    return None


async def test_five_failures_lock_the_account_until_the_oldest_leaves_the_window(make, clock):
    limiter = make()
    for _ in range(4):
        await limiter.failed("ana", "10.0.0.1")
        clock.now += 10
    assert await retry_after(limiter, "ana", "10.0.0.1") is None
    await limiter.failed("ana", "10.0.0.1")  # the fifth, at T0 + 40

    assert await retry_after(limiter, "ana", "10.0.0.1") == 860
    assert await retry_after(limiter, "ana", "10.0.0.2") == 860  # from any address
    clock.now += 100.5
    assert await retry_after(limiter, "ana", "10.0.0.1") == 760  # rounded up
    clock.now = T0 + 899.9
    assert await retry_after(limiter, "ana", "10.0.0.1") == 1
    clock.now = T0 + 900
    assert await retry_after(limiter, "ana", "10.0.0.1") is None
    await limiter.failed("ana", "10.0.0.1")
    assert await retry_after(limiter, "ana", "10.0.0.1") == 10  # the failure of T0 + 10 is now the oldest


async def test_other_accounts_from_the_address_are_locked_only_at_twenty_failures(make):
    limiter = make()
    for i in range(19):
        await limiter.failed(f"user{i}", "203.0.113.9")
    assert await retry_after(limiter, "someone-else", "203.0.113.9") is None
    await limiter.failed("user19", "203.0.113.9")
    assert await retry_after(limiter, "someone-else", "203.0.113.9") == 900
    assert await retry_after(limiter, "someone-else", "203.0.113.10") is None


async def test_success_clears_the_account_but_not_the_address(make):
    limiter = make(account_limit=5, address_limit=8)
    for _ in range(4):
        await limiter.failed("ana", "10.0.0.1")
    await limiter.succeeded("ana", "10.0.0.1")
    for _ in range(3):
        await limiter.failed("ana", "10.0.0.1")
    assert await retry_after(limiter, "ana", "10.0.0.1") is None  # 3 since the success, not 7
    await limiter.failed("ana", "10.0.0.1")
    assert await retry_after(limiter, "bob", "10.0.0.1") == 900  # the address counted all 8


async def test_account_names_differing_in_case_share_a_counter(make):
    limiter = make()
    for name in ("Ana", "ana", "ANA", " ana", "aNa"):
        await limiter.failed(name, "10.0.0.1")
    assert await retry_after(limiter, "ana", "10.0.0.1") == 900


async def test_addresses_of_one_ipv6_slash_64_share_a_counter(make):
    limiter = make(address_limit=3)
    for i in range(3):
        await limiter.failed(f"user{i}", f"2001:db8:1:2::{i + 1:x}")
    assert await retry_after(limiter, "other", "2001:db8:1:2:ffff::1") == 900
    assert await retry_after(limiter, "other", "2001:db8:1:3::1") is None


async def test_a_hostile_megabyte_account_name_works_and_stores_a_short_key(make):
    limiter = make()
    hostile = "\U0001f3c3" * 262_144 + "\ud800"  # 1 MiB of UTF-8 and a lone surrogate
    for _ in range(5):
        await limiter.failed(hostile, "not an address \x00" * 1000)
    assert await retry_after(limiter, hostile, "not an address \x00" * 1000) == 900
    assert await retry_after(limiter, hostile[:-1], "10.0.0.1") is None
    if isinstance(limiter, RedisLoginLimiter):
        keys = await limiter._redis.keys("*")
        assert len(keys) == 2 and max(len(key) for key in keys) <= 64


async def test_two_limiters_on_one_redis_share_counts_like_two_api_replicas(redis_url, clock):
    first = RedisLoginLimiter(redis_url, clock=clock)
    second = login_limiter(redis_url, clock=clock)
    try:
        for limiter in (first, second, first, second, first):
            await limiter.failed("ana", "10.0.0.1")
        assert await retry_after(second, "ana", "10.0.0.1") == 900
        await second.succeeded("ana", "10.0.0.1")
        assert await retry_after(first, "ana", "10.0.0.1") is None
    finally:
        await first.aclose()
        await second.aclose()


async def test_memory_limiter_tracks_at_most_max_keys(clock):
    limiter = MemoryLoginLimiter(clock=clock, max_keys=4)
    for _ in range(5):
        await limiter.failed("ana", "10.0.0.1")
    assert await retry_after(limiter, "ana", "10.0.0.9") == 900
    for i in range(4):
        await limiter.failed(f"user{i}", "10.0.0.1")
    assert await retry_after(limiter, "ana", "10.0.0.9") is None  # evicted, least recently failed first


def test_the_factory_picks_memory_without_redis():
    assert isinstance(login_limiter(None), MemoryLoginLimiter)


@pytest.mark.parametrize(
    "policy", [{"account_limit": 0}, {"address_limit": -1}, {"window_s": 0}, {"account_limit": 2.5}]
)
def test_a_nonsense_policy_is_refused(policy):
    with pytest.raises(ValueError):
        MemoryLoginLimiter(**policy)


async def test_non_string_input_is_refused_with_a_clear_error():
    with pytest.raises(TypeError, match="must be strings"):
        await MemoryLoginLimiter().check(None, "10.0.0.1")
