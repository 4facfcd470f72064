"""The route library: one shard of the directory of routes that are not private (``r00``..``r15``, by id).

Each shard keeps the cards ``route.listed`` brings (a private or deleted route is dropped) and an
index of their start points by H3 cell (resolution 5, as the group directory's), rebuilt from the
cards on activation, never snapshotted. A search filters by region or distance from a point, sport,
surface, distance and climb ranges, and answers one keyset page: nearest first with a point,
else newest first. Bounded: ``ENTRIES_MOST`` routes a shard (a new listing past that is declined).
"""

from __future__ import annotations

from typing import Any

from actors.erasing import relist
from actors.events import ROUTE_LISTED
from actors.places import MAX_RADIUS_KM, cells_near, distance_km
from engine.entity import Entity, query
from engine.errors import Rejected
from engine.events import Event, To, react

__all__ = ["RouteDirectory", "ENTRIES_MOST", "PAGE_MOST"]

ENTRIES_MOST = 50_000  # 800,000 listed routes over 16 shards; a card is about 300 bytes
PAGE_MOST = 100
_KEPT = (
    "owner",
    "name",
    "sport",
    "surface",
    "visibility",
    "distance_m",
    "elevation_gain_m",
    "elevation_loss_m",
    "start_point",
    "region",
    "created",
)


class RouteDirectory(Entity):
    kind = "route_directory"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.entries: dict[str, dict] = {}  # route id -> card
        self._cells: dict[str, set[str]] = {}  # H3 cell of the start -> route ids

    def snapshot(self) -> Any:
        return {"entries": self.entries}

    def restore(self, state: Any) -> None:
        for route_id, card in state["entries"].items():
            self._put(route_id, card)

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their routes leave with them; another card that names them stays under the stand-in."""
        relist(self.entries, self._drop, self._put, user_id, stand_in, gone=lambda card: card.get("owner") == user_id)
        return False

    def _put(self, route_id: str, card: dict) -> None:
        self.entries[route_id] = card
        self._cells.setdefault(card["region"], set()).add(route_id)

    def _drop(self, route_id: str) -> None:
        card = self.entries.pop(route_id, None)
        if card is not None:
            ids = self._cells.get(card["region"], set())
            ids.discard(route_id)
            if not ids:
                self._cells.pop(card["region"], None)

    @react(ROUTE_LISTED, to=To.field("directory"))
    def on_listed(self, event: Event) -> None:
        route_id, card = event.fields["route_id"], event.fields["card"]
        self._drop(route_id)
        if card is None or card["visibility"] == "private":
            return
        if len(self.entries) >= ENTRIES_MOST:
            raise Rejected("this directory shard is full")
        self._put(route_id, {field: card[field] for field in _KEPT})

    @query
    def search(
        self,
        near: list[float] | None = None,
        radius_km: float = 25.0,
        region: str | None = None,
        sport: str | None = None,
        surface: str | None = None,
        distance_m: list | None = None,
        elevation_gain_m: list | None = None,
        after: list | None = None,
        limit: int = 20,
    ) -> list[dict]:
        """Up to ``limit`` cards past the key ``after`` (``[distance_km or -created, id]``), each with its
        ``key`` and ``distance_km`` (near). Ranges are ``[low, high]``, either null for open."""
        if near is not None and not 0 < radius_km <= MAX_RADIUS_KM:
            raise Rejected(f"a radius is more than 0 and at most {MAX_RADIUS_KM:g} km")
        limit = max(1, min(int(limit), PAGE_MOST))
        if near is not None:
            pool = {r for cell in cells_near(near[0], near[1], radius_km) for r in self._cells.get(cell, ())}
        elif region is not None:
            pool = set(self._cells.get(region, ()))
        else:
            pool = set(self.entries)

        def within(value: float, bounds: list | None) -> bool:
            low, high = bounds if bounds else (None, None)
            return (low is None or value >= low) and (high is None or value <= high)

        found = []
        for route_id in pool:
            card = self.entries[route_id]
            if region is not None and card["region"] != region:
                continue
            if sport is not None and card["sport"] != sport:
                continue
            if surface is not None and card["surface"] != surface:
                continue
            if not (within(card["distance_m"], distance_m) and within(card["elevation_gain_m"], elevation_gain_m)):
                continue
            away = None
            if near is not None:
                away = round(distance_km(near, card["start_point"]), 3)
                if away > radius_km:
                    continue
            key = [away if away is not None else -card["created"], route_id]
            if after is not None and (key[0], key[1]) <= (after[0], after[1]):
                continue
            found.append({"id": route_id, **card, "distance_km": away, "key": key})
        found.sort(key=lambda item: (item["key"][0], item["key"][1]))
        return found[:limit]
