"""What every route needs, built once per replica, and the request dependencies."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from actors.race import SETTLED, RaceRef
from engine.cluster import Cluster
from engine.errors import NotFound, Rejected
from engine.ray_host import HostSpec
from serve.addresses import TrustedProxies
from serve.auth import Caller, InvalidToken, Passwords, Tokens
from serve.bus import Bus, bus
from serve.fanout import FanOut
from serve.kinds import KINDS
from serve.problems import Problem
from serve.ratelimit import LoginLimiter, login_limiter
from serve.revocation import Revocations, revocations
from serve.settings import Settings
from serve.spectators import Spectators
from serve.throttle import Throttle

__all__ = ["Arena", "ArenaDep", "CallerDep", "EntityId", "OptionalCallerDep", "connect", "new_id"]

EntityId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


log = logging.getLogger(__name__)
# What athletes and devices send a race: its hot path, and refused without its host once it is settled.
_LIVE_WRITES = frozenset({"ingest", "join", "join_many", "withdraw", "bind_device", "signal"})


def connect(settings: Settings) -> Cluster:
    """The engine's hosts for these settings (created on first use, shared by every process)."""
    spec = HostSpec(settings.database_url, KINDS, settings.host_config(), hosts=settings.hosts, shards=settings.shards)
    return Cluster(
        spec,
        namespace=settings.namespace,
        node_resource=settings.host_resource,
        max_dedicated=settings.race_hosts_max,
    )


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
    throttle: Throttle
    trusted_proxies: TrustedProxies = field(default_factory=TrustedProxies)
    spectators: Spectators = field(init=False)
    _background: set[asyncio.Task] = field(default_factory=set)
    _races: dict[str, tuple[str | None, float]] = field(default_factory=dict)  # id → (settled status, checked at)

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
            limiter=login_limiter(settings.redis_url, settings.namespace),
            revocations=revocations(settings.redis_url, cluster.ask),
            bus=bus(settings.redis_url, settings.namespace),
            fanout=FanOut(cluster),
            throttle=Throttle.build(settings),
            trusted_proxies=TrustedProxies(settings.proxy_networks()),
        )

    async def ask(self, kind: str, entity_id: str, message_type: str, body: dict | None = None) -> Any:
        return await self.cluster.ask(kind, entity_id, message_type, body)

    async def race(self, race_id: str, message_type: str, body: dict | None = None) -> Any:
        """Ask a race, after making sure it exists: an unknown id must not start a dedicated host.

        A settled race (final or cancelled) is read from its record on the shared hosts
        (``RaceRef``), so no read starts its host; a change to it (an organizer's correction)
        goes to the race, starting its host if it had stopped, and the record is taken again.
        """
        hot = message_type in _LIVE_WRITES
        settled = await self._settled(race_id, trust_recent=hot or message_type in RaceRef.READS)
        if settled is not None:
            if message_type in RaceRef.READS or message_type == "privacy":
                return await self.ask("race_ref", race_id, message_type, body)
            if hot:
                raise Rejected(f"the race is {settled}: only its organizer's corrections change it now")
        answer = await self.ask("race", race_id, message_type, body)
        if settled is not None or message_type in ("finalize", "cancel"):
            await self.settle(race_id)
        elif message_type in ("info", "view") and answer.get("status") in SETTLED:  # settled by another replica
            await self.settle(race_id)
        return answer

    async def _settled(self, race_id: str, *, trust_recent: bool) -> str | None:
        """The race's settled status (None while it is not settled); NotFound for an unknown id.

        Settled is for good. Reads and the live hot path trust a "not settled" checked less than
        a moment ago (a quarter of the time a settled race's host stays up idle, at most 2 s), so
        a race settled through another replica is read from its record before its host stops."""
        known = self._races.get(race_id)
        now = time.monotonic()
        if known is not None and (known[0] is not None or (trust_recent and now - known[1] < self._recheck_after)):
            return known[0]
        state = await self.ask("race_ref", race_id, "state")
        if not state["exists"]:
            raise NotFound("no such race")
        self._races[race_id] = (state["status"], now)
        return state["status"]

    @property
    def _recheck_after(self) -> float:
        return min(2.0, self.settings.race_host_idle / 4)

    async def settle(self, race_id: str) -> None:
        """Take a settled race's record again: its answers to every read, kept by its ``RaceRef``."""
        answers = await asyncio.gather(*(self.ask("race", race_id, read) for read in RaceRef.READS))
        record = dict(zip(RaceRef.READS, answers, strict=True))
        status = record["info"]["status"]
        if status in SETTLED:
            await self.ask("race_ref", race_id, "settle", {"record": record})
            self._races[race_id] = (status, time.monotonic())

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
