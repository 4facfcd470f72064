"""Arena's domain events: each declared once, with its fields and the user it is about.

``docs/events.md`` lists them with who emits and who reacts (``tests/test_events_docs.py``
fails when it misses one). A change to an event's fields is a new version with an ``upgrade``
from the old ones, so events already in the outbox and the lake stay readable.
"""

from __future__ import annotations

from engine.events import declare

__all__ = ["RACE_RESULT", "RACE_SETTLED", "WORKOUT_RECORDED"]


def _workout_recorded_v2(fields: dict, version: int) -> dict:
    """Version 1 had no region: the owner's region then was not recorded."""
    return {**fields, "region": None}


WORKOUT_RECORDED = declare(
    "workout.recorded",
    version=2,
    fields=("owner", "owner_name", "region", "workout_id", "visibility", "summary"),
    user_field="owner",
    doc="A workout joined its owner's account (recorded by hand, imported from a file, or a race result); "
    "v2 adds the owner's region (for the lake's daily aggregates per region).",
    upgrade=_workout_recorded_v2,
)

RACE_RESULT = declare(
    "race.result",
    fields=("race_id", "user_id", "workout_id", "summary", "result"),
    user_field="user_id",
    doc="A race became final: one per athlete who started it (finished or did not), with the result "
    "row and the workout summary it becomes.",
)

RACE_SETTLED = declare(
    "race.settled",
    fields=("race_id", "status", "athletes"),
    user_field=None,  # about the race, no athlete
    doc="A race became final or was cancelled: nothing more comes from its devices. The lake archives "
    "its raw telemetry from the race's journal (docs/lake.md). ``athletes``: how many entered.",
)
