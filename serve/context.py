"""What every route needs, built once per replica, and the request dependencies."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.cluster import Cluster
from engine.errors import NotFound
from engine.ray_host import HostSpec
from serve.auth import Caller, InvalidToken, Passwords, Tokens
from serve.bus import Bus, bus
from serve.fanout import FanOut
from serve.kinds import KINDS
from serve.problems import Problem
from serve.ratelimit import LoginLimiter, login_limiter
from serve.revocation import Revocations, revocations
from serve.settings import Settings
from serve.spectators import Spectators

__all__ = ["Arena", "ArenaDep", "CallerDep", "EntityId", "OptionalCallerDep", "connect", "new_id"]

EntityId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


log = logging.getLogger(__name__)


def connect(settings: Settings) -> Cluster:
    """The engine's hosts for these settings (created on first use, shared by every process)."""
    spec = HostSpec(settings.database_url, KINDS, settings.host_config(), hosts=settings.hosts, shards=settings.shards)
    return Cluster(spec, namespace=settings.namespace, node_resource=settings.host_resource)


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
    spectators: Spectators = field(init=False)
    _background: set[asyncio.Task] = field(default_factory=set)
    _races: set[str] = field(default_factory=set)  # race ids known to exist

    def __post_init__(self) -> None:
        self.spectators = Spectators(self.race, tick=self.settings.spectator_tick)

    @classmethod
    def build(cls, settings: Settings) -> Arena:
        cluster = connect(settings)
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

    async def race(self, race_id: str, message_type: str, body: dict | None = None) -> Any:
        """Ask a race, after making sure it exists: an unknown id must not start a dedicated host."""
        if race_id not in self._races:
            if not await self.ask("race_ref", race_id, "exists"):
                raise NotFound("no such race")
            self._races.add(race_id)
        return await self.ask("race", race_id, message_type, body)

    def spawn(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        """Run ``work`` after the response; failures are logged, and ``drain`` waits for it."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)

        def done(task: asyncio.Task) -> None:
            self._background.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed: %s", what, task.exception(), exc_info=task.exception())

        task.add_done_callback(done)

    async def drain(self) -> None:
        """Wait for background work (fan-outs, published results) to finish."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        await self.fanout.drain()


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
        raise Problem(
            401, "sign in first: send Authorization: Bearer <access token>", headers={"WWW-Authenticate": "Bearer"}
        )
    return caller


CallerDep = Annotated[Caller, Depends(_required)]
OptionalCallerDep = Annotated[Caller | None, Depends(_caller)]
