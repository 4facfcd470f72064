"""Notifications: stored in the recipient's inbox, then pushed live to their open clients."""

from __future__ import annotations

import logging

from actors.inbox import Inbox
from serve.context import Arena, new_id

__all__ = ["notify"]

log = logging.getLogger(__name__)


async def notify(arena: Arena, user_id: str, type: str, data: dict) -> None:
    item = await arena.ref(Inbox, user_id).ask(Inbox.notify, notification_id=new_id(), type=type, data=data)
    if item is None:  # muted
        return
    try:
        await arena.bus.publish(user_id, {"type": "notification", "notification": item})
    except Exception as error:  # the inbox has it; the live push is best effort
        log.warning("live delivery to %s failed: %s", user_id, error)
