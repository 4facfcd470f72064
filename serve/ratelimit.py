"""Failed-login limiting per account and per client address, over a sliding window.

An account is locked after ``account_limit`` failures within ``window_s``
seconds, an address after ``address_limit``; the lock lifts when the oldest
failure still counted leaves the window. ``RedisLoginLimiter`` shares the counts
between API replicas; ``MemoryLoginLimiter`` keeps them in one process, and ``RayLoginLimiter`` in one Ray
actor that every replica of a deployment without Redis shares.

Keys are digests, so a hostile megabyte-long account name costs a few dozen
bytes of storage and no email address is stored in clear.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["RateLimited", "LoginLimiter", "RedisLoginLimiter", "MemoryLoginLimiter", "address_key", "login_limiter"]

Clock = Callable[[], float]


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"too many failed logins; retry in {retry_after} s")
        self.retry_after = retry_after


class LoginLimiter(Protocol):
    async def check(self, account: str, address: str) -> None:
        """Raise ``RateLimited`` while the account or the address is locked."""

    async def failed(self, account: str, address: str) -> None:
        """Count one failed login against both the account and the address."""

    async def succeeded(self, account: str, address: str) -> None:
        """Forget the account's failures; the address keeps its count."""

    async def aclose(self) -> None: ...


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def address_key(address: str) -> str:
    # One IPv6 subscriber usually holds a whole /64: count the prefix, not each address in it.
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return _digest(address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 6:
        return _digest(str(ipaddress.ip_network(f"{ip}/64", strict=False)))
    return _digest(str(ip))


class _SlidingWindows:
    """The policy shared by both stores: which keys, which limits, how long a lock lasts.

    A key keeps at most its limit of failure times (the newest ones), so its
    oldest kept time says when the lock lifts and storage per key stays bounded.
    """

    def __init__(self, account_limit: int, address_limit: int, window_s: float, clock: Clock):
        for name, limit in (("account_limit", account_limit), ("address_limit", address_limit)):
            if not isinstance(limit, int) or limit < 1:
                raise ValueError(f"{name} must be a positive integer, got {limit!r}")
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s!r}")
        self.account_limit = account_limit
        self.address_limit = address_limit
        self.window_s = float(window_s)
        self._clock = clock

    def _account_key(self, account: str) -> str:
        # Login names compare without case, so "Ana" and "ana" share one counter.
        return f"arena:login:acct:{_digest(account.strip().casefold())}"

    def _keys(self, account: str, address: str) -> list[tuple[str, int]]:
        if not isinstance(account, str) or not isinstance(address, str):
            raise TypeError(
                f"account and address must be strings, got {type(account).__name__} and {type(address).__name__}"
            )
        return [
            (self._account_key(account), self.account_limit),
            (f"arena:login:addr:{address_key(address)}", self.address_limit),
        ]

    def _raise_if_locked(self, windows: list[tuple[int, float | None]], limits: list[int], now: float) -> None:
        waits = [
            oldest + self.window_s - now
            for (count, oldest), limit in zip(windows, limits)
            if count >= limit and oldest is not None
        ]
        if waits:
            raise RateLimited(max(1, math.ceil(max(waits))))


class RedisLoginLimiter(_SlidingWindows):
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
        import redis.asyncio

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


class MemoryLoginLimiter(_SlidingWindows):
    """Counts in this process; at most ``max_keys`` keys, the least recently failed evicted first."""

    def __init__(
        self,
        *,
        account_limit: int = 5,
        address_limit: int = 20,
        window_s: float = 900.0,
        clock: Clock = time.time,
        max_keys: int = 100_000,
    ):
        super().__init__(account_limit, address_limit, window_s, clock)
        if max_keys < 2:
            raise ValueError(f"max_keys must be at least 2 (one account and one address), got {max_keys!r}")
        self.max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _window(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    async def check(self, account: str, address: str) -> None:
        now = self._clock()
        keys = self._keys(account, address)
        windows = []
        for key, _ in keys:
            times = self._window(key, now)
            windows.append((len(times), times[0]) if times else (0, None))
        self._raise_if_locked(windows, [limit for _, limit in keys], now)

    async def failed(self, account: str, address: str) -> None:
        now = self._clock()
        for key, limit in self._keys(account, address):
            times = self._window(key, now)
            if times is None:
                times = self._failures[key] = deque(maxlen=limit)
            times.append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    async def succeeded(self, account: str, address: str) -> None:
        self._failures.pop(self._account_key(account), None)

    async def aclose(self) -> None:
        self._failures.clear()


class _SharedCounts:
    """The Ray actor behind ``RayLoginLimiter``: one ``MemoryLoginLimiter`` for every replica."""

    def __init__(self, policy: dict) -> None:
        self._limiter = MemoryLoginLimiter(**policy)

    async def check(self, account: str, address: str) -> int | None:
        try:
            await self._limiter.check(account, address)
        except RateLimited as limited:
            return limited.retry_after
        return None

    async def failed(self, account: str, address: str) -> None:
        await self._limiter.failed(account, address)

    async def succeeded(self, account: str, address: str) -> None:
        await self._limiter.succeeded(account, address)


class RayLoginLimiter:
    """Without Redis: the counts live in one named, detached Ray actor that every API replica
    of the namespace shares, so two replicas do not each allow the full number of guesses.
    Counts are in memory (a restart of that actor forgets them, as a Redis restart would)."""

    def __init__(self, namespace: str, **policy) -> None:
        _SlidingWindows(
            policy.get("account_limit", 5), policy.get("address_limit", 20), policy.get("window_s", 900.0), time.time
        )  # the policy's own checks, here in the caller rather than in a remote actor
        self._namespace = namespace
        self._policy = policy
        self._actor = None

    def _counts(self):
        if self._actor is None:
            import ray

            self._actor = (
                ray.remote(_SharedCounts)
                .options(
                    name="arena-login-limits",
                    namespace=self._namespace,
                    lifetime="detached",
                    get_if_exists=True,
                    num_cpus=0,
                    max_restarts=-1,
                )
                .remote(self._policy)
            )
        return self._actor

    async def _call(self, method: str, account: str, address: str):
        from ray.exceptions import RayActorError

        from engine.errors import HostUnavailable

        if not isinstance(account, str) or not isinstance(address, str):
            raise TypeError("account and address must be strings")
        try:
            return await getattr(self._counts(), method).remote(account, address)
        except RayActorError as error:  # sign-in waits for its limits rather than going unlimited
            raise HostUnavailable(f"sign-in limits are restarting: {type(error).__name__}") from None

    async def check(self, account: str, address: str) -> None:
        retry_after = await self._call("check", account, address)
        if retry_after is not None:
            raise RateLimited(retry_after)

    async def failed(self, account: str, address: str) -> None:
        await self._call("failed", account, address)

    async def succeeded(self, account: str, address: str) -> None:
        await self._call("succeeded", account, address)

    async def aclose(self) -> None:
        self._actor = None


def login_limiter(redis_url: str | None, namespace: str | None = None, **policy) -> LoginLimiter:
    """Shared counts in Redis when it is configured; else in a Ray actor shared by the replicas of
    ``namespace``; else (no namespace: one process, as in unit tests) counts in this process."""
    if redis_url:
        return RedisLoginLimiter(redis_url, **policy)
    if namespace is not None:
        return RayLoginLimiter(namespace, **policy)
    return MemoryLoginLimiter(**policy)
