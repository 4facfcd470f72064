"""A group's list of events (``<group id>``): one small card per event, kept from
``group_event.listed`` (and pushed by the API too, so its author sees it at once; a card never
replaces a newer revision). The live figures (who is going) are the events' own: the API reads the
page's events in one batched call.

Bounded: ``UPCOMING_MOST`` events not yet over (the API refuses one more) and ``KEPT_MOST`` in all;
past the bound the events that started longest ago leave the list (the events themselves stay).
"""

from __future__ import annotations

from actors.events import GROUP_EVENT_LISTED
from actors.group_event import WINDOW_S, ascending_page
from engine.entity import Entity, query, update
from engine.errors import Rejected
from engine.events import Event, To, react

__all__ = ["GroupEventIndex", "UPCOMING_MOST", "KEPT_MOST"]

UPCOMING_MOST = 100
KEPT_MOST = 500


class GroupEventIndex(Entity):
    kind = "group_event_index"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.cards: dict[str, dict] = {}  # event id -> its card

    def _over(self, card: dict) -> bool:
        return card["start"] + WINDOW_S[1] < self.now

    @update
    def put(self, card: dict) -> None:
        known = self.cards.get(card["id"])
        if known is not None and known["revision"] >= card["revision"]:
            return  # the API's own push and the event's: one card, the newest
        self.cards[card["id"]] = card
        if len(self.cards) > KEPT_MOST:
            oldest = sorted(self.cards.values(), key=lambda c: (c["start"], c["id"]))
            for gone in oldest[: len(self.cards) - KEPT_MOST]:
                del self.cards[gone["id"]]

    @react(GROUP_EVENT_LISTED, to=To.field("group_id"))
    def on_listed(self, event: Event) -> None:
        self.put(event.fields["card"])

    @query
    def upcoming_count(self) -> int:
        return sum(1 for card in self.cards.values() if card["status"] == "scheduled" and not self._over(card))

    @query
    def browse(self, when: str = "upcoming", after: list | None = None, limit: int = 20) -> dict:
        """``upcoming`` (not over yet, soonest first) or ``past`` (latest first), paged by ``[start, id]``."""
        if when not in ("upcoming", "past"):
            raise Rejected("when is upcoming or past")
        items = [card for card in self.cards.values() if self._over(card) == (when == "past")]
        if when == "upcoming":
            items.sort(key=lambda c: (c["start"], c["id"]))
            return ascending_page(items, after, limit, key=("start", "id"))
        items = [{**c, "start": -c["start"]} for c in items]  # latest first: ascending on the negated start
        items.sort(key=lambda c: (c["start"], c["id"]))
        found = ascending_page(items, after, limit, key=("start", "id"))
        return {**found, "items": [{**c, "start": -c["start"]} for c in found["items"]]}
