"""A group's feed: its posts and its members' workouts, newest first, bounded.

Both arrive as domain events, each applied once: ``group.posted`` from the post, and
``group.workout_shared``, which the athlete's ``UserGroups`` sends to each of their groups for
every workout that is not private. The feed keeps copies (cards); the API drops at read time what has
since been deleted, made private, or that the reader may not see under the athlete's own rules
(a followers-only workout shows to the members who follow its athlete). A member who leaves
takes their workouts out of the feed (``group.left``); their posts stay until deleted.
"""

from __future__ import annotations

from actors.erasing import pseudonymise, without_in_feed
from actors.events import GROUP_EVENT_TOGETHER, GROUP_LEFT, GROUP_POSTED, GROUP_WORKOUT_SHARED
from actors.group_event import together_card
from actors.group_post import ERASED_POST
from actors.paging import page
from engine.entity import Entity, query, update
from engine.events import Event, To, react

__all__ = ["GroupFeed", "GROUP_FEED_LENGTH", "ACTIVE_DAYS"]

GROUP_FEED_LENGTH = 1_000
ACTIVE_DAYS = 7  # "activity" in discovery: items in the feed of the last week
_EXCERPT = 280


class GroupFeed(Entity):
    kind = "group_feed"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.items: list[dict] = []  # newest first: {"id", "at", "type": "post" | "workout", ...}

    @update
    def push(self, item: dict) -> None:
        if any(existing["id"] == item["id"] for existing in self.items[:50]):
            return  # the API's own push and the event's: one item
        self.items.insert(0, item)
        self.items.sort(key=lambda i: (i["at"], i["id"]), reverse=True)
        del self.items[GROUP_FEED_LENGTH:]

    @update
    def drop(self, item_id: str) -> None:
        self.items = [i for i in self.items if i["id"] != item_id]

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their workouts leave the feed, as when they leave the group; their posts stay as the post keeps
        them (a placeholder with no author; the API drops one since deleted); "together" cards lose them."""
        posts = [{**item, "owner": "", "owner_name": None, "text": ERASED_POST} if item.get("owner") == user_id
                 and item["type"] == "post" else item for item in self.items]  # fmt: skip
        self.items = without_in_feed(posts, user_id)
        return pseudonymise(self, user_id, stand_in)

    @react(GROUP_POSTED, to=To.field("group_id"))
    def on_posted(self, event: Event) -> None:
        fields = event.fields
        self.push(
            {
                "id": fields["post_id"],
                "type": "post",
                "at": event.at,
                "owner": fields["author"],
                "owner_name": fields["author_name"],
                "text": fields["text"][:_EXCERPT],
            }
        )

    @react(GROUP_WORKOUT_SHARED, to=To.field("group_id"))
    def on_workout(self, event: Event) -> None:
        summary = event.fields["summary"]
        self.push(
            {
                "id": event.fields["workout_id"],
                "type": "workout",
                "at": summary["start"],
                "owner": event.fields["owner"],
                "owner_name": event.fields["owner_name"],
                **{k: summary.get(k) for k in ("sport", "title", "distance_m", "moving_s", "elevation_gain_m")},
                "visibility": event.fields["visibility"],
            }
        )

    @react(GROUP_EVENT_TOGETHER, to=To.field("group_id"))
    def on_together(self, event: Event) -> None:
        """Who else did one of the group's events: on the card of the athlete's workout."""
        for item in self.items:
            if item["id"] == event.fields["workout_id"] and item["type"] == "workout":
                item["together"] = together_card(event.fields)
                return

    @react(GROUP_LEFT, to=To.field("group_id"))
    def on_left(self, event: Event) -> None:
        gone = event.fields["user_id"]
        self.items = [i for i in self.items if not (i["type"] == "workout" and i["owner"] == gone)]

    @query
    def read(self, before: list | None = None, limit: int = 20) -> dict:
        return page(self.items, before, limit)

    @query
    def activity(self) -> int:
        """Items of the last ``ACTIVE_DAYS`` days."""
        since = self.now - ACTIVE_DAYS * 86_400
        return sum(1 for item in self.items if since <= item["at"] <= self.now + 86_400)
