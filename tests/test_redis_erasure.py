"""Erasure in a real Redis (127.0.0.1:6379): every key that names the person goes, members that name
them leave collections, everybody else's data stays (persistence/redis_erasure.py).

Database 13, not the fixture's 15: that one is emptied before each test that uses it, and these tests
keep keys under ``arena:`` (revocations, login limits) that a concurrent flush would take away.
Each test has a namespace and user ids of its own, and deletes what it wrote."""

from __future__ import annotations

import time
import uuid

import pytest
import redis.asyncio

from engine.revocations import user_key
from persistence.redis_erasure import RedisPart
from persistence.redis_login_limits import RedisLoginLimiter
from persistence.redis_revocations import RedisRevocations
from serve.throttle import Throttle, policies
from tests.conftest import require_service

URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
async def r():
    require_service("Redis", "127.0.0.1", 6379)
    client = redis.asyncio.Redis.from_url(URL)
    yield client
    await client.aclose()


@pytest.fixture
async def ns(r):
    namespace = f"t{uuid.uuid4().hex[:10]}"
    yield namespace
    async for key in r.scan_iter(match=f"{namespace}:*"):
        await r.unlink(key)


def _id() -> str:
    return uuid.uuid4().hex


async def test_erasing_a_person_removes_every_key_and_member_that_names_them(r, ns):
    ana, ben = _id(), _id()
    throttle = Throttle(policies(), _counters(), ns)
    revocations, limiter = RedisRevocations(URL), RedisLoginLimiter(URL, window_s=60)
    email = f"{ana[:8]}@example.org"
    try:
        for who in (ana, ben, ana):
            await throttle.check("workout", "203.0.113.7", _caller(who))  # the real counter keys
        await revocations.revoke_user(ana, time.time(), 60)
        await revocations.revoke_user(ben, time.time(), 60)
        await revocations.revoke_session(f"sid-{ana[:4]}", 60)  # a random session id, not the person's
        await limiter.failed(email, "203.0.113.7")  # digests of the email and address: not found by id
        await r.sadd(f"{ns}:followers:{ben}", ana, ben, "cy")
        await r.sadd(f"{ns}:followers:solo", ana)  # theirs alone: the key goes with its last member
        await r.zadd(f"{ns}:board", {ana: 1, ben: 2, f"{ana}:w1": 3})
        await r.hset(f"{ns}:names", mapping={ana: "Ana", ben: "Ben", "last": f"kudos from {ana}"})
        await r.rpush(f"{ns}:recent", ana, ben, ana, f"{ana}/w2", "cy")
        await r.xadd(f"{ns}:log", {"who": ana})
        await r.xadd(f"{ns}:log", {"who": ben})
        await r.set(f"{ns}:note", f"last seen: {ana} with {ben}", ex=600)
        await r.set(f"{ns}:counter", 42)

        part = RedisPart(URL, ns, page=2)  # several pages of every scan
        try:
            before = await part.remnants(ana)
            assert {line.split(" ")[0] for line in before} == {"key", "set", "zset", "hash", "list", "stream", "string"}
            # 1 key (the throttle's counter; a user's revocation is kept under a digest, not the id: it expires
            # with the tokens), 9 members or fields, 1 string
            assert await part.erase(ana, "erased-1234") == 11
            assert await part.remnants(ana) == []
            assert await part.erase(ana, "erased-5678") == 0  # idempotent

            assert await r.smembers(f"{ns}:followers:{ben}") == {ben.encode(), b"cy"}
            assert not await r.exists(f"{ns}:followers:solo")
            assert await r.zrange(f"{ns}:board", 0, -1) == [ben.encode()]
            assert await r.hgetall(f"{ns}:names") == {ben.encode(): b"Ben"}
            assert await r.lrange(f"{ns}:recent", 0, -1) == [ben.encode(), b"cy"]
            assert [fields for _, fields in await r.xrange(f"{ns}:log")] == [{b"who": ben.encode()}]
            assert await r.get(f"{ns}:note") == f"last seen: erased-1234 with {ben}".encode()
            assert 0 < await r.ttl(f"{ns}:note") <= 600
            assert await r.get(f"{ns}:counter") == b"42"
            assert await r.get(f"arena:revoked:{user_key(ben)}") is not None
            assert await r.exists(f"arena:revoked:sid:sid-{ana[:4]}")
            assert len(await part.remnants(ben)) == 7  # counter, followers, board, names, recent, log, note
            assert await _keys(r, f"{ns}:rl:workout:acct:{ana}:*") == []
            assert len(await _keys(r, f"{ns}:rl:workout:addr:*")) == 1  # by address: it expires on its own
            assert 0 < await r.ttl(limiter._account_key(email)) <= 60  # by email: it expires on its own
        finally:
            await part.close()
    finally:
        await r.delete(limiter._account_key(email), *(key for key, _ in limiter._keys(email, "203.0.113.7")))
        await r.delete(f"arena:revoked:{user_key(ben)}", f"arena:revoked:{user_key(ana)}", f"arena:revoked:sid:sid-{ana[:4]}")
        await revocations.aclose()
        await limiter.aclose()
        await throttle.counters.aclose()


