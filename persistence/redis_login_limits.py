"""Failed logins counted in Redis sorted sets, shared by every API replica: ``engine.login_limits.LoginLimiter``."""

from __future__ import annotations

import math
import os
import time

import redis.asyncio

from engine.login_limits import Clock, LoginWindows

__all__ = ["RedisLoginLimiter"]


class RedisLoginLimiter(LoginWindows):
    """Counts in Redis sorted sets (member: a unique failure, score: its time)."""

    def __init__(
        self,
        redis_url: str,
        *,
        account_limit: int = 5,
        address_limit: int = 20,
        window_s: float = 900.0,
        clock: Clock = time.time,
    ):
        super().__init__(account_limit, address_limit, window_s, clock)
        self._redis = redis.asyncio.Redis.from_url(redis_url)

    async def check(self, account: str, address: str) -> None:
        now = self._clock()
        keys = self._keys(account, address)
        async with self._redis.pipeline(transaction=True) as pipe:
            for key, _ in keys:
                pipe.zremrangebyscore(key, "-inf", now - self.window_s)
                pipe.zcard(key)
                pipe.zrange(key, 0, 0, withscores=True)
            replies = await pipe.execute()
        windows = [(count, first[0][1] if first else None) for count, first in zip(replies[1::3], replies[2::3])]
        self._raise_if_locked(windows, [limit for _, limit in keys], now)

    async def failed(self, account: str, address: str) -> None:
        now = self._clock()
        member = f"{now!r}:{os.urandom(6).hex()}"  # unique, so two failures in one instant both count
        async with self._redis.pipeline(transaction=True) as pipe:
            for key, limit in self._keys(account, address):
                pipe.zadd(key, {member: now})
                pipe.zremrangebyscore(key, "-inf", now - self.window_s)
                pipe.zremrangebyrank(key, 0, -limit - 1)
                pipe.expire(key, math.ceil(self.window_s))
            await pipe.execute()

    async def succeeded(self, account: str, address: str) -> None:
        await self._redis.delete(self._account_key(account))

    async def aclose(self) -> None:
        await self._redis.aclose()
