"""One workout: its summary, track, kudos and comments."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from actors.events import RACE_RESULT, WORKOUT_RECORDED, WORKOUT_TRACKED
from actors.paging import page
from actors.segment_shards import timed_track, track_shards
from engine.entity import Entity, query, update
from engine.errors import Forbidden, NotFound, Rejected
from engine.events import Event, To, react

__all__ = ["Workout", "MAX_COMMENT_LENGTH", "SPORTS", "start_point", "track_start"]

MAX_COMMENT_LENGTH = 2_000
SPORTS = ("run", "ride", "swim", "walk", "hike", "row", "other")
_EDITABLE = ("title", "visibility", "description")


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
        self.kudos: dict[str, float] = {}
        self.comments: list[dict] = []  # newest first
        self.deleted = False

    def _require(self) -> None:
        if self.owner is None or self.deleted:
            raise NotFound("no such workout")

    @update
    def record(self, owner: str, summary: dict, detail: dict) -> dict:
        if self.owner is not None:
            raise Rejected("this workout already exists")
        self.owner = owner
        self.summary = summary
        self.detail = detail
        return self.card()

    @react(RACE_RESULT, to=To.field("workout_id"))
    def on_race_result(self, event: Event) -> None:
        """A race's result becomes the athlete's workout."""
        fields = event.fields
        self.record(fields["user_id"], fields["summary"], {"splits": [], "track": [], "result": fields["result"]})

    @react(WORKOUT_RECORDED, to=To.field("workout_id"), when=lambda fields: start_point(fields["summary"]) is not None)
    def on_recorded(self, event: Event) -> None:
        """Its track goes to the segment shards it passes through, for matching (docs/segments.md)."""
        if self.deleted or self.owner is None:
            return
        track = timed_track(self.detail.get("track") or [], self.summary.get("start", 0.0))
        for shard in track_shards(track) if len(track) >= 2 else []:
            self.emit(
                WORKOUT_TRACKED,
                owner=self.owner,
                workout_id=self.id,
                visibility=self.summary.get("visibility", "public"),
                flagged=bool(self.summary.get("flagged")),
                shard=shard,
                track=track,
            )

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
