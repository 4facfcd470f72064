"""What every route needs, built once per replica, and the request dependencies."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from actors.race_client import RaceClient
from engine.bus import Bus
from engine.cluster import Cluster
from engine.entity import Entity
from engine.errors import EngineError
from engine.login_limits import LoginLimiter
from engine.ray_host import HostSpec
from engine.refs import Ref
from engine.revocations import Revocations
from serve.addresses import TrustedProxies
from serve.auth import Caller, InvalidToken, Passwords, Tokens
from serve.bus import bus
from serve.kinds import KINDS, OPEN_STORE
from serve.problems import Problem
from serve.ratelimit import login_limiter
from serve.revocation import revocations
from serve.settings import Settings
from serve.spectators import Spectators
from serve.throttle import Throttle

__all__ = ["Arena", "ArenaDep", "CallerDep", "EntityId", "OptionalCallerDep", "connect", "new_id"]

EntityId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


log = logging.getLogger(__name__)
E = TypeVar("E", bound=Entity)


def connect(settings: Settings) -> Cluster:
    """The engine's hosts for these settings (created on first use, shared by every process)."""
    spec = HostSpec(
        settings.database_url,
        KINDS,
        settings.host_config(),
        hosts=settings.hosts,
        shards=settings.shards,
        open_store=OPEN_STORE,
    )
    cluster = Cluster(
        spec,
        namespace=settings.namespace,
        node_resource=settings.host_resource,
        max_dedicated=settings.race_hosts_max,
    )
    cluster.start_notices()  # before any race's gun (engine.notices)
    cluster.start_relay(settings.streams())  # domain events to their reactions (engine.relay)
    return cluster


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
    throttle: Throttle
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    races: RaceClient = field(init=False)
    spectators: Spectators = field(init=False)
    _background: set[asyncio.Task] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.races = RaceClient(self.cluster, host_idle=self.settings.race_host_idle)
        self.spectators = Spectators(self.races.ref, tick=self.settings.spectator_tick)

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
            limiter=login_limiter(settings.redis_url, settings.namespace),
            revocations=revocations(settings.redis_url, cluster.ask),
            bus=bus(settings.redis_url, settings.namespace),
            throttle=Throttle.build(settings),
            trusted_proxies=TrustedProxies(settings.proxy_networks()),
        )

    def ref(self, cls: type[E], entity_id: str) -> Ref[E]:
        """The entity, asked by its handlers (a race: through ``races.ref``)."""
        return self.cluster.ref(cls, entity_id)

    async def ask(self, kind: str, entity_id: str, message_type: str, body: dict | None = None) -> Any:
        return await self.cluster.ask(kind, entity_id, message_type, body)

    async def answers(self, envelopes: list[tuple]) -> list[Any]:
        """Several entities asked in one batched call; the first error one of them answered is raised."""
        answers = await self.cluster.deliver(envelopes)
        for answer in answers:
            if isinstance(answer, EngineError):
                raise answer
        return answers

    async def race(self, race_id: str, message_type: str, body: dict | None = None) -> Any:
        """Ask a race through ``races``: an unknown id or a settled race never starts its host."""
        return await self.races.ask(race_id, message_type, body)

    def spawn(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        """Run ``work`` after the response; failures are logged, and ``drain`` waits for it."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)

        def done(task: asyncio.Task) -> None:
            self._background.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("%s failed: %s", what, task.exception(), exc_info=task.exception())

        task.add_done_callback(done)

    async def drain(self, events_timeout: float = 60.0) -> bool:
        """Wait for background work to finish and for the relay to deliver the domain events emitted so
        far (feeds fanned out, race results in workouts); False if the relay had not within the timeout."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)
        try:
            return await self.cluster.relay().settle.remote(events_timeout)
        except Exception as error:  # no relay (it is restarting): nothing to wait for here
            log.warning("the relay did not answer: %s", error)
            return False


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
    if await arena.revocations.is_revoked(caller.jti, caller.family, caller.id, caller.issued_at):
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
