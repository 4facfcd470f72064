"""Request limits on the routes that cost or can be abused, per account and per client address.

``ROUTES`` names a policy for each limited route (method and path template, as routed);
``POLICIES`` gives each policy a rate per account and a rate per address. Routes that share
a policy share its counters (kudos given and taken back count as one). The table is
docs/security.md's "Rate limits"; a test keeps the two and the app's routes in step.

The caller's account comes from a bearer token whose signature checks out; an invalid or
missing token is counted by the client address alone. Counts are sliding windows (the
previous fixed window, weighted by how much of it still overlaps, plus the current one):
one round trip per request to Redis when it is configured, shared by every replica;
otherwise in this process.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from fastapi import Request

from serve.addresses import client_address
from serve.auth import InvalidToken, Tokens
from serve.problems import Problem
from serve.ratelimit import address_key

if TYPE_CHECKING:
    from serve.settings import Settings

__all__ = [
    "POLICIES",
    "ROUTES",
    "Counters",
    "MemoryCounters",
    "Policy",
    "Rate",
    "RedisCounters",
    "Throttle",
    "counters",
    "parse_overrides",
    "policies",
    "throttled",
]

Clock = Callable[[], float]

SECOND, MINUTE, HOUR = 1, 60, 3600


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    seconds: int

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"a rate's count must be a positive integer, got {self.count!r}")
        if not isinstance(self.seconds, int) or self.seconds < 1:
            raise ValueError(f"a rate's window must be a positive number of seconds, got {self.seconds!r}")


@dataclass(frozen=True, slots=True)
class Policy:
    account: Rate | None
    address: Rate | None


POLICIES: dict[str, Policy] = {
    "register": Policy(account=None, address=Rate(20, HOUR)),
    "login": Policy(account=None, address=Rate(60, MINUTE)),
    "refresh": Policy(account=None, address=Rate(60, MINUTE)),
    "password": Policy(account=Rate(5, HOUR), address=Rate(20, HOUR)),
    "export": Policy(account=Rate(5, HOUR), address=Rate(30, HOUR)),
    "workout": Policy(account=Rate(60, HOUR), address=Rate(600, HOUR)),
    "import": Policy(account=Rate(20, HOUR), address=Rate(100, HOUR)),
    "comment": Policy(account=Rate(10, MINUTE), address=Rate(100, MINUTE)),
    "kudos": Policy(account=Rate(60, MINUTE), address=Rate(600, MINUTE)),
    "follow": Policy(account=Rate(30, MINUTE), address=Rate(300, MINUTE)),
    "race": Policy(account=Rate(10, HOUR), address=Rate(30, HOUR)),
    "join": Policy(account=Rate(20, MINUTE), address=Rate(600, MINUTE)),
    "device": Policy(account=Rate(10, HOUR), address=Rate(60, HOUR)),
    "bind": Policy(account=Rate(30, MINUTE), address=Rate(300, MINUTE)),
    "telemetry": Policy(account=Rate(10, SECOND), address=Rate(1000, SECOND)),
    "stream": Policy(account=Rate(30, MINUTE), address=Rate(600, MINUTE)),
    "results_csv": Policy(account=Rate(30, MINUTE), address=Rate(60, MINUTE)),
    "analytics": Policy(account=Rate(60, MINUTE), address=Rate(600, MINUTE)),
}

# Paths as the API's routers declare them, without the /api/v1 prefix.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/accounts"): "register",
    ("POST", "/auth/login"): "login",
    ("POST", "/auth/refresh"): "refresh",
    ("POST", "/auth/password"): "password",
    ("GET", "/me/export"): "export",
    ("POST", "/workouts"): "workout",
    ("POST", "/workouts/import"): "import",
    ("POST", "/workouts/{workout_id}/comments"): "comment",
    ("PUT", "/workouts/{workout_id}/kudos"): "kudos",
    ("DELETE", "/workouts/{workout_id}/kudos"): "kudos",
    ("POST", "/users/{user_id}/follow"): "follow",
    ("DELETE", "/users/{user_id}/follow"): "follow",
    ("POST", "/me/follow-requests/{user_id}/{answer}"): "follow",
    ("PUT", "/users/{user_id}/block"): "follow",
    ("DELETE", "/users/{user_id}/block"): "follow",
    ("POST", "/races"): "race",
    ("POST", "/races/{race_id}/athletes"): "join",
    ("DELETE", "/races/{race_id}/athletes/me"): "join",
    ("POST", "/devices"): "device",
    ("DELETE", "/devices/{device_id}"): "device",
    ("PUT", "/devices/{device_id}/race/{race_id}"): "bind",
    ("DELETE", "/devices/{device_id}/race"): "bind",
    ("PUT", "/races/{race_id}/devices/{device_id}"): "bind",
    ("POST", "/races/{race_id}/telemetry"): "telemetry",
    ("GET", "/notifications/stream"): "stream",
    ("GET", "/races/{race_id}/live"): "stream",
    ("GET", "/races/{race_id}/results.csv"): "results_csv",
    ("GET", "/me/analytics/totals"): "analytics",
    ("GET", "/me/analytics/records"): "analytics",
    ("GET", "/me/analytics/streaks"): "analytics",
}

_OVERRIDE = re.compile(
    r"^(?P<policy>[a-z_]+)\.(?P<scope>account|address)=(?:(?P<off>off)|(?P<count>\d+)/(?P<seconds>\d+))$"
)


def parse_overrides(items: Iterable[str]) -> dict[str, Policy]:
    """``policy.scope=count/seconds`` or ``policy.scope=off`` items as the policies they change."""
    changed: dict[str, Policy] = {}
    for item in items:
        found = _OVERRIDE.match(item.strip())
        if found is None:
            raise ValueError(f"ARENA_RATE_LIMITS: {item!r} is not policy.account=COUNT/SECONDS (or =off)")
        name, scope = found["policy"], found["scope"]
        if name not in POLICIES:
            raise ValueError(f"ARENA_RATE_LIMITS: no policy {name!r}; one of {', '.join(POLICIES)}")
        try:
            rate = None if found["off"] else Rate(int(found["count"]), int(found["seconds"]))
        except ValueError as error:
            raise ValueError(f"ARENA_RATE_LIMITS: {item!r}: {error}") from None
        changed[name] = replace(changed.get(name, POLICIES[name]), **{scope: rate})
    return changed


def policies(scale: float = 1.0, overrides: Iterable[str] = ()) -> dict[str, Policy]:
    """The table with every count multiplied by ``scale`` (0: no limits), then the overrides applied."""
    if not scale >= 0:
        raise ValueError(f"the rate-limit scale must be zero or more, got {scale!r}")

    def scaled(rate: Rate | None) -> Rate | None:
        return None if rate is None or scale == 0 else Rate(max(1, round(rate.count * scale)), rate.seconds)

    table = {name: Policy(scaled(p.account), scaled(p.address)) for name, p in POLICIES.items()}
    return table | parse_overrides(overrides)


class Counters(Protocol):
    async def hit(self, keys: Sequence[tuple[str, Rate]]) -> int | None:
        """Count one request against each key; the seconds to wait if any key is over its rate, else None."""

    async def aclose(self) -> None: ...


_SLACK = 1e-6  # float error: 10 × (1 - 0.3) + 3 must still be 10


class _Windows:
    """The arithmetic both stores share: whether a key is over its rate, and how long it then waits."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    @staticmethod
    def _wait(rate: Rate, now: float, current: int, previous: int) -> float | None:
        """None while ``current`` (this request included) plus the overlap of ``previous`` is within the rate."""
        w = rate.seconds
        into = (now % w) / w  # how far into the current window
        if previous * (1 - into) + current <= rate.count + _SLACK:
            return None
        # When would one more request fit, if none came meanwhile?
        if current + 1 <= rate.count:
            return max(0.0, w * (1 - (rate.count - current - 1) / previous) - into * w)
        return (1 - into) * w + w * max(0.0, 1 - (rate.count - 1) / current)

    def _retry_after(
        self, keys: Sequence[tuple[str, Rate]], now: float, counts: Sequence[tuple[int, int]]
    ) -> int | None:
        waits = [
            wait
            for (_, rate), (current, previous) in zip(keys, counts)
            if (wait := self._wait(rate, now, current, previous)) is not None
        ]
        return max(1, math.ceil(max(waits) - _SLACK)) if waits else None


