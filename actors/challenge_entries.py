"""The challenges one athlete is in: a small entity per user, kept from the participant shards'
``challenge.joined``/``.left``.

It is a read model ("my challenges") and the router of the athlete's workouts: it reacts to their
``workout.recorded``, ``.edited`` and ``.deleted`` and sends each on, as ``challenge.workout``, to
their participant shard in every challenge they are in, so the relay never looks up an athlete's
challenges per workout and every shard gets the workout's changes from one source, in order. The
account's seq of each change travels with it: the three event types reach this entity through three
consumers, in any order, and the shard keeps the newest.

A join can also reach this entity after the workouts its athlete recorded once joined (they come
through other consumers): the athlete's latest workout changes are kept (``actors.recent_workouts``)
and sent on to the challenge when its ``challenge.joined`` arrives. The shard counts each workout
once, by its seq, so one sent again (or one the join already brought) changes nothing.
"""

from __future__ import annotations

from actors.events import (
    CHALLENGE_JOINED,
    CHALLENGE_LEFT,
    CHALLENGE_WORKOUT,
    WORKOUT_DELETED,
    WORKOUT_EDITED,
    WORKOUT_RECORDED,
)
from actors.paging import page
from actors.recent_workouts import remember, since
from engine.entity import Entity, query
from engine.events import Event, To, react

__all__ = ["ChallengeEntries", "MAX_ENTRIES", "LATE_S"]

MAX_ENTRIES = 100  # challenges one athlete is in at once (the API refuses more)
LATE_S = 30 * 86_400  # a workout uploaded up to 30 days after a challenge's period still counts


class ChallengeEntries(Entity):
    kind = "challenge_entries"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.entries: dict[str, dict] = {}  # challenge id -> {"shard", "team", "ends", "since"}
        self.recent: dict[str, list] = {}  # workout id -> [at, seq, summary or None]: its latest change

    @react(CHALLENGE_JOINED, to=To.field("user_id"))
    def on_joined(self, event: Event) -> None:
        fields = event.fields
        challenge_id, shard = fields["challenge_id"], fields["shard"]
        fresh = challenge_id not in self.entries
        self.entries[challenge_id] = {"shard": shard, "team": fields["team"], "ends": fields["ends"],
                                      "since": event.at}  # fmt: skip
        if fresh:  # what the athlete did that got here first: the shard keeps what counts, once
            for workout_id, seq, summary in since(self.recent, float("-inf")):
                self.emit(CHALLENGE_WORKOUT, challenge_id=challenge_id, shard=shard, owner=self.id,
                          workout_id=workout_id, seq=seq, summary=summary)  # fmt: skip

    @react(CHALLENGE_LEFT, to=To.field("user_id"))
    def on_left(self, event: Event) -> None:
        self.entries.pop(event.fields["challenge_id"], None)

    @react(WORKOUT_RECORDED, to=To.field("owner"))
    def on_workout(self, event: Event) -> None:
        self._forward(event, event.fields["summary"])

    @react(WORKOUT_EDITED, to=To.field("owner"))
    def on_workout_edited(self, event: Event) -> None:
        self._forward(event, event.fields["after"])

    @react(WORKOUT_DELETED, to=To.field("owner"))
    def on_workout_deleted(self, event: Event) -> None:
        self._forward(event, None)

    def _forward(self, event: Event, summary: dict | None) -> None:
        """To each challenge the athlete is in whose period is not long over (those are forgotten)."""
        remember(self.recent, event, summary)
        self.entries = {c: e for c, e in self.entries.items() if e["ends"] + LATE_S >= self.now}
        for challenge_id, entry in self.entries.items():
            self.emit(CHALLENGE_WORKOUT, challenge_id=challenge_id, shard=entry["shard"], owner=self.id,
                      workout_id=event.fields["workout_id"], seq=event.seq, summary=summary)  # fmt: skip

    @query
    def count(self) -> int:
        return len(self.entries)

    @query
    def entries_page(self, before: list | None = None, limit: int = 20) -> dict:
        """The athlete's challenges, the newest joined first."""
        items = [{"challenge_id": c, **e} for c, e in self.entries.items()]
        items.sort(key=lambda i: (i["since"], i["challenge_id"]), reverse=True)
        return page(items, before, limit, key=("since", "challenge_id"))
