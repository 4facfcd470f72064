"""A user's notifications: unread count, read marks, muted types."""

from __future__ import annotations

from actors.account import Account
from actors.events import BADGE_AWARDED, RACE_RESULT
from actors.paging import page
from engine.entity import Entity, query, update
from engine.errors import Rejected
from engine.events import Event, To, react

__all__ = ["Inbox", "NOTIFICATION_TYPES", "INBOX_LENGTH"]

NOTIFICATION_TYPES = (
    "follower",
    "follow_request",
    "follow_accepted",
    "kudos",
    "comment",
    "race_result",
    "badge",  # a badge of my own
    "friend_badge",  # a badge of someone I follow
)
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
        self._tell(
            event.id, "race_result", {"race_id": event.fields["race_id"], "place": result["place"],
                                      "status": result["status"]}
        )  # fmt: skip

    @react(
        BADGE_AWARDED,
        to=(To.field("user_id"), To.ask(Account, "user_id", Account.ids, which="followers")),
        when=lambda fields: not fields["backfill"],  # a badge found in old history is no news to friends
    )
    def on_badge_awarded(self, event: Event) -> None:
        fields = event.fields
        kind = "badge" if fields["user_id"] == self.id else "friend_badge"
        self._tell(event.id, kind, {k: fields[k] for k in ("user_id", "user_name", "badge", "title")})

    def _tell(self, notification_id: str, type: str, data: dict) -> None:
        item = self.notify(notification_id, type, data)
        if item is not None:  # live, to the user's open connections (engine.notices)
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

    @update
    def set_mutes(self, types: list[str]) -> list[str]:
        """Mute exactly these types (every other one is heard)."""
        unknown = sorted(set(types) - set(NOTIFICATION_TYPES))
        if unknown:
            raise Rejected(f"unknown notification type(s) {', '.join(unknown)}; one of {', '.join(NOTIFICATION_TYPES)}")
        self.muted = [t for t in NOTIFICATION_TYPES if t in types]
        return self.muted

    @query
    def muted_types(self) -> list[str]:
        return self.muted

    @query
    def browse(self, before: list | None = None, limit: int = 20, unread_only: bool = False) -> dict:
        items = [i for i in self.items if not i["read"]] if unread_only else self.items
        return {**page(items, before, limit), "unread": self.unread, "muted": self.muted}
