"""Request counters in Redis, shared by every API replica: ``engine.counters.Counters`` on ``INCR``."""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio

from engine.counters import Clock, CounterWindows, Rate

__all__ = ["RedisCounters"]


class RedisCounters(CounterWindows):
    """One counter per key and window in Redis (``INCR``), read with the previous window's in one pipeline."""

    def __init__(self, redis_url: str, *, clock: Clock = time.time) -> None:
        super().__init__(clock)
        self._redis = redis.asyncio.Redis.from_url(redis_url)

    async def hit(self, keys: Sequence[tuple[str, Rate]]) -> int | None:
        now = self._clock()
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, rate in keys:
                window = int(now // rate.seconds)
                pipe.incr(f"{key}:{window}")
                pipe.expire(f"{key}:{window}", 2 * rate.seconds + 1)
                pipe.get(f"{key}:{window - 1}")
            replies = await pipe.execute()
        counts = [(int(current), int(previous or 0)) for current, previous in zip(replies[0::3], replies[2::3])]
        return self._retry_after(keys, now, counts)

    async def aclose(self) -> None:
        await self._redis.aclose()