class RedisCounters(_Windows):
    """One counter per key and window in Redis (``INCR``), read with the previous window's in one pipeline."""

    def __init__(self, redis_url: str, *, clock: Clock = time.time) -> None:
        super().__init__(clock)
        import redis.asyncio

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


class MemoryCounters(_Windows):
    """Counts in this process; at most ``max_keys`` keys, the least recently hit evicted first."""

    def __init__(self, *, clock: Clock = time.time, max_keys: int = 100_000) -> None:
        super().__init__(clock)
        if max_keys < 2:
            raise ValueError(f"max_keys must be at least 2 (an account and an address), got {max_keys!r}")
        self.max_keys = max_keys
        self._windows: OrderedDict[str, tuple[int, int, int]] = OrderedDict()  # key: (window, current, previous)

    async def hit(self, keys: Sequence[tuple[str, Rate]]) -> int | None:
        now = self._clock()
        counts = []
        for key, rate in keys:
            window = int(now // rate.seconds)
            seen, current, previous = self._windows.pop(key, (window, 0, 0))
            if seen == window - 1:
                current, previous = 0, current
            elif seen != window:
                current, previous = 0, 0
            self._windows[key] = (window, current + 1, previous)
            counts.append((current + 1, previous))
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)
        return self._retry_after(keys, now, counts)

    async def aclose(self) -> None:
        self._windows.clear()


