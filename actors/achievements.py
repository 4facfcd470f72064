"""An athlete's points, level and badges, earned from domain events (docs/gamification.md).

The entity reacts to the athlete's recorded workouts (``workout.recorded``; a race's workout comes
through ``race.result`` instead, which knows whether the athlete was disqualified) and race
results, and to every other event a badge rule names (``challenge.completed``,
``group_event.attended``) once ``actors/events.py`` declares it. The engine applies each event
once; the entity keeps which badges it awarded, so none is awarded twice however often anything
is replayed, and a back-fill from the lake (``backfill``) awards only what is missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from actors.events import (
    BADGE_AWARDED,
    HEALTH_WITHDRAWN,
    LEVEL_REACHED,
    RACE_RESULT,
    WORKOUT_DELETED,
    WORKOUT_RECORDED,
)
from engine import dates
from engine.entity import Entity, query, update
from engine.errors import Rejected
from engine.events import CATALOGUE, Event, To, react
from engine.gamification import badges, levels, points
from engine.gamification.intensity import DEFAULT_REST_HR, Heart

__all__ = ["Achievements", "COUNTED_RESULTS", "RECENT_LENGTH", "POINTS_WINDOW_DAYS"]

COUNTED_RESULTS = ("finished", "dnf")  # a disqualified athlete's race earns nothing
RECENT_LENGTH = 20
POINTS_WINDOW_DAYS = 365  # a workout that started longer ago than this earns badges, not points
_REFUSED_KEPT = 20
_DELETED_KEPT = 1_000  # ids of deleted workouts remembered, so a recording that arrives late earns nothing


def _later_reactions() -> type:
    """Reactions to the events that badge rules name beyond workouts and race results (a challenge
    completed, a group event attended): one for each such event ``actors/events.py`` declares, so a
    rule starts to work the day its event exists, without a change here."""
    namespace: dict[str, Callable[..., Any]] = {}
    for rule in badges.RULES:
        declared = CATALOGUE.get(rule.on)
        if declared is None or declared.name in (WORKOUT_RECORDED.name, RACE_RESULT.name):
            continue

        def on_event(self: Achievements, event: Event) -> None:
            self._apply_item({"on": event.type, "id": event.id, "at": event.at, "fields": event.fields})

        on_event.__name__ = on_event.__qualname__ = "on_" + rule.on.replace(".", "_")
        namespace[on_event.__name__] = react(declared, to=To.field(rule.user_field))(on_event)
    return type("LaterReactions", (), namespace)


class Achievements(_later_reactions(), Entity):  # type: ignore[misc]  # a base made at import time
    kind = "achievements"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.name: str | None = None  # the athlete's display name, as the last event gave it
        self.time_zone: str | None = None  # the athlete's IANA time zone; UTC without one
        self.heart: dict | None = None  # {"max_hr", "rest_hr"} when the athlete gave them
        self.points = 0
        self.level = 1
        self.daily: dict[str, int] = {}  # local day (ordinal, as text) -> points earned that day
        self.recent: list[dict] = []  # the newest workouts that earned points, newest first
        self.badges: dict[str, dict] = {}  # rule id -> {"at", "cause", "backfill"}
        self.rules: dict[str, dict] = {}  # rule id -> its measure's state, until its badge is awarded
        self.refused: list[dict] = []  # the newest workouts that earned nothing, and why
        self.earned: dict[str, list] = {}  # workout id -> [local day, points], within the points window
        self.deleted: list[str] = []  # the newest deleted workouts' ids (their recording may come later)

    # -- settings ----------------------------------------------------------------------

    @update
    def set_time_zone(self, time_zone: str | None) -> str | None:
        try:
            badges.time_zone(time_zone)
        except ValueError as error:
            raise Rejected(str(error)) from None
        self.time_zone = time_zone
        return time_zone

    @react(HEALTH_WITHDRAWN, to=To.field("user_id"))
    def on_health_withdrawn(self, event: Event) -> None:
        """Consent to health data withdrawn: the athlete's heart rates go (points then count without them)."""
        self.heart = None

    @update
    def set_heart(self, max_hr: float | None = None, rest_hr: float | None = None) -> dict | None:
        if max_hr is None:
            self.heart = None
            return None
        try:
            heart = Heart(max_hr, DEFAULT_REST_HR if rest_hr is None else rest_hr)
        except (TypeError, ValueError) as error:
            raise Rejected(str(error)) from None
        self.heart = {"max_hr": heart.max_hr, "rest_hr": heart.rest_hr}
        return self.heart

    # -- reactions ---------------------------------------------------------------------

    @react(WORKOUT_RECORDED, to=To.field("owner"), when=lambda fields: fields["summary"].get("source") != "race")
    def on_workout(self, event: Event) -> None:
        """A workout by hand or from a file (a race's comes with its result, ``on_race_result``)."""
        self.name = event.fields["owner_name"] or self.name
        self._apply_item({"on": badges.WORKOUT, "at": event.at, "summary": event.fields["summary"]})

    @react(RACE_RESULT, to=To.field("user_id"))
    def on_race_result(self, event: Event) -> None:
        """A race made final: its workout earns points and its place may earn the podium, unless the
        athlete was disqualified or is still flagged."""
        fields = event.fields
        self.name = fields["result"].get("name") or self.name
        self._apply_item(
            {"on": badges.RACE_RESULT, "at": event.at, "race_id": fields["race_id"], "result": fields["result"],
             "summary": fields["summary"]}
        )  # fmt: skip

    @react(WORKOUT_DELETED, to=To.field("owner"))
    def on_workout_deleted(self, event: Event) -> None:
        """A deleted workout's points leave its day and the total (the level follows the points); badges
        it helped earn stay awarded."""
        workout_id = event.fields["workout_id"]
        if workout_id not in self.deleted:
            self.deleted.append(workout_id)
            del self.deleted[:-_DELETED_KEPT]
        kept = self.earned.pop(workout_id, None)
        if kept is None:
            return
        day, earned = str(kept[0]), int(kept[1])
        self.points = max(0, self.points - earned)
        if day in self.daily:
            self.daily[day] = max(0, self.daily[day] - earned)
        self.recent = [r for r in self.recent if r["workout_id"] != workout_id]
        self.level = levels.level_for(self.points)

    def _apply_item(self, item: dict) -> None:
        if isinstance(item.get("summary"), dict) and item["summary"].get("id") in self.deleted:
            return  # deleted before its recording reached here: it earns nothing
        facts, why = self._facts(item)
        if why is not None:
            self.refused.insert(0, {"workout_id": item["summary"].get("id"), "why": why, "at": self.now})
            del self.refused[_REFUSED_KEPT:]
        for fact in facts:
            if fact["on"] == badges.WORKOUT:
                self._earn(item["summary"], fact)
            for rule in badges.RULES:
                if rule.id not in self.badges and badges.advance(rule, self.rules.setdefault(rule.id, {}), fact):
                    self._award(rule, fact["id"], backfill=False)

    def _facts(self, item: dict) -> tuple[list[dict], str | None]:
        """The facts a history item holds, or none and why (a disqualification, impossible figures)."""
        zone = badges.time_zone(self.time_zone)
        if item["on"] not in (badges.WORKOUT, badges.RACE_RESULT):
            return [badges.event_fact(item["on"], item["id"], item["fields"], item["at"], zone)], None
        summary = item["summary"]
        if not isinstance(summary.get("id"), str):
            return [], "a workout without an id"
        if item["on"] == badges.RACE_RESULT:
            result = item["result"]
            if result.get("status") not in COUNTED_RESULTS or result.get("flags") or result.get("provisional"):
                return [], f"a race result that is {result.get('status')} or flagged"
        why = points.implausible(summary)
        if why is None and not dates.EARLIEST <= _number(summary.get("start")) <= self.now + dates.AHEAD_S:
            why = "a start that is no date, or in the future"
        if why is not None:
            return [], why
        fact = badges.workout_fact(summary, zone)
        if item["on"] == badges.RACE_RESULT:
            return [fact, badges.race_fact(item["race_id"], item["result"], float(summary["start"]), zone)], None
        return [fact], None

    def _earn(self, summary: dict, fact: dict) -> None:
        if float(summary["start"]) < self.now - POINTS_WINDOW_DAYS * 86_400:
            return
        heart = Heart(**self.heart) if self.heart else None
        day = str(fact["day"])
        earned = points.capped(points.workout_points(summary, heart), self.daily.get(day, 0))
        self.daily[day] = self.daily.get(day, 0) + earned
        oldest = badges.local_time(self.now, badges.time_zone(self.time_zone))["day"] - POINTS_WINDOW_DAYS - 1
        self.daily = {d: p for d, p in self.daily.items() if int(d) >= oldest}
        self.earned[str(summary["id"])] = [fact["day"], earned]
        if any(kept[0] < oldest for kept in self.earned.values()):
            self.earned = {w: kept for w, kept in self.earned.items() if kept[0] >= oldest}
        self.points += earned
        self.recent.insert(0, {"workout_id": summary["id"], "sport": summary.get("sport"), "points": earned,
                               "day": fact["day"], "at": self.now})  # fmt: skip
        del self.recent[RECENT_LENGTH:]
        level = levels.level_for(self.points)
        if level > self.level:
            self.level = level
            self.emit(LEVEL_REACHED, user_id=self.id, user_name=self.name, level=level, points=self.points)

    def _award(self, rule: badges.Rule, cause: str, backfill: bool) -> None:
        self.badges[rule.id] = {"at": self.now, "cause": cause, "backfill": backfill}
        self.rules.pop(rule.id, None)  # its state has done its work
        self.emit(
            BADGE_AWARDED, user_id=self.id, user_name=self.name, badge=rule.id, title=rule.title, cause=cause,
            backfill=backfill,
        )  # fmt: skip

    # -- back-fill -----------------------------------------------------------------------

    @update
    def backfill(self, history: list, rules: list[str] | None = None) -> dict:
        """Replay the athlete's history (items as ``connectors.lake.backfill`` reads them from the
        lake, oldest first) into ``rules`` (all by default) and award what they earn that is not
        awarded yet. Points are not touched. Doing it again awards nothing more."""
        known = {rule.id for rule in badges.RULES}
        if rules is not None and not set(rules) <= known:
            raise Rejected(f"no badge rule {', '.join(sorted(set(rules) - known))}")
        if not isinstance(history, list):
            raise Rejected("a history is a list of items")
        facts: list[dict] = []
        skipped = 0
        for item in sorted(history, key=_when):
            try:
                facts += self._facts(item)[0]
            except (KeyError, TypeError, ValueError, AttributeError):  # an item no reaction would have made
                skipped += 1
        awarded = []
        for rule in badges.RULES:
            if rule.id in self.badges or (rules is not None and rule.id not in rules):
                continue
            fresh: dict = {}  # the rule as if it had been there from the start, in the order things happened
            cause = next((fact["id"] for fact in facts if badges.advance(rule, fresh, fact)), None)
            live = self.rules.setdefault(rule.id, {})
            for fact in facts:  # and what it saw live, with the history merged in (sets: no fact counts twice)
                if badges.advance(rule, live, fact) and cause is None and rule.measure != "record":
                    cause = fact["id"]
            if cause is not None:
                self._award(rule, cause, backfill=True)
                awarded.append(rule.id)
        return {"awarded": awarded, "facts": len(facts), "skipped": skipped}

    # -- reads ---------------------------------------------------------------------------

    @query
    def summary(self) -> dict:
        level_points = levels.points_for(self.level)
        following = levels.points_for(self.level + 1) if self.level < levels.MAX_LEVEL else None
        return {
            "user_id": self.id,
            "points": self.points,
            "level": self.level,
            "level_points": level_points,
            "next_level_points": following,
            "daily_cap": points.DAILY_CAP,
            "badges": [
                {**_CARDS.get(rule_id, {"id": rule_id, "title": rule_id, "description": ""}), **awarded}
                for rule_id, awarded in sorted(self.badges.items(), key=lambda kv: (kv[1]["at"], kv[0]))
            ],
            "recent": self.recent,
            "refused": self.refused,
        }

    @query
    def settings(self) -> dict:
        return {"time_zone": self.time_zone, "heart": self.heart}


_CARDS = {rule.id: rule.card() for rule in badges.RULES}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.nan


def _when(item: Any) -> float:
    at = item.get("summary", {}).get("start", item.get("at")) if isinstance(item, dict) else None
    return float(at) if isinstance(at, int | float) and math.isfinite(at) else math.inf
