"""Notices: what an entity tells whoever listens to it (a race's countdown, its start, its finish).

An ``@update`` handler calls ``Entity.notice``; the host publishes the notices once the
message is journaled, never while it replays the journal. They travel on the cluster's
notice log (a ``RayBus`` of its own, ``NOTICE_LOG``, in the cluster's Ray namespace), on
one channel per entity; a listener subscribes by the entity's address
(``engine.cluster.Cluster.notices``). At most once: a notice published while nobody
listens, or lost with a host killed between its commit and its publish, is not sent again,
so a listener that starts late asks the entity where it stands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from engine.bus import Bus

__all__ = ["NOTICE_LOG", "Publish", "channel", "publisher"]

NOTICE_LOG = "arena-notices"

Publish = Callable[[list[tuple[str, str, list[dict]]]], Awaitable[None]]  # [(kind, entity id, notices)]


def channel(kind: str, entity_id: str) -> str:
    return f"{kind}/{entity_id}"


def publisher(bus: Bus) -> Publish:
    """Notices published on ``bus``, each on its entity's channel: a group commit's notices together
    (a badge told to 100,000 followers' inboxes is a few calls, not 100,000)."""

    async def publish(batch: list[tuple[str, str, list[dict]]]) -> None:
        await bus.publish_many([(channel(kind, entity_id), n) for kind, entity_id, notices in batch for n in notices])

    return publish
