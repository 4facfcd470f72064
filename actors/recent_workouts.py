"""What a per-athlete router remembers of the athlete's latest workout changes, for a membership that
the relay brings after them.

``UserGroups`` and ``ChallengeEntries`` send each of an athlete's workouts on to the groups and
challenges they are in. Membership (``group.joined``, ``challenge.joined``) and workouts
(``workout.recorded``, ``.edited``, ``.deleted``) reach them through different consumers, in any
order: an athlete who joins and runs at once can have the run arrive first, when the router does
not know of the membership yet. Each router therefore keeps the athlete's last few workout changes
(``RECENT_MOST``, within ``RECENT_S`` of the newest) and, when a membership arrives, sends on those
made after it. The receivers keep each workout by the account's seq, so a change sent twice counts
once.
"""

from __future__ import annotations

from typing import Any

from engine.events import Event

__all__ = ["RECENT_MOST", "RECENT_S", "remember", "since"]

RECENT_MOST = 16  # workout changes kept per athlete
RECENT_S = 6 * 3_600.0  # kept this long after the newest (by the events' own times: a relay that was down
# for hours and catches up still finds them)


def remember(recent: dict[str, list], event: Event, item: Any) -> None:
    """Keep ``item`` (what the router sends on) for the event's workout: the newest change of each
    workout by the account's seq, the most recent ``RECENT_MOST`` of them."""
    workout_id = event.fields["workout_id"]
    kept = recent.get(workout_id)
    if kept is not None and kept[1] >= event.seq:
        return
    recent[workout_id] = [event.at, event.seq, item]
    newest = max(entry[0] for entry in recent.values())
    for old in [w for w, entry in recent.items() if entry[0] < newest - RECENT_S]:
        del recent[old]
    while len(recent) > RECENT_MOST:
        del recent[min(recent, key=lambda w: (recent[w][0], w))]


def since(recent: dict[str, list], at: float) -> list[tuple[str, int, Any]]:
    """The remembered changes made at or after ``at``, oldest first: ``(workout id, seq, item)``."""
    entries = sorted((entry[0], w, entry[1], entry[2]) for w, entry in recent.items() if entry[0] >= at)
    return [(w, seq, item) for _, w, seq, item in entries]
