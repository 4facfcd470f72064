"""One shard of a challenge's participants: ``<challenge id>-<nn>`` holds every participant whose id
hashes to it (``actors.challenge.participant_shard``): their time zone, team, progress, and what
each of their workouts contributed, so an edit or a deletion is taken back exactly.

Every change to one participant is one turn of one shard. The shard tells the rest through domain
events committed with the change: ``challenge.joined``/``.left`` (the athlete's list of challenges
forwards their workouts here), ``challenge.progressed`` (the rank index keeps the boards from the
old and new standing) and ``challenge.completed``, once per athlete and challenge, kept across a
leave and a rejoin.

A participant is a short list (``_SINCE``.. ``_DONE``), not a map: a million participants are 64
shards of about 15,600 each.
"""

from __future__ import annotations

import heapq
from typing import Any

from actors.erasing import pseudonymise
from actors.events import (
    CHALLENGE_COMPLETED,
    CHALLENGE_JOINED,
    CHALLENGE_LEFT,
    CHALLENGE_PROGRESSED,
    CHALLENGE_WORKOUT,
)
from engine.challenges import goals
from engine.entity import Entity, peek, query, update
from engine.errors import NotFound, Rejected
from engine.events import Event, To, react

__all__ = ["ChallengeParticipants", "MAX_COUNTED", "MAX_JOIN_WORKOUTS"]

MAX_COUNTED = 1_000  # workouts (and deletions) remembered per participant and challenge; more count nothing
MAX_JOIN_WORKOUTS = 1_000  # a join brings at most this many of the period's earlier workouts
_SINCE, _ZONE, _TEAM, _NAME, _SCORE, _AT, _N, _DONE = range(8)
_SEQ, _DAY, _VALUE = range(3)


