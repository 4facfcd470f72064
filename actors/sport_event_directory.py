"""The event calendar: one shard of the directory of organizers' events (``se0``..``se7``, by id).

Each shard keeps the cards ``sport_event.listed`` brings (a cancelled event leaves) and an index of
the venues by H3 cell (resolution 5, as routes and groups), rebuilt from the cards on activation,
never snapshotted. A search filters by distance from a point (online events have none: they come
only in searches without one), sport and a window of start times, and answers one keyset page,
soonest first. Bounded: ``ENTRIES_MOST`` events a shard; past it the events that ended longest ago
leave, and a new one past that many still to come is declined.
"""

from __future__ import annotations

from typing import Any

from actors.erasing import relist
from actors.events import SPORT_EVENT_LISTED
from actors.places import MAX_RADIUS_KM, cells_near, distance_km
from engine.entity import Entity, query
from engine.errors import Rejected
from engine.events import Event, To, react

__all__ = ["SportEventDirectory", "ENTRIES_MOST", "PAGE_MOST"]

ENTRIES_MOST = 20_000  # 160,000 events over 8 shards; a card is about 400 bytes
PAGE_MOST = 100


class SportEventDirectory(Entity):
    kind = "sport_event_directory"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.entries: dict[str, dict] = {}  # event id -> card
        self._cells: dict[str, set[str]] = {}  # H3 cell of the venue -> event ids

    def snapshot(self) -> Any:
        return {"entries": self.entries}

    def restore(self, state: Any) -> None:
        for event_id, card in state["entries"].items():
            self._put(event_id, card)

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """An event they organize stays listed, organized by the stand-in."""
        relist(self.entries, self._drop, self._put, user_id, stand_in)
        return False

    def _put(self, event_id: str, card: dict) -> None:
        self.entries[event_id] = card
        if card["region"] is not None:
            self._cells.setdefault(card["region"], set()).add(event_id)

    def _drop(self, event_id: str) -> None:
        card = self.entries.pop(event_id, None)
        if card is not None and card["region"] is not None:
            ids = self._cells.get(card["region"], set())
            ids.discard(event_id)
            if not ids:
                self._cells.pop(card["region"], None)

    @react(SPORT_EVENT_LISTED, to=To.field("directory"))
    def on_listed(self, event: Event) -> None:
        event_id, card = event.fields["event_id"], event.fields["card"]
        self._drop(event_id)
        if card is None:
            return
        if len(self.entries) >= ENTRIES_MOST:
            for old in sorted(self.entries.values(), key=lambda c: c["end"])[: len(self.entries) - ENTRIES_MOST + 1]:
                if old["end"] >= self.now:
                    raise Rejected("this calendar shard is full")
                self._drop(old["id"])
        self._put(event_id, card)

    @query
    def search(
        self,
        near: list[float] | None = None,
        radius_km: float = 50.0,
        sport: str | None = None,
        start_from: float | None = None,
        start_to: float | None = None,
        after: list | None = None,
        limit: int = 20,
    ) -> list[dict]:
        """Up to ``limit`` cards past the key ``after`` (``[start, id]``), soonest first, each with its
        ``distance_km`` from ``near``."""
        if near is not None and not 0 < radius_km <= MAX_RADIUS_KM:
            raise Rejected(f"a radius is more than 0 and at most {MAX_RADIUS_KM:g} km")
        limit = max(1, min(int(limit), PAGE_MOST))
        if near is not None:
            pool = {e for cell in cells_near(near[0], near[1], radius_km) for e in self._cells.get(cell, ())}
        else:
            pool = set(self.entries)
        found = []
        for event_id in pool:
            card = self.entries[event_id]
            if sport is not None and card["sport"] != sport:
                continue
            if (start_from is not None and card["start"] < start_from) or (
                start_to is not None and card["start"] > start_to
            ):
                continue
            if after is not None and (card["start"], event_id) <= (after[0], after[1]):
                continue
            away = None
            if near is not None:
                venue = card["venue"]
                away = round(distance_km(near, (venue["lat"], venue["lon"])), 3)
                if away > radius_km:
                    continue
            found.append({**card, "distance_km": away})
        found.sort(key=lambda c: (c["start"], c["id"]))
        return found[:limit]
