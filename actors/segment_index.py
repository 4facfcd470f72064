"""One shard of the spatial index of segments: those that start in one H3 cell of resolution 4.

It keeps each segment's polyline (the state, snapshotted) and an ``engine.segments.SegmentIndex``
rebuilt from them when first needed after a change (never snapshotted). It refuses a segment that
duplicates one it holds (start and end within ``DUPLICATE_M``, length within 5%), and it matches every
``workout.tracked`` sent to it, telling each effort found as ``segment.effort``. ``efforts_on`` is that
match, shared with a new segment's backfill (``serve/segment_backfill.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from actors.events import SEGMENT_EFFORT, WORKOUT_TRACKED
from actors.places import distance_km
from engine.entity import Entity, query, update
from engine.errors import Rejected
from engine.events import Event, To, react
from engine.segments import SegmentIndex, Track

__all__ = [
    "SegmentShard",
    "SEGMENTS_PER_SHARD",
    "DUPLICATE_M",
    "MAX_EFFORTS_PER_TRACK",
    "MAX_VERTICES",
    "efforts_on",
]

SEGMENTS_PER_SHARD = 20_000  # a 23 km cell; a polyline of at most MAX_VERTICES points each
MAX_VERTICES = 500
DUPLICATE_M = 10.0
MAX_EFFORTS_PER_TRACK = 200


def efforts_on(ids: list[str], index: SegmentIndex, tracked: dict) -> list[dict]:
    """The ``segment.effort`` fields of each effort a ``workout.tracked`` track makes on the indexed
    segments (``ids[i]`` is segment ``i``), at most ``MAX_EFFORTS_PER_TRACK``."""
    points = np.asarray(tracked["track"], dtype=float).reshape(-1, 3)
    efforts = index.match(Track(points[:, 0], points[:, 1], points[:, 2]))
    return [
        {
            "segment_id": ids[i],
            "owner": tracked["owner"],
            "workout_id": tracked["workout_id"],
            "visibility": tracked["visibility"],
            "flagged": tracked["flagged"],
            "sex": tracked.get("sex"),
            "age_group": tracked.get("age_group"),
            "start": round(effort.start_t, 2),
            "elapsed_s": round(effort.elapsed_s, 2),
        }
        for i, effort in efforts[:MAX_EFFORTS_PER_TRACK]
    ]


class SegmentShard(Entity):
    kind = "segment_shard"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.segments: dict[str, dict] = {}  # id -> {"lat": [...], "lon": [...], "length_m": float}
        self._index: tuple[list[str], SegmentIndex] | None = None

    def snapshot(self) -> Any:
        return {"segments": self.segments}

    def restore(self, state: Any) -> None:
        self.segments = state["segments"]

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Segments name nobody; whatever else does goes (``scrub``), and the spatial index is built again."""
        self._index = None
        return super().erase_user(user_id, stand_in)

    def _indexed(self) -> tuple[list[str], SegmentIndex]:
        if self._index is None:
            ids = sorted(self.segments)
            self._index = (ids, SegmentIndex.of([(self.segments[i]["lat"], self.segments[i]["lon"]) for i in ids]))
        return self._index

    def _duplicate(self, lat: list[float], lon: list[float], length_m: float) -> str | None:
        for other_id, other in self.segments.items():
            if (
                abs(other["length_m"] - length_m) <= 0.05 * length_m
                and distance_km((lat[0], lon[0]), (other["lat"][0], other["lon"][0])) * 1000 <= DUPLICATE_M
                and distance_km((lat[-1], lon[-1]), (other["lat"][-1], other["lon"][-1])) * 1000 <= DUPLICATE_M
            ):
                return other_id
        return None

    @update
    def add(self, segment_id: str, lat: list, lon: list, length_m: float) -> None:
        if segment_id in self.segments:
            raise Rejected(f"segment {segment_id} is already indexed")
        if not 2 <= len(lat) == len(lon) <= MAX_VERTICES:
            raise Rejected(f"a segment has 2 to {MAX_VERTICES} points")
        if len(self.segments) >= SEGMENTS_PER_SHARD:
            raise Rejected("this area has as many segments as it may hold")
        duplicate = self._duplicate(lat, lon, length_m)
        if duplicate is not None:
            raise Rejected(f"duplicate: segment {duplicate} already covers this stretch")
        self.segments[segment_id] = {"lat": lat, "lon": lon, "length_m": length_m}
        self._index = None

    @query
    def near(self, lat: float, lon: float, radius_km: float) -> list[dict]:
        """Segments whose start lies within ``radius_km``: ``{"id", "distance_km"}``."""
        found = []
        for segment_id, segment in self.segments.items():
            distance = distance_km((lat, lon), (segment["lat"][0], segment["lon"][0]))
            if distance <= radius_km:
                found.append({"id": segment_id, "distance_km": round(distance, 3)})
        return found

    @react(WORKOUT_TRACKED, to=To.field("shard"))
    def on_tracked(self, event: Event) -> None:
        if not self.segments:
            return
        for fields in efforts_on(*self._indexed(), event.fields):
            self.emit(SEGMENT_EFFORT, **fields)
