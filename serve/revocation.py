"""Revoked access tokens: one token (by id), one session (every token of a sign-in), or a
user's every token issued before an instant (password change).

Access tokens carry their session id (``sid``), so signing out, a detected refresh-token
reuse or a password change reaches every access token of the session, not only the one
presented. Redis when configured (``persistence.redis_revocations``: every replica sees a
revocation at once); otherwise the
engine's ``revocations`` entity, which each replica mirrors in memory and follows about
once a second. Entries expire with the longest-lived access token they could concern.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from engine.revocations import Revocations, user_key

__all__ = ["MemoryRevocations", "EngineRevocations", "revocations"]

log = logging.getLogger(__name__)


class MemoryRevocations:
    """Revocations in this process: for one replica, and the mirror that ``EngineRevocations`` keeps."""

    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[float, float | None]] = {}  # key → (until, before)

    def apply(self, key: str, until: float, before: float | None = None) -> None:
        old = self._entries.get(key)
        if old is not None and before is not None and old[1] is not None:
            until, before = max(until, old[0]), max(before, old[1])
        self._entries[key] = (until, before)
        if len(self._entries) % 1024 == 0:
            now = self._clock()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}

    async def revoke_token(self, jti: str, ttl: float) -> None:
        self.apply(f"jti:{jti}", self._clock() + ttl)

    async def revoke_session(self, sid: str, ttl: float) -> None:
        self.apply(f"sid:{sid}", self._clock() + ttl)

    async def revoke_user(self, user_id: str, before: float, ttl: float) -> None:
        self.apply(user_key(user_id), self._clock() + ttl, before)

    def revoked(self, jti: str, sid: str, user_id: str, issued_at: float) -> bool:
        now = self._clock()
        for key in (f"jti:{jti}", f"sid:{sid}"):
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                return True
        until, before = self._entries.get(user_key(user_id), (0.0, None))
        return until > now and before is not None and issued_at <= before

    async def is_revoked(self, jti: str, sid: str, user_id: str, issued_at: float) -> bool:
        return self.revoked(jti, sid, user_id, issued_at)

    async def aclose(self) -> None:
        self._entries.clear()


class EngineRevocations:
    """Durable in the engine's ``revocations`` entity, mirrored in this replica's memory.

    A replica applies its own revocations at once and learns the others' within
    ``interval`` seconds; it answers nothing until its first copy has arrived. A list
    reset (the entity's version behind ours: a store restored from backup) starts over.
    """

    def __init__(self, ask: Any, *, interval: float = 1.0, clock=time.time) -> None:
        self._ask = ask  # Arena.ask-like: (kind, id, message_type, body) -> answer
        self._interval = interval
        self._clock = clock
        self._mirror = MemoryRevocations(clock)
        self._version = 0
        self._first = asyncio.Lock()
        self._follower: asyncio.Task | None = None

    async def _revoke(self, key: str, ttl: float, before: float | None = None) -> None:
        until = self._clock() + ttl
        await self._ask("revocations", "all", "revoke", {"key": key, "until": until, "before": before})
        self._mirror.apply(key, until, before)

    async def revoke_token(self, jti: str, ttl: float) -> None:
        await self._revoke(f"jti:{jti}", ttl)

    async def revoke_session(self, sid: str, ttl: float) -> None:
        await self._revoke(f"sid:{sid}", ttl)

    async def revoke_user(self, user_id: str, before: float, ttl: float) -> None:
        await self._revoke(user_key(user_id), ttl, before)

    async def is_revoked(self, jti: str, sid: str, user_id: str, issued_at: float) -> bool:
        if self._follower is None:
            # The first copy is fetched before any answer: a failure here is the caller's
            # error (the engine is unavailable, retry), never a revoked token let through.
            async with self._first:
                if self._follower is None:
                    await self.sync()
                    self._follower = asyncio.get_running_loop().create_task(self._follow(), name="arena-revocations")
        return self._mirror.revoked(jti, sid, user_id, issued_at)

    async def sync(self) -> None:
        changes = await self._ask("revocations", "all", "since", {"version": self._version})
        if changes["version"] < self._version:
            self._version = 0
            changes = await self._ask("revocations", "all", "since", {"version": 0})
        for key, (until, before) in changes["entries"].items():
            self._mirror.apply(key, until, before)
        self._version = changes["version"]

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sync()
            except Exception as error:  # the engine restarting: keep the copy we have, try again
                log.warning("revocation list not refreshed: %s", error)

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()


def revocations(redis_url: str | None, ask: Any) -> Revocations:
    if redis_url:
        from persistence.redis_revocations import RedisRevocations  # late: Redis's client loads only where used

        return RedisRevocations(redis_url)
    return EngineRevocations(ask)
