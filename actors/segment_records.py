"""An athlete's personal records on segments, and which workouts made them.

It reacts to ``segment.effort`` (by its owner) and to ``workout.deleted``: a deleted workout's
efforts leave the records (the next best, among the ``KEPT`` best, takes over) and each segment is
told with ``segment.effort_removed``; an effort that arrives after its workout was deleted is told
removed at once. Bounded: ``SEGMENTS_MOST`` segments, ``KEPT`` efforts each, the segments of the newest
``WORKOUTS_MOST`` workouts (an older workout's deletion leaves its efforts on segments), ``GONE_MOST``
deleted workout ids. An effort told twice (live matching and a segment's backfill) counts once.
"""

from __future__ import annotations

from actors.events import SEGMENT_EFFORT, SEGMENT_EFFORT_REMOVED, WORKOUT_DELETED
from engine.entity import Entity, query
from engine.events import Event, To, react

__all__ = ["SegmentRecords", "SEGMENTS_MOST", "KEPT"]

SEGMENTS_MOST = 10_000
KEPT = 3
GONE_MOST = 2_000
WORKOUTS_MOST = 5_000


class SegmentRecords(Entity):
    kind = "segment_records"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.efforts: dict[str, list[dict]] = {}  # segment -> the athlete's fastest efforts on it
        self.workouts: dict[str, list[str]] = {}  # workout -> the segments it has efforts on (the newest WORKOUTS_MOST)
        self.gone: list[str] = []

    @react(SEGMENT_EFFORT, to=To.field("owner"))
    def on_effort(self, event: Event) -> None:
        fields = event.fields
        if fields["workout_id"] in self.gone:
            self.emit(
                SEGMENT_EFFORT_REMOVED, segment_id=fields["segment_id"], owner=self.id, workout_id=fields["workout_id"]
            )
            return
        if fields["segment_id"] not in self.efforts and len(self.efforts) >= SEGMENTS_MOST:
            return
        kept = self.efforts.get(fields["segment_id"], [])
        if any(e["workout_id"] == fields["workout_id"] and e["start"] == fields["start"] for e in kept):
            return  # told twice (live matching and a backfill): counted once
        touched = self.workouts.setdefault(fields["workout_id"], [])
        if fields["segment_id"] not in touched:
            touched.append(fields["segment_id"])
        while len(self.workouts) > WORKOUTS_MOST:
            del self.workouts[next(iter(self.workouts))]
        mine = self.efforts.setdefault(fields["segment_id"], [])
        mine.append({"workout_id": fields["workout_id"], "start": fields["start"], "elapsed_s": fields["elapsed_s"]})
        mine.sort(key=lambda e: (e["elapsed_s"], e["start"]))
        del mine[KEPT:]

    @react(WORKOUT_DELETED, to=To.field("owner"))
    def on_workout_deleted(self, event: Event) -> None:
        workout_id = event.fields["workout_id"]
        self.gone = [*self.gone, workout_id][-GONE_MOST:]
        for segment_id in self.workouts.pop(workout_id, []):
            self.emit(SEGMENT_EFFORT_REMOVED, segment_id=segment_id, owner=self.id, workout_id=workout_id)
            kept = [e for e in self.efforts.get(segment_id, []) if e["workout_id"] != workout_id]
            if kept:
                self.efforts[segment_id] = kept
            else:
                self.efforts.pop(segment_id, None)

    @query
    def records(self) -> list[dict]:
        """``{"segment_id", "elapsed_s", "start", "workout_id", "efforts_kept"}``, fastest first per segment."""
        rows = [{"segment_id": s, **efforts[0], "efforts_kept": len(efforts)} for s, efforts in self.efforts.items()]
        return sorted(rows, key=lambda r: (-r["start"], r["segment_id"]))