def counters(redis_url: str | None) -> Counters:
    """Shared counts in Redis when it is configured, else counts in this process."""
    return RedisCounters(redis_url) if redis_url else MemoryCounters()


def _account(request: Request, tokens: Tokens) -> str | None:
    """The account of a bearer token whose signature and expiry check out; None otherwise.

    Revocation is not looked up here (a round trip): a revoked token was still ours, so
    counting its account is right, and the route's own authentication refuses it.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    try:
        return tokens.caller(token.strip()).id
    except InvalidToken:
        return None


@dataclass
class Throttle:
    """The policies in force (the table, scaled and overridden by the settings) and their counters."""

    policies: dict[str, Policy]
    counters: Counters
    namespace: str = "arena"  # two deployments on one Redis count apart

    @classmethod
    def build(cls, settings: Settings) -> Throttle:
        table = policies(settings.rate_limit_scale, settings.rate_limits)
        return cls(table, counters(settings.redis_url), settings.namespace)

    async def check(self, name: str, address: str, account: Callable[[], str | None]) -> None:
        """Count a request under policy ``name``; a 429 problem when it is one too many.

        ``account`` is called only when the policy limits accounts (it decodes a token).
        """
        policy = self.policies.get(name)
        if policy is None:
            return
        keys: list[tuple[str, Rate]] = []
        if policy.address is not None:
            keys.append((f"{self.namespace}:rl:{name}:addr:{address_key(address)}", policy.address))
        if policy.account is not None and (who := account()) is not None:
            keys.append((f"{self.namespace}:rl:{name}:acct:{who}", policy.account))
        if keys and (retry_after := await self.counters.hit(keys)) is not None:
            raise Problem(
                429,
                f"too many requests of this kind ({name}); retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
                policy=name,
            )


async def throttled(request: Request) -> None:
    """The API routers' dependency: the policy of the route, found by its method and path template."""
    name = ROUTES.get((request.method, getattr(request.scope.get("route"), "path", "")))
    if name is not None:
        arena = request.app.state.arena
        await arena.throttle.check(name, client_address(request), lambda: _account(request, arena.tokens))
