"""Failed-login limiting per account and per client address, over a sliding window.

An account is locked after ``account_limit`` failures within ``window_s``
seconds, an address after ``address_limit``; the lock lifts when the oldest
failure still counted leaves the window. ``MemoryLoginLimiter`` keeps the counts in one
process; ``persistence.redis_login_limits.RedisLoginLimiter`` shares them between API
replicas, and ``serve.ratelimit.RayLoginLimiter`` in one Ray actor that every replica of a
deployment without Redis shares.

Keys are digests (``engine.address_keys``), so no email address is stored in clear.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Protocol

from engine.address_keys import address_key, digest

__all__ = ["Clock", "LoginLimiter", "LoginWindows", "MemoryLoginLimiter", "RateLimited"]

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


class LoginWindows:
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
        return f"arena:login:acct:{digest(account.strip().casefold())}"

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


class MemoryLoginLimiter(LoginWindows):
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
        windows: list[tuple[int, float | None]] = []
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
