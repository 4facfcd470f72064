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

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from fastapi import Request

from engine.address_keys import address_key
from engine.counters import Counters, MemoryCounters, Rate
from serve.addresses import client_address
from serve.auth import InvalidToken, Tokens
from serve.problems import Problem

if TYPE_CHECKING:
    from serve.settings import Settings

__all__ = [
    "POLICIES",
    "ROUTES",
    "Policy",
    "Throttle",
    "counters",
    "parse_overrides",
    "policies",
    "throttled",
]

SECOND, MINUTE, HOUR = 1, 60, 3600


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
    "create": Policy(account=Rate(20, HOUR), address=Rate(200, HOUR)),
    "membership": Policy(account=Rate(30, MINUTE), address=Rate(600, MINUTE)),
    "post": Policy(account=Rate(10, MINUTE), address=Rate(100, MINUTE)),
    "redeem": Policy(account=Rate(10, MINUTE), address=Rate(60, MINUTE)),
    "campaign": Policy(account=Rate(20, HOUR), address=Rate(200, HOUR)),
    "opt_out": Policy(account=None, address=Rate(60, MINUTE)),
}

# Paths as the API's routers declare them, without the /api/v1 prefix.
ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/accounts"): "register",
    ("POST", "/auth/login"): "login",
    ("POST", "/auth/refresh"): "refresh",
    ("POST", "/auth/password"): "password",
    ("DELETE", "/me"): "password",  # erasure asks for the password too
    ("POST", "/me/export"): "export",
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
    ("POST", "/groups"): "create",
    ("POST", "/groups/{group_id}/events"): "create",
    ("POST", "/challenges"): "create",
    ("POST", "/segments"): "create",
    ("POST", "/routes"): "create",
    ("POST", "/me/gear"): "create",
    ("POST", "/events"): "create",
    ("POST", "/groups/{group_id}/join"): "membership",
    ("POST", "/groups/{group_id}/leave"): "membership",
    ("PUT", "/groups/{group_id}/events/{event_id}/rsvp"): "membership",
    ("POST", "/challenges/{challenge_id}/join"): "membership",
    ("POST", "/challenges/{challenge_id}/leave"): "membership",
    ("POST", "/events/{sport_event_id}/registrations"): "membership",
    ("DELETE", "/events/{sport_event_id}/registrations/me"): "membership",
    ("POST", "/groups/{group_id}/posts"): "post",
    ("POST", "/groups/{group_id}/posts/{post_id}/comments"): "post",
    ("POST", "/offers/redeem"): "redeem",
    ("POST", "/campaigns"): "campaign",
    ("POST", "/campaigns/{campaign_id}/cancel"): "campaign",
    ("POST", "/marketing/opt-out"): "opt_out",
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


def counters(redis_url: str | None) -> Counters:
    """Shared counts in Redis when it is configured, else counts in this process."""
    if redis_url:
        from persistence.redis_counters import RedisCounters  # late: Redis's client loads only where it is used

        return RedisCounters(redis_url)
    return MemoryCounters()


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
