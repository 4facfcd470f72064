"""A user's notifications: unread count, read marks, muted types."""

from __future__ import annotations

from actors.events import RACE_RESULT
from actors.paging import page
from engine.entity import Entity, query, update
from engine.errors import Rejected
from engine.events import Event, To, react

__all__ = ["Inbox", "NOTIFICATION_TYPES", "INBOX_LENGTH"]

NOTIFICATION_TYPES = ("follower", "follow_request", "follow_accepted", "kudos", "comment", "race_result")
INBOX_LENGTH = 500


class Inbox(Entity):
    kind = "inbox"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.items: list[dict] = []  # newest first
        self.unread = 0
        self.muted: list[str] = []

    @update
    def notify(self, notification_id: str, type: str, data: dict) -> dict | None:
        """Store a notification; ``None`` when its type is muted."""
        if type not in NOTIFICATION_TYPES:
            raise Rejected(f"unknown notification type {type!r}")
        if type in self.muted:
            return None
        item = {"id": notification_id, "type": type, "data": data, "at": self.now, "read": False}
        self.items.insert(0, item)
        self.unread += 1
        for dropped in self.items[INBOX_LENGTH:]:
            self.unread -= not dropped["read"]
        del self.items[INBOX_LENGTH:]
        return item

    @react(RACE_RESULT, to=To.field("user_id"))
    def on_race_result(self, event: Event) -> None:
        result = event.fields["result"]
        item = self.notify(
            event.id, "race_result", {"race_id": event.fields["race_id"], "place": result["place"],
                                      "status": result["status"]}
        )  # fmt: skip
        if item is not None:  # live, to the athlete's open connections (engine.notices)
            self.notice({"type": "notification", "notification": item})

    @update
    def mark_read(self, ids: list[str] | None = None) -> int:
        """Mark these (or, with no ids, all) as read; returns the unread count."""
        wanted = None if ids is None else set(ids)
        for item in self.items:
            if not item["read"] and (wanted is None or item["id"] in wanted):
                item["read"] = True
                self.unread -= 1
        return self.unread

    @update
    def set_muted(self, type: str, muted: bool) -> list[str]:
        if type not in NOTIFICATION_TYPES:
            raise Rejected(f"unknown notification type {type!r}; one of {', '.join(NOTIFICATION_TYPES)}")
        if muted and type not in self.muted:
            self.muted.append(type)
        elif not muted and type in self.muted:
            self.muted.remove(type)
        return self.muted

    @query
    def browse(self, before: list | None = None, limit: int = 20, unread_only: bool = False) -> dict:
        items = [i for i in self.items if not i["read"]] if unread_only else self.items
        return {**page(items, before, limit), "unread": self.unread, "muted": self.muted}
