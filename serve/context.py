"""What every route needs, built once per replica, and the request dependencies."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.cluster import Cluster
from engine.ray_host import HostSpec
from serve.auth import Caller, InvalidToken, Passwords, Tokens
from serve.bus import Bus, bus
from serve.fanout import FanOut
from serve.kinds import KINDS
from serve.problems import Problem
from serve.ratelimit import LoginLimiter, login_limiter
from serve.revocation import Revocations, revocations
from serve.settings import Settings

__all__ = ["Arena", "ArenaDep", "CallerDep", "EntityId", "OptionalCallerDep", "new_id"]

EntityId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass
class Arena:
    settings: Settings
    cluster: Cluster
    passwords: Passwords
    tokens: Tokens
    limiter: LoginLimiter
    revocations: Revocations
    bus: Bus
    fanout: FanOut

    @classmethod
    def build(cls, settings: Settings) -> Arena:
        spec = HostSpec(settings.database_url, KINDS, settings.host_config(), hosts=settings.hosts, shards=settings.shards)
        cluster = Cluster(spec, namespace=settings.namespace)
        return cls(
            settings=settings,
            cluster=cluster,
            passwords=Passwords(settings.argon2_time_cost, settings.argon2_memory_kib),
            tokens=Tokens(
                settings.signing_secret(),
                access_ttl=settings.access_token_ttl,
                refresh_ttl=settings.refresh_token_ttl,
            ),
            limiter=login_limiter(settings.redis_url),
            revocations=revocations(settings.redis_url),
            bus=bus(settings.redis_url, settings.namespace),
            fanout=FanOut(cluster),
        )

    async def ask(self, kind: str, entity_id: str, message_type: str, body: dict | None = None) -> Any:
        return await self.cluster.ask(kind, entity_id, message_type, body)


def _arena(request: Request) -> Arena:
    return request.app.state.arena


ArenaDep = Annotated[Arena, Depends(_arena)]
_bearer = HTTPBearer(auto_error=False)


async def _caller(
    arena: ArenaDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller | None:
    if credentials is None:
        return None
    return await authenticate(arena, credentials.credentials)


async def authenticate(arena: Arena, token: str) -> Caller:
    unauthorized = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    try:
        caller = arena.tokens.caller(token)
    except InvalidToken as error:
        raise Problem(401, str(error), headers=unauthorized) from None
    if await arena.revocations.is_revoked(caller.jti, caller.id, caller.issued_at):
        raise Problem(401, "the access token was revoked; sign in again", headers=unauthorized)
    return caller


async def _required(caller: Annotated[Caller | None, Depends(_caller)]) -> Caller:
    if caller is None:
        raise Problem(401, "sign in first: send Authorization: Bearer <access token>", headers={"WWW-Authenticate": "Bearer"})
    return caller


CallerDep = Annotated[Caller, Depends(_required)]
OptionalCallerDep = Annotated[Caller | None, Depends(_caller)]
