"""One route: a named track an athlete can follow again, with its figures, elevation profile and visibility.

Made from an uploaded file or from one of its owner's workouts (the API measures the points with
``actors.route_track.measure``). Every change emits ``route.listed``, which lists it in a directory
shard (unless private) and in its owner's library. Bounded by ``route_track``: 2,000 points, a
200-point profile, a name of ``NAME_LENGTH`` and a description of ``DESCRIPTION_LENGTH`` characters.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection
from typing import Any

import h3

from actors.erasing import pseudonymise
from actors.events import ROUTE_LISTED
from actors.places import INDEX_RESOLUTION
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected

__all__ = [
    "Route",
    "NAME_LENGTH",
    "DESCRIPTION_LENGTH",
    "DIRECTORY_SHARDS",
    "directory_shard",
    "EDITABLE",
    "LINK",
    "link",
    "check_link",
]

NAME_LENGTH = 100
DESCRIPTION_LENGTH = 2_000
DIRECTORY_SHARDS = 16
EDITABLE = ("name", "description", "sport", "surface", "visibility")
LINK = ("id", "name", "sport", "distance_m", "elevation_gain_m")
_CARD = ("sport", "surface", "visibility", "distance_m", "elevation_gain_m", "elevation_loss_m", "start_point")


def directory_shard(route_id: str) -> str:
    """``r00``..``r15``: the directory shard that lists a route (crc32: Python salts ``hash()`` per process)."""
    return f"r{zlib.crc32(route_id.encode()) % DIRECTORY_SHARDS:02d}"


def link(card: dict) -> dict:
    """What a race, a group event or a challenge keeps of the route it uses (its ``linked_route``): taken
    when attached and never refreshed, so reading them asks no route, and a route made private or deleted
    since shows no more than this."""
    return {field: card[field] for field in LINK}


def check_link(value: Any, sports: Collection[str]) -> dict:
    """A link as ``link`` makes it, of one of ``sports`` (any sport when empty; a route of sport ``other``
    fits any), or ``Rejected``."""
    if not isinstance(value, dict) or set(value) != set(LINK):
        raise Rejected(f"a linked route is its {', '.join(LINK)}")
    if not isinstance(value["id"], str) or not 0 < len(value["id"]) <= 64:
        raise Rejected("a linked route's id is 1 to 64 characters")
    if not isinstance(value["name"], str) or len(value["name"]) > NAME_LENGTH:
        raise Rejected(f"a linked route's name is at most {NAME_LENGTH} characters")
    figures = (value["distance_m"], value["elevation_gain_m"])
    if not all(isinstance(f, int | float) and not isinstance(f, bool) and 0 <= f < math.inf for f in figures):
        raise Rejected("a linked route's distance and climb are metres")
    if sports and value["sport"] != "other" and value["sport"] not in sports:
        raise Rejected(f"this route is for {value['sport']}, not {' or '.join(sports)}: pick a route of that sport")
    return value


class Route(Entity):
    kind = "route"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.card: dict[str, Any] | None = None  # what lists show
        self.points: list[list] = []  # [lat, lon, ele, seconds from the start]
        self.profile: list[list[float]] = []  # [metres along, elevation]
        self.recorded: float = 0.0  # when its source was recorded: the GPX export's times start there
        self.deleted = False

    def _require(self) -> dict:
        if self.card is None or self.deleted:
            raise NotFound("no such route")
        return self.card

    def _listed(self) -> None:
        assert self.card is not None
        card = None if self.deleted else self.card
        self.emit(
            ROUTE_LISTED, route_id=self.id, owner=self.card["owner"], directory=directory_shard(self.id), card=card
        )

    @update
    def create(
        self,
        owner: str,
        name: str,
        description: str,
        sport: str,
        surface: str,
        visibility: str,
        measured: dict,
        source: dict,
        recorded: float,
    ) -> dict:
        if self.card is not None:
            raise Rejected("this route already exists")
        start = measured["start_point"]
        self.card = {
            "id": self.id,
            "owner": owner,
            "name": name,
            "description": description,
            **{field: measured[field] for field in _CARD if field in measured},
            "sport": sport,
            "surface": surface,
            "visibility": visibility,
            "region": h3.latlng_to_cell(start[0], start[1], INDEX_RESOLUTION),
            "source": source,
            "created": self.now,
        }
        self.points = measured["points"]
        self.profile = measured["profile"]
        self.recorded = recorded
        self._listed()
        return self.info()

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their route goes whole, even one they shared: it is their track (where they run from). The
        directory drops its card itself; those who saved it find it gone, as after a deletion."""
        if self.card is not None and self.card["owner"] == user_id:
            return True
        return pseudonymise(self, user_id, stand_in)

    @update
    def edit(self, changes: dict) -> dict:
        card = self._require()
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise Rejected(f"{', '.join(sorted(unknown))} cannot be changed")
        card.update(changes)
        self._listed()
        return self.info()

    @update
    def delete(self) -> None:
        self._require()
        self.deleted = True
        self.points, self.profile = [], []
        self._listed()

    @query
    def access(self) -> dict:
        """Who owns it and who may see it: the API checks the owner's graph with this."""
        card = self._require()
        return {"owner": card["owner"], "visibility": card["visibility"]}

    @query
    def info(self) -> dict:
        return {**self._require(), "profile": self.profile}

    @query
    def full(self) -> dict:
        return {**self.info(), "points": self.points, "recorded": self.recorded}
