"""A user's notifications: unread count, read marks, muted types."""

from __future__ import annotations

from actors.account import Account
from actors.events import (
    AUDIENCE_CHANGED,
    BADGE_AWARDED,
    CAMPAIGN_SENT,
    CHALLENGE_COMPLETED,
    GEAR_SUGGESTED,
    GROUP_EVENT_ANSWERED,
    GROUP_EVENT_CANCELLED,
    GROUP_EVENT_CHANGED,
    GROUP_EVENT_REMINDER,
    GROUP_INVITED,
    LEVEL_REACHED,
    RACE_RESULT,
    SPORT_EVENT_CANCELLED,
    SPORT_EVENT_REGISTRATION,
    SPORT_EVENT_REMINDER,
    TRAINING_WARNING,
)
from actors.group_event import GroupEvent
from actors.paging import page
from actors.sport_event import SportEvent
from engine.entity import Entity, query, update
from engine.erasure import mentions
from engine.errors import Rejected
from engine.events import Event, To, react

__all__ = ["Inbox", "NOTIFICATION_TYPES", "INBOX_LENGTH", "MARKETING_CAP", "MARKETING_WINDOW_S"]

NOTIFICATION_TYPES = (
    "follower",
    "follow_request",
    "follow_accepted",
    "kudos",
    "comment",
    "race_result",
    "badge",  # a badge of my own
    "friend_badge",  # a badge of someone I follow
    "level",  # a new level of my own
    "challenge_completed",  # a challenge of my own completed
    "friend_challenge",  # someone I follow completed a challenge
    "group_invitation",  # a group's admin invited me
    "group_event_reminder",  # an event I am going to starts in 24 h, 1 h
    "group_event_changed",  # its time or place changed
    "group_event_cancelled",  # an event I answered was cancelled
    "group_event_promoted",  # a place freed: off the waitlist, going
    "gear_worn",  # an item of my gear is near the end of its life, with replacements (docs/commerce.md)
    "training_warning",  # my training load says rest (docs/training.md)
    "marketing",  # a campaign's news or offer, with my consent (docs/commerce.md)
    "sport_event_reminder",  # an event I registered to starts in 24 h (docs/sport-events.md)
    "sport_event_cancelled",  # an event I registered to was cancelled
    "sport_event_promoted",  # a place freed: off an event's waitlist, registered
)
INBOX_LENGTH = 500
MARKETING_CAP, MARKETING_WINDOW_S = 2, 7 * 86_400  # at most 2 marketing notifications in any 7 days
PROMOTED_S = 7 * 86_400  # a campaign stays the feed's promoted card for a week at most


