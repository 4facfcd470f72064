"""One athlete's routes: those they made (from ``route.listed``) and those of others they saved.

Bounded: ``OWN_MOST`` routes of their own (the API refuses a new one past that) and ``SAVED_MOST``
saved ones (saving one more is refused). Saved routes are kept by id and time alone: the API reads
each route's card live, so a route renamed, hidden or deleted since shows as it is now.
"""

from __future__ import annotations

from actors.events import ROUTE_LISTED
from actors.paging import page
from engine.entity import Entity, query, update
from engine.errors import Rejected
from engine.events import Event, To, react

__all__ = ["RouteLibrary", "OWN_MOST", "SAVED_MOST"]

OWN_MOST = 1_000
SAVED_MOST = 1_000


class RouteLibrary(Entity):
    kind = "route_library"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.own: dict[str, float] = {}  # route id -> created
        self.saved: dict[str, float] = {}  # route id -> when saved

    @react(ROUTE_LISTED, to=To.field("owner"))
    def on_listed(self, event: Event) -> None:
        route_id, card = event.fields["route_id"], event.fields["card"]
        if card is None:
            self.own.pop(route_id, None)
        else:
            self.own[route_id] = card["created"]

    @query
    def room(self) -> bool:
        """Whether one more route of their own fits."""
        return len(self.own) < OWN_MOST

    @update
    def save(self, route_id: str) -> bool:
        """True when newly saved; saving a saved route again changes nothing."""
        if route_id in self.saved:
            return False
        if len(self.saved) >= SAVED_MOST:
            raise Rejected(f"at most {SAVED_MOST:,} routes can be saved: unsave some first")
        self.saved[route_id] = self.now
        return True

    @update
    def unsave(self, route_id: str) -> bool:
        return self.saved.pop(route_id, None) is not None

    @query
    def is_saved(self, route_id: str) -> bool:
        return route_id in self.saved

    @query
    def routes(self, which: str = "mine", before: list | None = None, limit: int = 20) -> dict:
        """A newest-first page of ``{"id", "at"}``: ``mine`` by creation, ``saved`` by when saved."""
        if which not in ("mine", "saved"):
            raise Rejected("which is mine or saved")
        chosen = self.own if which == "mine" else self.saved
        items = sorted(({"id": r, "at": at} for r, at in chosen.items()), key=lambda i: (i["at"], i["id"]))
        return page(items[::-1], before, limit)
