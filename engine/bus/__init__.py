"""The bus: live per-user events, delivered to whichever process holds the user's open connections.

Transports: Redis pub/sub (``persistence.redis_bus``) across processes and machines, or a
Ray actor's event log (``engine.bus.event_log``) without Redis; both fan events out to
their local subscribers through ``engine.bus.fanout``. ``serve.bus`` picks one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

__all__ = ["Bus"]


class Bus(Protocol):
    async def publish(self, user_id: str, event: dict) -> None:
        """Send ``event`` to every subscriber of ``user_id``, on any replica."""

    async def publish_many(self, events: list[tuple[str, dict]]) -> None:
        """``publish`` of each ``(user_id, event)``, in one move where the transport can."""

    def subscribe(self, user_id: str) -> AbstractAsyncContextManager[AsyncIterator[dict]]:
        """Events of ``user_id`` published from now on, until the context exits."""

    async def aclose(self) -> None: ...
