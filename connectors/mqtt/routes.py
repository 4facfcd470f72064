"""Each device's route (its owner, its race, whether it is revoked), cached by the hub.

A route is kept ``ttl`` seconds. Past half its life one lookup renews it in the background
while the device streams on, so a steady device never waits, and a revocation still lands
within ``ttl``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from engine.errors import EngineError, NotFound

__all__ = ["Lookup", "Routes"]

log = logging.getLogger(__name__)

Lookup = Callable[[str], Awaitable[dict | None]]  # device id → its route, None for an unknown device


class Routes:
    def __init__(
        self,
        lookup: Lookup,
        ttl: float,
        spawn: Callable[[Awaitable[None]], None],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self._monotonic = monotonic  # a test's clock, moved by hand, ages routes without waiting
        self._lookup = lookup
        self._spawn = spawn
        self._routes: dict[str, tuple[float, dict | None]] = {}  # device → (fresh until, route)
        self._refreshing: set[str] = set()

    def cached(self, device_id: str) -> tuple[bool, dict | None]:
        """``(True, route)`` when a fresh route is in hand (renewed in the background past half its
        life), else ``(False, None)``: ``resolve`` it."""
        cached, now = self._routes.get(device_id), self._monotonic()
        if cached is None or cached[0] <= now:
            return False, None
        if cached[0] - now < self.ttl / 2 and device_id not in self._refreshing:
            self._refreshing.add(device_id)
            self._spawn(self._refresh(device_id))
        return True, cached[1]

    async def resolve(self, device_id: str) -> dict | None:
        cached = self._routes.get(device_id)
        if cached is not None and cached[0] > self._monotonic():
            return cached[1]
        return await self.lookup(device_id)

    async def lookup(self, device_id: str) -> dict | None:
        """Ask for the device's route and keep it ``ttl`` seconds."""
        try:
            route = await self._lookup(device_id)
        except NotFound:
            route = None
        self._routes[device_id] = (self._monotonic() + self.ttl, route)
        return route

    async def _refresh(self, device_id: str) -> None:
        try:
            await self.lookup(device_id)
        except EngineError as error:  # the route in hand stays until it expires
            log.warning("device %s route refresh failed: %s", device_id, error)
        finally:
            self._refreshing.discard(device_id)