class Inbox(Entity):
    kind = "inbox"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.items: list[dict] = []  # newest first
        self.unread = 0
        self.muted: list[str] = []
        self.marketing: list[float] = []  # when the last MARKETING_CAP marketing notifications came
        self.capped = 0  # campaigns not delivered for the cap
        self.promoted: dict | None = None  # the newest campaign delivered: the feed's promoted card

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

    @react(LEVEL_REACHED, to=To.field("user_id"))
    def on_level_reached(self, event: Event) -> None:
        fields = event.fields
        self._tell(event.id, "level", {"level": fields["level"], "points": fields["points"]})

    @react(CHALLENGE_COMPLETED, to=(To.field("user_id"), To.ask(Account, "user_id", Account.ids, which="followers")))
    def on_challenge_completed(self, event: Event) -> None:
        fields = event.fields
        kind = "challenge_completed" if fields["user_id"] == self.id else "friend_challenge"
        data = {k: fields[k] for k in ("challenge_id", "user_id", "user_name", "title")}
        self._tell(event.id, kind, {**data, "url": f"/challenges/{fields['challenge_id']}"})

    @react(GROUP_INVITED, to=To.field("user_id"))
    def on_group_invited(self, event: Event) -> None:
        group_id = event.fields["group_id"]
        self._tell(event.id, "group_invitation", {"group_id": group_id, "by": event.fields["by"],
                                                   "url": f"/groups/{group_id}"})  # fmt: skip

    def _tell_event(self, event: Event, type: str, **more: object) -> None:
        card = event.fields["card"]
        data = {name: card[name] for name in ("group_id", "title", "start", "time_zone")}
        self._tell(event.id, type, {**data, "event_id": card["id"], "meeting_point": card["meeting_point"]["label"],
                                    "url": f"/groups/{card['group_id']}#event-{card['id']}", **more})  # fmt: skip

    @react(GROUP_EVENT_REMINDER, to=To.ask(GroupEvent, "event_id", GroupEvent.audience, which="going"))
    def on_group_event_reminder(self, event: Event) -> None:
        self._tell_event(event, "group_event_reminder", lead=event.fields["lead"])

    @react(
        GROUP_EVENT_CHANGED,
        to=To.ask(GroupEvent, "event_id", GroupEvent.audience, which="going"),
        when=lambda fields: bool(fields["moved"]),  # a new title or description is no news
    )
    def on_group_event_changed(self, event: Event) -> None:
        self._tell_event(event, "group_event_changed", moved=event.fields["moved"])

    @react(GROUP_EVENT_CANCELLED, to=To.ask(GroupEvent, "event_id", GroupEvent.audience, which="answered"))
    def on_group_event_cancelled(self, event: Event) -> None:
        self._tell_event(event, "group_event_cancelled")

    @react(GROUP_EVENT_ANSWERED, to=To.field("user_id"), when=lambda fields: fields["promoted"])
    def on_group_event_promoted(self, event: Event) -> None:
        self._tell_event(event, "group_event_promoted")

    def _tell_sport_event(self, event: Event, type: str, **more: object) -> None:
        card = event.fields["card"]
        data = {name: card[name] for name in ("title", "start", "time_zone")}
        self._tell(event.id, type, {**data, "event_id": card["id"], "url": f"/events/{card['id']}", **more})

    @react(SPORT_EVENT_REMINDER, to=To.ask(SportEvent, "event_id", SportEvent.audience, which="registered"))
    def on_sport_event_reminder(self, event: Event) -> None:
        self._tell_sport_event(event, "sport_event_reminder", lead=event.fields["lead"])

    @react(
        SPORT_EVENT_CANCELLED,
        to=To.ask(SportEvent, "event_id", SportEvent.audience, which="cancelled_with_event"),
    )
    def on_sport_event_cancelled(self, event: Event) -> None:
        self._tell_sport_event(event, "sport_event_cancelled")

    @react(SPORT_EVENT_REGISTRATION, to=To.field("user_id"), when=lambda fields: fields["promoted"])
    def on_sport_event_promoted(self, event: Event) -> None:
        self._tell_sport_event(event, "sport_event_promoted", bib=event.fields["registration"]["bib"])

    @react(TRAINING_WARNING, to=To.field("user_id"))
    def on_training_warning(self, event: Event) -> None:
        data = {k: event.fields[k] for k in ("warning", "reason", "day")}
        self._tell(event.id, "training_warning", {**data, "url": "/me/training"})

    @react(GEAR_SUGGESTED, to=To.field("user_id"))
    def on_gear_suggested(self, event: Event) -> None:
        gear = event.fields["gear"]
        data = {k: gear[k] for k in ("name", "type", "used_m", "life_m", "wear")}
        self._tell(event.id, "gear_worn", {**data, "gear_id": event.fields["gear_id"],
                                           "suggestions": event.fields["suggestions"], "url": "/gear"})  # fmt: skip

    @react(CAMPAIGN_SENT, to=To.each("user_ids", alone=True))
    def on_campaign_sent(self, event: Event) -> None:
        recent = [at for at in self.marketing if self.now - at < MARKETING_WINDOW_S]
        if len(recent) >= MARKETING_CAP or "marketing" in self.muted:
            self.capped += len(recent) >= MARKETING_CAP
            return
        self.marketing = [*recent, self.now]
        data = {**event.fields["message"], "campaign_id": event.fields["campaign_id"]}
        self._tell(event.id, "marketing", data)
        self.promoted = {**data, "id": event.id, "at": self.now}

    @react(AUDIENCE_CHANGED, to=To.field("user_id"), when=lambda fields: not fields["consent"])
    def on_consent_withdrawn(self, event: Event) -> None:
        """Marketing consent withdrawn: the feed's promoted card goes at once (the notification stays, read)."""
        self.promoted = None

    @query
    def promotion(self) -> dict | None:
        """The feed's promoted card: the newest campaign delivered here in the last ``PROMOTED_S``, unless
        dismissed, or the ``marketing`` type is muted since. Delivered through the inbox, it has had its caps,
        quiet hours and consent."""
        card = self.promoted
        if card is None or "marketing" in self.muted or self.now - card["at"] > PROMOTED_S:
            return None
        return card

    @update
    def dismiss_promotion(self, campaign_id: str) -> None:
        if self.promoted is not None and self.promoted["campaign_id"] == campaign_id:
            self.promoted = None

    def _tell(self, notification_id: str, type: str, data: dict) -> None:
        item = self.notify(notification_id, type, data)
        if item is not None:  # live, to the user's open connections (engine.notices)
            self.notice({"type": "notification", "notification": item})

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """The person's own inbox goes whole; in another's, the notifications about them go (their kudos,
        comments, badges) and the unread count is the rest's."""
        if user_id in self.id:
            return True
        self.items = [item for item in self.items if not mentions(item, user_id)]
        self.unread = sum(1 for item in self.items if not item["read"])
        return False

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
