"""The bus this deployment uses: Redis pub/sub when Redis is configured, else the Ray actor's event log."""

from __future__ import annotations

from engine.bus import Bus
from engine.bus.event_log import RayBus

__all__ = ["bus"]


def bus(redis_url: str | None, namespace: str) -> Bus:
    """Redis pub/sub when Redis is configured, else the Ray actor of this namespace."""
    if redis_url:
        from persistence.redis_bus import RedisBus  # late: Redis's client loads only where it is used

        return RedisBus(redis_url)
    return RayBus(namespace=namespace)