class ChallengeParticipants(Entity):
    kind = "challenge_participants"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.terms: dict | None = None  # a copy of the challenge's (they never change)
        self.title = ""
        self.people: dict[str, list] = {}  # user -> [since, zone, team, name, score, at, n, done]
        self.parts: dict[
            str, dict[str, list]
        ] = {}  # user -> workout id -> [seq, day, value] (day None: counts nothing)
        self.completed: dict[str, float] = {}  # user -> when they completed, kept if they leave

    @property
    def challenge_id(self) -> str:
        return self.id.rsplit("-", 1)[0]

    def _terms(self) -> goals.Terms:
        if self.terms is None:
            raise NotFound("no such challenge")
        return goals.Terms.of(self.terms)

    # -- joining and leaving -----------------------------------------------------------

    @update
    def join(
        self,
        user_id: str,
        terms: dict,
        title: str,
        zone: str | None = None,
        team: str | None = None,
        name: str | None = None,
        workouts: list | None = None,
    ) -> dict:
        """``user_id`` joins with their time zone (their days), their team (a group, in a team challenge)
        and the period's workouts they recorded before joining, which count (as Strava counts them)."""
        if self.terms is None:
            try:
                goals.Terms.of(terms)
            except (KeyError, TypeError, ValueError) as error:
                raise Rejected(f"not a challenge's terms: {error}") from None
            self.terms, self.title = terms, title
        if user_id in self.people:
            return self._standing(user_id)
        try:
            place = goals.time_zone(zone)
        except ValueError as error:
            raise Rejected(str(error)) from None
        if not isinstance(workouts, list | None) or len(workouts or ()) > MAX_JOIN_WORKOUTS:
            raise Rejected(f"a join brings at most {MAX_JOIN_WORKOUTS:,} workouts")
        terms_now = self._terms()
        parts: dict[str, list] = {}
        for summary in workouts or ():
            if isinstance(summary, dict) and isinstance(summary.get("id"), str):
                counted = goals.contribution(terms_now, summary, place)
                if counted is not None:
                    parts[summary["id"]] = [0, *counted]
        self.people[user_id] = [self.now, zone, team, name, None, self.now, 0, self.completed.get(user_id)]
        if parts:
            self.parts[user_id] = parts
        closes = terms_now.closes()
        self.emit(CHALLENGE_JOINED, challenge_id=self.challenge_id, user_id=user_id, shard=self.id, team=team,
                  ends=closes)  # fmt: skip
        self._progress(user_id, joined=True)
        return self._standing(user_id)

    @update
    def leave(self, user_id: str) -> None:
        """Out of the challenge: off every board; a completion stays (it was earned)."""
        person = self.people.pop(user_id, None)
        if person is None:
            raise NotFound("you are not in this challenge")
        self.parts.pop(user_id, None)
        self.emit(CHALLENGE_LEFT, challenge_id=self.challenge_id, user_id=user_id, shard=self.id)
        self.emit(CHALLENGE_PROGRESSED, challenge_id=self.challenge_id, user_id=user_id, team=person[_TEAM],
                  before=[person[_SCORE], person[_AT]], after=None, n=person[_N] + 1)  # fmt: skip

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their progress, workouts and completion go, as a leave takes them. The rank index hears of it
        as a leave of the stand-in: its counts (participants, a team's sum) drop them, and the event names
        nobody (the board takes the person's own row out when it is erased: ``ChallengeBoard``)."""
        person = self.people.pop(user_id, None)
        self.parts.pop(user_id, None)
        self.completed.pop(user_id, None)
        if person is not None:
            self.emit(CHALLENGE_PROGRESSED, challenge_id=self.challenge_id, user_id=stand_in, team=person[_TEAM],
                      before=[person[_SCORE], person[_AT]], after=None, n=person[_N] + 1)  # fmt: skip
        return pseudonymise(self, user_id, stand_in)

    # -- progress ----------------------------------------------------------------------

    @react(CHALLENGE_WORKOUT, to=To.field("shard"))
    def on_workout(self, event: Event) -> None:
        """A participant's workout as it now stands (recorded, edited, deleted): the newest state of each
        workout by the account's seq replaces what it contributed, whatever order the changes come in."""
        user, workout_id, seq = event.fields["owner"], event.fields["workout_id"], event.fields["seq"]
        person = self.people.get(user)
        if person is None:
            raise Rejected("not a participant")
        parts = self.parts.setdefault(user, {})
        kept = parts.get(workout_id)
        if kept is not None and kept[_SEQ] >= seq:
            return
        summary = event.fields["summary"]
        counted = None
        if isinstance(summary, dict):
            counted = goals.contribution(self._terms(), summary, goals.time_zone(person[_ZONE]))
        if counted is None and kept is None and summary is not None:
            if not parts:
                del self.parts[user]
            return  # counts nothing, and nothing older of it is here to beat
        if kept is None and len(parts) >= MAX_COUNTED:
            raise Rejected(f"a participant's first {MAX_COUNTED:,} workouts count")
        parts[workout_id] = [seq, *(counted or (None, None))]
        self._progress(user)

    def _progress(self, user: str, joined: bool = False) -> None:
        terms, person = self._terms(), self.people[user]
        value = goals.progress(terms, ([p[_DAY], p[_VALUE]] for p in self.parts.get(user, {}).values() if p[_DAY] is not None))  # fmt: skip
        score = goals.score(terms, value)
        if not joined and score == person[_SCORE]:
            return
        before = None if joined else [person[_SCORE], person[_AT]]
        person[_SCORE], person[_AT], person[_N] = score, self.now, person[_N] + 1
        self.emit(CHALLENGE_PROGRESSED, challenge_id=self.challenge_id, user_id=user, team=person[_TEAM],
                  before=before, after=[score, self.now], n=person[_N])  # fmt: skip
        if goals.reached(terms, value) and user not in self.completed:
            self.completed[user] = person[_DONE] = self.now
            self.emit(CHALLENGE_COMPLETED, challenge_id=self.challenge_id, user_id=user, user_name=person[_NAME],
                      title=self.title, goal_type=terms.goal_type)  # fmt: skip

    # -- reading -----------------------------------------------------------------------

    def _row(self, user: str, person: list) -> dict[str, Any]:
        terms = self._terms()
        score = person[_SCORE]
        return {
            "user_id": user,
            "score": score,
            "progress": None if score is None else (-score if terms.lower_is_better else score),
            "at": person[_AT],
            "team": person[_TEAM],
            "since": person[_SINCE],
            "completed_at": person[_DONE],
        }

    def _standing(self, user: str) -> dict:
        return {**self._row(user, self.people[user]), "workouts": sum(
            1 for p in self.parts.get(user, {}).values() if p[_DAY] is not None)}  # fmt: skip

    @peek
    def standing(self, user_id: str) -> dict | None:
        """The participant's progress, or None when they are not in the challenge. A peek: a shard of a
        big challenge has a workout's turn in flight most of the time, and a progress bar or a rank need
        not wait for its commit (docs/engine.md); the API decides nothing from it that the join did not."""
        return self._standing(user_id) if user_id in self.people else None

    @query
    def count(self) -> int:
        return len(self.people)

    def _keys(self, team: str | None = None):
        return (
            (-p[_SCORE], p[_AT], user)
            for user, p in self.people.items()
            if p[_SCORE] is not None and (team is None or p[_TEAM] == team)
        )

    @query
    def top(self, limit: int = 20, team: str | None = None) -> list[dict]:
        """This shard's best ``limit`` (of one team), ties to who got there first."""
        limit = max(1, min(int(limit), 100))
        return [self._row(user, self.people[user]) for _, _, user in heapq.nsmallest(limit, self._keys(team))]

    @query
    def near(self, score: float, at: float, user_id: str, count: int = 5) -> dict:
        """This shard's ``count`` participants just ahead of ``[score, at, user_id]`` and just behind."""
        count = max(1, min(int(count), 25))
        mark = (-score, at, user_id)
        ahead = heapq.nlargest(count, (k for k in self._keys() if k < mark))
        behind = heapq.nsmallest(count, (k for k in self._keys() if k > mark))
        return {
            "ahead": [self._row(k[2], self.people[k[2]]) for k in ahead],
            "behind": [self._row(k[2], self.people[k[2]]) for k in behind],
        }

    @query
    def rows_of(self, users: list[str]) -> list[dict]:
        """The participants among ``users`` (friends, a group's members), with their progress."""
        return [self._row(user, self.people[user]) for user in users[:5_000] if user in self.people]
