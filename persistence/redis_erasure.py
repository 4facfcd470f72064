"""Erasure in Redis: the eraser's ``redis`` part (connectors/erasure.py, docs/privacy.md).

What Arena keeps in Redis, and whether it names a person:

- ``<namespace>:rl:<policy>:acct:<user id>:<window>``: request counters per account
  (``serve.throttle``): named by the id, deleted.
- ``arena:revoked:user:<user id>``: the instant before which their tokens are refused
  (``persistence.redis_revocations``): named by the id, deleted. ``arena:revoked:sid:`` and
  ``:jti:`` hold a random session or token id, nothing that leads to the person, and expire with
  the access token they revoke (its lifetime and a second: 15 minutes by default).
- ``arena:login:acct:<digest>``, ``arena:login:addr:<digest>`` and ``<namespace>:rl:<policy>:addr:
  <digest>:<window>``: failed logins by login name and by address, request counters by address.
  Keyed by digests of an email or an address, which the account's id cannot find (the account has
  forgotten its email by then); they are not looked for, and expire on their own: failed logins
  ``window_s`` after the last one (15 minutes by default), request counters two windows of their
  rate after their own (2 hours at most in ``serve.throttle.POLICIES``).
- ``arena:user:<user id>``: the bus's pub/sub channel, which stores nothing.

The scan does not trust that list: it walks every key under the namespace and under ``arena``
(where revocations and login limits live whatever the namespace), ``SCAN`` page by page, never
``KEYS``. A key whose name names the person goes whole. In a set, sorted set, hash, list or stream,
the members, fields or entries that name them go, as ``engine.erasure.scrub`` drops a collection's
entries (Redis deletes a collection left empty: one that was theirs alone). A string value that
names them among other things gets the stand-in, its expiry kept. "Names" is the store's substring
match (``Store.mentions``): an account id is 32 random hex digits.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis.asyncio

__all__ = ["RedisPart"]

log = logging.getLogger(__name__)

_FIXED_PREFIX = "arena"  # revocations, login limits and the bus's channels do not take the namespace
_GLOB = re.compile(rb"([\\*?\[\]])")


class RedisPart:
    """Every key under a namespace of one Redis that names the person: removed by ``erase``, listed by
    ``remnants``."""

    name = "redis"

    def __init__(self, url: str, namespace: str = "arena", *, page: int = 1_000) -> None:
        if not isinstance(namespace, str) or not namespace:
            raise ValueError(f"a namespace is a non-empty string, got {namespace!r}")
        if not isinstance(page, int) or page < 1:
            raise ValueError(f"page must be a positive integer, got {page!r}")
        self.namespace = namespace
        self.page = page
        self._prefixes = list(dict.fromkeys((namespace, _FIXED_PREFIX)))
        self._redis = redis.asyncio.Redis.from_url(url)

    async def erase(self, user_id: str, stand_in: str) -> int:
        needle = _needle(user_id)
        if not isinstance(stand_in, str) or not stand_in or needle in stand_in.encode():
            raise ValueError("the stand-in must be a non-empty string that does not name the person")
        changed = 0
        async for key in self._keys():
            changed += sum(n for n, _ in await self._visit(key, needle, stand_in.encode()))
        return changed

    async def remnants(self, user_id: str) -> list[str]:
        needle = _needle(user_id)
        lines = [line async for key in self._keys() for _, line in await self._visit(key, needle, None)]
        return list(dict.fromkeys(lines))  # SCAN may return a key twice

    async def close(self) -> None:
        await self._redis.aclose()

    async def _keys(self) -> AsyncIterator[bytes]:
        for prefix in self._prefixes:
            async for key in self._redis.scan_iter(match=_glob(prefix.encode()) + b":*", count=self.page):
                yield key

    async def _visit(self, key: bytes, needle: bytes, stand_in: bytes | None) -> list[tuple[int, str]]:
        """What in ``key`` names the person: (how many things, a line) each; erased when there is a
        ``stand_in``."""
        name = key.decode("utf-8", "backslashreplace")
        r = self._redis
        if needle in key:
            if stand_in is not None:
                await r.unlink(key)
            return [(1, f"key {name}")]
        kind = (await r.type(key)).decode()
        match_ = b"*" + _glob(needle) + b"*"
        found: list[bytes] = []
        if kind == "string":
            value = await r.get(key)
            if value is None or needle not in value:
                return []
            if stand_in is not None:  # XX: a key that expired meanwhile is not written again
                await r.set(key, value.replace(needle, stand_in), keepttl=True, xx=True)
            return [(1, f"string {name}")]
        if kind == "set":
            found = [m async for m in r.sscan_iter(key, match=match_, count=self.page)]
            if found and stand_in is not None:
                await _in_chunks(lambda chunk: r.srem(key, *chunk), found, self.page)
        elif kind == "zset":
            found = [m async for m, _ in r.zscan_iter(key, match=match_, count=self.page)]
            if found and stand_in is not None:
                await _in_chunks(lambda chunk: r.zrem(key, *chunk), found, self.page)
        elif kind == "hash":  # HSCAN's MATCH sees field names only: values are read too
            found = [f async for f, v in r.hscan_iter(key, count=self.page) if needle in f or needle in v]
            if found and stand_in is not None:
                await _in_chunks(lambda chunk: r.hdel(key, *chunk), found, self.page)
        elif kind == "list":
            found = await self._list_values(key, needle)
            if stand_in is not None:
                for value in found:
                    await r.lrem(key, 0, value)
        elif kind == "stream":
            found = await self._stream_entries(key, needle)
            if found and stand_in is not None:
                await _in_chunks(lambda chunk: r.xdel(key, *chunk), found, self.page)
        elif kind != "none":  # gone meanwhile: nothing to do
            log.warning("redis erasure: key %s is a %s, which the eraser cannot read; skipped", name, kind)
        found = list(dict.fromkeys(found))
        return [(len(found), f"{kind} {name}: {len(found)} item(s)")] if found else []

    async def _list_values(self, key: bytes, needle: bytes) -> list[bytes]:
        found: dict[bytes, None] = {}
        start = 0
        while values := await self._redis.lrange(key, start, start + self.page - 1):
            found.update((v, None) for v in values if needle in v)
            start += len(values)
        return list(found)

    async def _stream_entries(self, key: bytes, needle: bytes) -> list[bytes]:
        found, after = [], b"-"
        while entries := await self._redis.xrange(key, min=after, count=self.page):
            for entry_id, fields in entries:
                if any(needle in k or needle in v for k, v in fields.items()):
                    found.append(entry_id)
            after = b"(" + entries[-1][0]
        return found


def _needle(user_id: object) -> bytes:
    if not isinstance(user_id, str):
        raise TypeError(f"a user id is a string, got {type(user_id).__name__}")
    if not user_id:
        raise ValueError("an empty user id names everyone")
    return user_id.encode("utf-8", "surrogatepass")


def _glob(text: bytes) -> bytes:
    """``text`` matched literally by a Redis MATCH pattern: its glob characters escaped."""
    return _GLOB.sub(rb"\\\1", text)


async def _in_chunks(remove: Callable[[list[bytes]], Awaitable[Any]], items: list[bytes], size: int) -> None:
    for start in range(0, len(items), size):
        await remove(items[start : start + size])
