"""One workout: its summary, track, kudos and comments."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from actors.account import HEALTH_FIELDS, Account
from actors.erasing import pseudonymise
from actors.events import (
    COMMENT_POSTED,
    HEALTH_WITHDRAWN,
    KUDOS_GIVEN,
    RACE_RESULT,
    WORKOUT_RECORDED,
    WORKOUT_TRACKED,
)
from actors.paging import page
from actors.segment_shards import timed_track, track_shards
from engine.entity import Entity, query, update
from engine.errors import Forbidden, NotFound, Rejected
from engine.events import Event, To, react

__all__ = ["Workout", "MAX_COMMENT_LENGTH", "SPORTS", "start_point", "track_start"]

MAX_COMMENT_LENGTH = 2_000
SPORTS = ("run", "ride", "swim", "walk", "hike", "row", "other")
_EDITABLE = ("title", "visibility", "description")
_NEAR_DEG = 0.001  # about 110 m: an effort starts within 25 m of a track's edge, so within its bounds and this


def track_start(track: Iterable[list]) -> list[float] | None:
    """A summary's ``start_point`` (workout.recorded v3): the first fix of a track of ``[lat, lon, ...]``
    points, to 5 decimals (about a metre); None for a track without one (typed in, indoor)."""
    for point in track:
        if point and point[0] is not None and point[1] is not None:
            return [round(float(point[0]), 5), round(float(point[1]), 5)]
    return None


def start_point(summary: dict) -> list[float] | None:
    """Where a workout started, from its summary: ``[lat, lon]``, or None when unknown (no fix, or a summary
    older than ``start_point``)."""
    point = summary.get("start_point")
    if not (isinstance(point, list) and len(point) == 2 and all(isinstance(v, int | float) for v in point)):
        return None
    lat, lon = point
    return [float(lat), float(lon)] if -90 <= lat <= 90 and -180 <= lon <= 180 else None


class Workout(Entity):
    kind = "workout"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.owner: str | None = None
        self.summary: dict[str, Any] = {}
        self.detail: dict[str, Any] = {}  # splits, best efforts, the track
        self.athlete: dict[str, Any] = {}  # the owner's sex and age group when recorded, for segment boards only
        self.kudos: dict[str, float] = {}
        self.comments: list[dict] = []  # newest first
        self.deleted = False

    def _require(self) -> None:
        if self.owner is None or self.deleted:
            raise NotFound("no such workout")

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their own workout goes whole, track and all. On another's: their kudos and comments go, the
        others' comments stay (an answer to theirs, a mention of them under the stand-in)."""
        if self.owner == user_id or user_id in self.id:
            return True
        self.kudos.pop(user_id, None)
        self.comments = [item for item in self.comments if item["author"] != user_id]
        return pseudonymise(self, user_id, stand_in)

    @update
    def record(self, owner: str, summary: dict, detail: dict, athlete: dict | None = None) -> dict:
        if self.owner is not None:
            raise Rejected("this workout already exists")
        self.owner = owner
        self.summary = summary
        self.detail = detail
        self.athlete = {k: v for k, v in (athlete or {}).items() if k in ("sex", "age_group") and v is not None}
        return self.card()

    @react(RACE_RESULT, to=To.field("workout_id"))
    def on_race_result(self, event: Event) -> None:
        """A race's result becomes the athlete's workout."""
        fields = event.fields
        self.record(fields["user_id"], fields["summary"], {"splits": [], "track": [], "result": fields["result"]})

    @react(HEALTH_WITHDRAWN, to=To.ask(Account, "user_id", Account.workout_ids))
    def on_health_withdrawn(self, event: Event) -> None:
        """Its owner withdrew consent to health data: its heart rates go, in its summary and its splits."""
        if self.owner != event.fields["user_id"]:
            return
        self.summary = {k: v for k, v in self.summary.items() if k not in HEALTH_FIELDS}
        splits = self.detail.get("splits") or []
        self.detail = {**self.detail, "splits": [{k: v for k, v in split.items() if k not in HEALTH_FIELDS}
                                                 for split in splits]}  # fmt: skip

    @react(WORKOUT_RECORDED, to=To.field("workout_id"), when=lambda fields: start_point(fields["summary"]) is not None)
    def on_recorded(self, event: Event) -> None:
        """Its track goes to the segment shards it passes through, for matching (docs/segments.md)."""
        track = self._shared_track()
        for shard in track_shards(track) if len(track) >= 2 else []:
            self.emit(WORKOUT_TRACKED, **self._tracked(track), shard=shard)

    @query
    def tracked_near(self, lat: float, lon: float) -> dict | None:
        """``workout.tracked``'s fields but ``shard``, as the workout is now, when its track's bounds come within
        about ``_NEAR_DEG`` of the point (a segment's start), for a new segment's backfill (docs/segments.md); None
        when no effort could start there, or it has no track to match."""
        if start_point(self.summary) is None:
            return None
        track = self._shared_track()
        if len(track) < 2:
            return None
        lats, lons = [p[0] for p in track], [p[1] for p in track]
        across = _NEAR_DEG / max(math.cos(math.radians(lat)), 0.01)
        north_south = min(lats) - _NEAR_DEG <= lat <= max(lats) + _NEAR_DEG
        east_west = min(lons) - across <= lon <= max(lons) + across
        return self._tracked(track) if north_south and east_west else None

    def _shared_track(self) -> list[list[float]]:
        """Its track as segments see it, ``[[lat, lon, unix s], ...]``: only the part others may see, outside its
        owner's privacy zones as they were when it was recorded."""
        if self.deleted or self.owner is None:
            return []
        points = self.detail.get("track") or []
        shared = self.detail.get("shared")  # [first, end]: the part outside the owner's privacy zones
        if shared is not None:
            points = points[shared[0] : shared[1]]
        return timed_track(points, self.summary.get("start", 0.0))

    def _tracked(self, track: list[list[float]]) -> dict:
        return {
            "owner": self.owner,
            "workout_id": self.id,
            "visibility": self.summary.get("visibility", "public"),
            "flagged": bool(self.summary.get("flagged")),
            "sex": self.athlete.get("sex"),
            "age_group": self.athlete.get("age_group"),
            "track": track,
        }

    @update
    def edit(self, changes: dict) -> dict:
        self._require()
        for name in changes:
            if name not in _EDITABLE:
                raise Rejected(f"{name!r} cannot be changed")
        self.summary.update(changes)
        return self.card()

    @update
    def delete(self) -> None:
        self._require()
        self.deleted = True
        self.detail = {}
        self.athlete = {}
        self.comments = []
        self.kudos = {}

    @query
    def card(self) -> dict:
        self._require()
        return {**self.summary, "owner": self.owner, "kudos": len(self.kudos), "comments": len(self.comments)}

    @query
    def full(self, viewer: str | None = None) -> dict:
        self._require()
        return {**self.card(), **self.detail, "kudoed": viewer in self.kudos}

    @query
    def access(self) -> dict:
        """Who owns it and who may see it: the API checks the owner's graph with this."""
        self._require()
        return {"owner": self.owner, "visibility": self.summary.get("visibility", "public")}

    @update
    def give_kudos(self, athlete: str) -> dict:
        """``added`` is false when this athlete had already given kudos."""
        self._require()
        if athlete == self.owner:
            raise Rejected("you cannot give kudos to your own workout")
        added = athlete not in self.kudos
        if added:
            self.emit(KUDOS_GIVEN, user_id=athlete, workout_id=self.id, owner=self.owner)
        self.kudos.setdefault(athlete, self.now)
        return {"kudos": len(self.kudos), "added": added}

    @update
    def take_kudos(self, athlete: str) -> int:
        self._require()
        self.kudos.pop(athlete, None)
        return len(self.kudos)

    @query
    def kudos_list(self, before: list | None = None, limit: int = 50) -> dict:
        self._require()
        items = sorted(({"id": who, "at": at} for who, at in self.kudos.items()), key=lambda i: (i["at"], i["id"]))
        return page(items[::-1], before, limit)

    @update
    def comment(self, comment_id: str, author: str, text: str) -> dict:
        self._require()
        text = text.strip()
        if not text or len(text) > MAX_COMMENT_LENGTH:
            raise Rejected(f"a comment has 1 to {MAX_COMMENT_LENGTH} characters")
        item = {"id": comment_id, "author": author, "text": text, "at": self.now}
        self.comments.insert(0, item)
        self.emit(COMMENT_POSTED, user_id=author, workout_id=self.id, owner=self.owner, comment_id=comment_id)
        return item

    @update
    def remove_comment(self, comment_id: str, by: str) -> None:
        self._require()
        for item in self.comments:
            if item["id"] == comment_id:
                if by not in (item["author"], self.owner):
                    raise Forbidden("only its author or the workout's owner may delete a comment")
                self.comments.remove(item)
                return
        raise NotFound("no such comment")

    @query
    def comment_list(self, before: list | None = None, limit: int = 50) -> dict:
        self._require()
        return page(self.comments, before, limit)
