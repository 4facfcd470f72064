"""Revoked access tokens: by token id (logout) and by user before an instant (password change).

Redis when configured, so every API replica sees a revocation at once; in-process
otherwise. Entries expire with the longest-lived access token they could concern.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Revocations", "MemoryRevocations", "RedisRevocations", "revocations"]


class Revocations(Protocol):
    async def revoke_token(self, jti: str, ttl: float) -> None: ...

    async def revoke_user(self, user_id: str, before: float, ttl: float) -> None: ...

    async def is_revoked(self, jti: str, user_id: str, issued_at: float) -> bool: ...


class MemoryRevocations:
    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._tokens: dict[str, float] = {}
        self._users: dict[str, tuple[float, float]] = {}

    async def revoke_token(self, jti: str, ttl: float) -> None:
        self._sweep()
        self._tokens[jti] = self._clock() + ttl

    async def revoke_user(self, user_id: str, before: float, ttl: float) -> None:
        self._sweep()
        self._users[user_id] = (before, self._clock() + ttl)

    async def is_revoked(self, jti: str, user_id: str, issued_at: float) -> bool:
        now = self._clock()
        if self._tokens.get(jti, 0) > now:
            return True
        before, until = self._users.get(user_id, (0.0, 0.0))
        return until > now and issued_at <= before

    def _sweep(self) -> None:
        now = self._clock()
        self._tokens = {k: v for k, v in self._tokens.items() if v > now}
        self._users = {k: v for k, v in self._users.items() if v[1] > now}


class RedisRevocations:
    def __init__(self, redis_url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(redis_url)

    async def revoke_token(self, jti: str, ttl: float) -> None:
        await self._redis.set(f"arena:revoked:jti:{jti}", 1, ex=max(1, int(ttl) + 1))

    async def revoke_user(self, user_id: str, before: float, ttl: float) -> None:
        await self._redis.set(f"arena:revoked:user:{user_id}", repr(before), ex=max(1, int(ttl) + 1))

    async def is_revoked(self, jti: str, user_id: str, issued_at: float) -> bool:
        token, before = await self._redis.mget(f"arena:revoked:jti:{jti}", f"arena:revoked:user:{user_id}")
        return token is not None or (before is not None and issued_at <= float(before))


def revocations(redis_url: str | None) -> Revocations:
    return RedisRevocations(redis_url) if redis_url else MemoryRevocations()
