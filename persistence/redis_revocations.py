"""Revocations in Redis (``engine.revocations.Revocations``): every API replica sees one at once."""

from __future__ import annotations

import redis.asyncio as redis

from engine.revocations import user_key

__all__ = ["RedisRevocations"]


class RedisRevocations:
    def __init__(self, redis_url: str) -> None:
        self._redis = redis.from_url(redis_url)

    async def revoke_token(self, jti: str, ttl: float) -> None:
        await self._redis.set(f"arena:revoked:jti:{jti}", 1, ex=max(1, int(ttl) + 1))

    async def revoke_session(self, sid: str, ttl: float) -> None:
        await self._redis.set(f"arena:revoked:sid:{sid}", 1, ex=max(1, int(ttl) + 1))

    async def revoke_user(self, user_id: str, before: float, ttl: float) -> None:
        # A later password change moves the instant forward, never back.
        key = f"arena:revoked:{user_key(user_id)}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(key)
            (old,) = await pipe.execute()
        before = max(before, float(old)) if old is not None else before
        await self._redis.set(key, repr(before), ex=max(1, int(ttl) + 1))

    async def is_revoked(self, jti: str, sid: str, user_id: str, issued_at: float) -> bool:
        token, session, before = await self._redis.mget(
            f"arena:revoked:jti:{jti}", f"arena:revoked:sid:{sid}", f"arena:revoked:{user_key(user_id)}"
        )
        return token is not None or session is not None or (before is not None and issued_at <= float(before))

    async def aclose(self) -> None:
        await self._redis.aclose()