def _caller(who: str):
    return lambda: who


def _counters():
    from persistence.redis_counters import RedisCounters

    return RedisCounters(URL)


async def _keys(r, pattern: str) -> list[bytes]:
    return [key async for key in r.scan_iter(match=pattern)]


@pytest.mark.parametrize(
    "hostile",
    ["u*", "u?", "u[ab]", "u\\", "u]", "u[", "u:*:", "\x00u", "ü\udc80", "u" * 5_000],
    ids=["star", "question", "class", "backslash", "close", "open", "colons", "nul", "surrogate", "long"],
)
async def test_glob_characters_in_an_id_do_not_widen_the_match(r, ns, hostile):
    """Each key and member names either the hostile id or a near miss that the id, read as a glob
    pattern, would match: only the first go."""
    stored = hostile.encode("utf-8", "surrogatepass")
    miss = b"uab" + b"x" * 3  # what u*, u?, u[ab], u:*: and friends would match unescaped
    await r.set(f"{ns}:rl:p:acct:".encode() + stored, 1)
    await r.set(f"{ns}:rl:p:acct:".encode() + miss, 1)
    await r.sadd(f"{ns}:set", stored + b"!", miss, b"u")
    await r.zadd(f"{ns}:zset", {stored: 1, miss: 2})
    await r.hset(f"{ns}:hash", mapping={stored: b"1", miss: b"2", b"other": stored})
    part = RedisPart(URL, ns)
    try:
        assert await part.erase(hostile, "erased-1") == 5
        assert await part.remnants(hostile) == []
        assert await r.get(f"{ns}:rl:p:acct:".encode() + miss) == b"1"
        assert await r.smembers(f"{ns}:set") == {miss, b"u"}
        assert await r.zrange(f"{ns}:zset", 0, -1) == [miss]
        assert await r.hgetall(f"{ns}:hash") == {miss: b"2"}
    finally:
        await part.close()


async def test_a_namespace_with_glob_characters_scans_only_itself(r, ns):
    ana = _id()
    literal, neighbour = f"{ns}*", f"{ns}X"
    await r.set(f"{literal}:rl:p:acct:{ana}", 1)
    await r.set(f"{neighbour}:rl:p:acct:{ana}", 1)
    part = RedisPart(URL, literal)
    try:
        assert await part.erase(ana, "erased-1") == 1
        assert await r.exists(f"{neighbour}:rl:p:acct:{ana}")  # another deployment's namespace
    finally:
        await part.close()
        await r.delete(f"{neighbour}:rl:p:acct:{ana}")


async def test_a_large_namespace_and_a_large_set_are_scanned_to_their_end(r, ns):
    ana = _id()
    async with r.pipeline(transaction=False) as pipe:
        for n in range(3_000):
            pipe.set(f"{ns}:k:{n}", n)
        await pipe.execute()
    await r.sadd(f"{ns}:big", *(f"m{n}" for n in range(5_000)), *(f"{ana}:{n}" for n in range(300)))
    await r.set(f"{ns}:k:{ana}", 1)
    part = RedisPart(URL, ns, page=100)
    try:
        assert await part.erase(ana, "erased-1") == 301
        assert await part.remnants(ana) == []
        assert await r.scard(f"{ns}:big") == 5_000
        assert len(await _keys(r, f"{ns}:k:*")) == 3_000
    finally:
        await part.close()


@pytest.mark.parametrize("bad", ["", None, 7, b"bytes"])
async def test_no_user_id_or_an_empty_one_is_refused(bad):
    part = RedisPart(URL, "never-touched")
    try:
        with pytest.raises((TypeError, ValueError)):
            await part.erase(bad, "erased-1")
        with pytest.raises((TypeError, ValueError)):
            await part.remnants(bad)
    finally:
        await part.close()


@pytest.mark.parametrize("stand_in", ["", None, "erased-ANA-1"])
async def test_a_stand_in_that_is_empty_or_names_the_person_is_refused(stand_in):
    part = RedisPart(URL, "never-touched")
    try:
        with pytest.raises(ValueError):
            await part.erase("ANA", stand_in)
    finally:
        await part.close()


@pytest.mark.parametrize("namespace", ["", None])
def test_a_missing_namespace_is_refused(namespace):
    with pytest.raises(ValueError):
        RedisPart(URL, namespace)


async def test_a_redis_that_does_not_answer_fails_the_run_for_the_eraser_to_retry():
    part = RedisPart("redis://127.0.0.1:1/0")
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await part.erase(_id(), "erased-1")
    finally:
        await part.close()


async def test_the_eraser_settings_build_the_redis_part():
    from serve.erasure import parts

    (part,) = [p for p in parts({"redis": URL, "namespace": "arena-x"}) if p.name == "redis"]
    try:
        assert isinstance(part, RedisPart) and (part.name, part.namespace) == ("redis", "arena-x")
    finally:
        await part.close()
