"""A user's activity feed: items fanned out on write by the people they follow."""

from __future__ import annotations

from actors.account import Account
from actors.erasing import pseudonymise, without_in_feed
from actors.events import GROUP_EVENT_TOGETHER, WORKOUT_RECORDED
from actors.group_event import together_card
from actors.paging import page
from engine.entity import Entity, query, update
from engine.events import Event, To, react

__all__ = ["Feed", "FEED_LENGTH"]

FEED_LENGTH = 1_000  # older items fall off; the workouts themselves stay


class Feed(Entity):
    kind = "feed"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.items: list[dict] = []  # newest first: {"id", "at", "owner", ...card fields}

    @update
    def push(self, item: dict) -> None:
        if any(existing["id"] == item["id"] for existing in self.items[:50]):
            return  # a repeated fan-out (a retry) adds nothing
        self.items.insert(0, item)
        self.items.sort(key=lambda i: (i["at"], i["id"]), reverse=True)
        del self.items[FEED_LENGTH:]

    @react(
        WORKOUT_RECORDED,
        to=(To.field("owner"), To.ask(Account, "owner", Account.ids, which="followers")),
        when=lambda fields: fields["visibility"] != "private",
    )
    def on_workout(self, event: Event) -> None:
        """Fan-out on write: the owner's feed and each follower's get the workout's card."""
        summary = event.fields["summary"]
        self.push(
            {
                "id": event.fields["workout_id"],
                "at": summary["start"],
                "owner": event.fields["owner"],
                "owner_name": event.fields["owner_name"],
                **{k: summary.get(k) for k in ("sport", "title", "distance_m", "moving_s", "elapsed_s")},
                "visibility": event.fields["visibility"],
            }
        )

    @react(GROUP_EVENT_TOGETHER, to=(To.field("user_id"), To.ask(Account, "user_id", Account.ids, which="followers")))
    def on_together(self, event: Event) -> None:
        """Who else did a group event: on the card of the athlete's workout, where this feed holds it."""
        for item in self.items:
            if item["id"] == event.fields["workout_id"]:
                item["together"] = together_card(event.fields)
                return

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """The person's own feed goes whole; in a follower's, their cards go and others' cards stay."""
        if user_id in self.id:
            return True
        self.items = without_in_feed(self.items, user_id)
        return pseudonymise(self, user_id, stand_in)

    @update
    def drop_owner(self, owner: str) -> None:
        """Unfollowing or blocking someone takes their items out."""
        self.items = [i for i in self.items if i["owner"] != owner]

    @query
    def read(self, before: list | None = None, limit: int = 20) -> dict:
        return page(self.items, before, limit)
