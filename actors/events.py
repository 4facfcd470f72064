"""Arena's domain events: each declared once, with its fields and the user it is about.

``docs/events.md`` lists them with who emits and who reacts (``tests/test_events_docs.py``
fails when it misses one). A change to an event's fields is a new version with an ``upgrade``
from the old ones, so events already in the outbox and the lake stay readable.
"""

from __future__ import annotations

from engine.events import declare

__all__ = [
    "BADGE_AWARDED",
    "GROUP_INVITED",
    "GROUP_JOINED",
    "GROUP_LEFT",
    "GROUP_LISTED",
    "GROUP_POSTED",
    "GROUP_ROLE_CHANGED",
    "GROUP_WORKOUT_SHARED",
    "LEVEL_REACHED",
    "RACE_RESULT",
    "RACE_SETTLED",
    "WORKOUT_RECORDED",
]


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

GROUP_LISTED = declare(
    "group.listed",
    fields=("group_id", "directory", "listing"),
    user_field=None,
    doc="What discovery shows of a group changed (created, edited, its member count moved on): ``listing`` is "
    "its directory card, or null when it must not be listed (hidden, deleted). ``directory``: the directory "
    "shard that lists it (actors/group_shards.py).",
)

GROUP_JOINED = declare(
    "group.joined",
    fields=("group_id", "user_id", "role", "via", "by"),
    user_field="user_id",
    doc="A user became a member of a group: ``via`` created, open, request or invitation; ``role`` owner for "
    "the creator, else member; ``by`` who let them in (themselves, or the admin who approved).",
)

GROUP_LEFT = declare(
    "group.left",
    fields=("group_id", "user_id", "reason", "by"),
    user_field="user_id",
    doc="A member is no longer one: ``reason`` left, removed or banned; ``by`` who did it.",
)

GROUP_ROLE_CHANGED = declare(
    "group.role_changed",
    fields=("group_id", "user_id", "role", "by"),
    user_field="user_id",
    doc="A member's role changed (owner, admin, member): an appointment, a demotion, an ownership transfer.",
)

GROUP_INVITED = declare(
    "group.invited",
    fields=("group_id", "user_id", "by"),
    user_field="user_id",
    doc="A group's admin invited a user to join.",
)

GROUP_POSTED = declare(
    "group.posted",
    fields=("group_id", "post_id", "author", "author_name", "text"),
    user_field="author",
    doc="A member posted in a group's feed.",
)

GROUP_WORKOUT_SHARED = declare(
    "group.workout_shared",
    fields=("group_id", "shard", "owner", "owner_name", "workout_id", "visibility", "summary"),
    user_field="owner",
    doc="A member's workout (not private) reached one of their groups: one per group the athlete belongs to, "
    "emitted by the athlete's list of groups as it reacts to workout.recorded. ``shard``: the athlete's member "
    "shard in that group (its weekly board); the other fields are workout.recorded's.",
)

BADGE_AWARDED = declare(
    "badge.awarded",
    fields=("user_id", "user_name", "badge", "title", "cause", "backfill"),
    user_field="user_id",
    doc="An athlete earned a badge (docs/gamification.md), once per badge: ``badge`` the rule's id, ``cause`` "
    "the fact that earned it (a workout, a race, an event id), ``backfill`` true when a back-fill from the lake "
    "found it in the athlete's history (followers are not told of those).",
)

LEVEL_REACHED = declare(
    "level.reached",
    fields=("user_id", "user_name", "level", "points"),
    user_field="user_id",
    doc="An athlete's points reached a new level (docs/gamification.md): the level reached and the points then.",
)
