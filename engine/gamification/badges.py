"""Badges as rules written as data, evaluated by four measures.

A rule names the *facts* it looks at (``on``: a workout, a race result, or any domain event by
its type, such as ``challenge.completed``), a filter on their fields (``where``), a measure and
a goal:

- ``count``: ``goal`` distinct facts that pass the filter;
- ``sum``: the sum of ``field`` over one period (``per``: ``day``, ``week``, ``month`` of the
  athlete's calendar) reaches ``goal``;
- ``streak``: facts on ``goal`` consecutive days of the athlete's calendar;
- ``record``: a best effort faster than every one seen before it, in the same sport and distance.

A fact is a plain map (``workout_fact``, ``race_fact``, ``event_fact``) with an ``id``, the local
``day``, ``week`` and ``month`` it fell on, and its fields. A rule's state is made of sets and
minimums (fact ids, days, best times), so applying a fact twice changes nothing: what makes a
replay, a redelivery or a back-fill over facts already counted harmless. Adding a badge is adding
a ``Rule`` to ``RULES``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

__all__ = [
    "RULES",
    "Rule",
    "advance",
    "event_fact",
    "local_time",
    "race_fact",
    "rule",
    "time_zone",
    "workout_fact",
]

WORKOUT, RACE_RESULT = "workout", "race_result"
MEASURES = ("count", "sum", "streak", "record")
PERIODS = ("day", "week", "month")
_KEPT_PERIODS = 3  # a sum's state keeps the newest periods not yet at the goal
_KEPT_DAYS = 400  # a streak's state keeps the newest active days

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda value, options: value in options,
    "not in": lambda value, options: value not in options,
}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    description: str
    on: str  # "workout", "race_result", or a domain event's type
    where: tuple[tuple[str, str, Any], ...] = ()  # (field, operator, value), all must hold
    measure: str = "count"
    goal: float = 1
    field: str | None = None  # what a sum adds up
    per: str | None = None  # the period of a sum
    user_field: str = "user_id"  # for a domain event: the field naming the athlete who earns the badge

    def __post_init__(self) -> None:
        if self.measure not in MEASURES:
            raise ValueError(f"rule {self.id}: a measure is one of {', '.join(MEASURES)}, not {self.measure!r}")
        if self.measure == "sum" and (self.field is None or self.per not in PERIODS):
            raise ValueError(f"rule {self.id}: a sum needs a field and a period ({', '.join(PERIODS)})")
        for _, op, _ in self.where:
            if op not in _OPS:
                raise ValueError(f"rule {self.id}: no operator {op!r}")

    def card(self) -> dict:
        return {"id": self.id, "title": self.title, "description": self.description}


_ON_FOOT = ("run", "walk", "hike")
RULES: tuple[Rule, ...] = (
    Rule(
        "first_5k",
        "First 5 km",
        "A run of 5 km or more, recorded rather than typed in.",
        on=WORKOUT,
        where=(("sport", "==", "run"), ("distance_m", ">=", 5_000), ("source", "!=", "manual")),
    ),
    Rule(
        "100k_month",
        "100 km in a month",
        "100 km on foot (running, walking, hiking) in one calendar month, recorded rather than typed in.",
        on=WORKOUT,
        where=(("sport", "in", _ON_FOOT), ("source", "!=", "manual")),
        measure="sum",
        field="distance_m",
        per="month",
        goal=100_000,
    ),
    Rule(
        "streak_7",
        "7-day streak",
        "A workout on each of 7 days in a row, in your own time zone.",
        on=WORKOUT,
        measure="streak",
        goal=7,
    ),
    Rule(
        "personal_record",
        "Personal record",
        "Faster than ever before over 1 km, 5 km, 10 km, a half marathon or a marathon.",
        on=WORKOUT,
        measure="record",
    ),
    Rule(
        "podium",
        "Race podium",
        "Finished a race in the top three.",
        on=RACE_RESULT,
        where=(("status", "==", "finished"), ("place", "<=", 3)),
    ),
    Rule("challenge_completed", "Challenge completed", "Completed a challenge.", on="challenge.completed"),
    Rule("group_event_attended", "Did it together", "Took part in a group's event.", on="group_event.attended"),
)


def rule(rule_id: str, rules: Iterable[Rule] = RULES) -> Rule:
    for candidate in rules:
        if candidate.id == rule_id:
            return candidate
    raise KeyError(rule_id)


# -- facts ---------------------------------------------------------------------------------


def time_zone(name: str | None) -> tzinfo:
    """The athlete's time zone (an IANA name), or UTC without one; ``ValueError`` for an unknown name."""
    if name is None:
        return UTC
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # zoneinfo's own error is a KeyError; a path-like name, ValueError
        raise ValueError(f"{name!r} is not a time zone (an IANA name such as Europe/Paris)") from None


def local_time(t: float, zone: tzinfo) -> dict:
    """The day (ordinal), ISO week and month an instant falls on in ``zone``."""
    moment = datetime.fromtimestamp(t, zone)
    year, week, _ = moment.isocalendar()
    return {"day": moment.toordinal(), "week": f"{year}-W{week:02d}", "month": f"{moment.year}-{moment.month:02d}"}


def workout_fact(summary: Mapping[str, Any], zone: tzinfo) -> dict:
    """A plausible workout's summary as a fact (its day: its start, in the athlete's calendar)."""
    return {
        "on": WORKOUT,
        "id": str(summary["id"]),
        **local_time(float(summary["start"]), zone),
        **{k: summary.get(k) for k in ("sport", "distance_m", "moving_s", "source")},
        "best_efforts": dict(summary.get("best_efforts") or {}),
    }


def race_fact(race_id: str, result: Mapping[str, Any], at: float, zone: tzinfo) -> dict:
    return {
        "on": RACE_RESULT,
        "id": race_id,
        **local_time(at, zone),
        **{k: result.get(k) for k in ("status", "place", "distance_m", "finish_s")},
    }


def event_fact(event_type: str, event_id: str, fields: Mapping[str, Any], at: float, zone: tzinfo) -> dict:
    """Any other domain event, by its type: its fields as they are."""
    return {**fields, "on": event_type, "id": event_id, **local_time(at, zone)}


# -- measures ------------------------------------------------------------------------------


def _passes(rule: Rule, fact: Mapping[str, Any]) -> bool:
    if fact.get("on") != rule.on:
        return False
    for name, op, wanted in rule.where:
        try:
            if not _OPS[op](fact.get(name), wanted):
                return False
        except TypeError:  # a comparison with a missing (None) field
            return False
    return True


def _count(rule: Rule, state: dict, fact: Mapping[str, Any]) -> bool:
    ids = state.setdefault("ids", [])
    if fact["id"] not in ids:
        ids.append(fact["id"])
    return len(ids) >= rule.goal


def _sum(rule: Rule, state: dict, fact: Mapping[str, Any]) -> bool:
    value = fact.get(rule.field or "")
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    periods = state.setdefault("periods", {})
    period = periods.setdefault(str(fact[rule.per or "month"]), {})
    period[fact["id"]] = value
    reached = sum(period.values()) >= rule.goal
    for old in sorted(periods)[:-_KEPT_PERIODS]:
        del periods[old]
    return reached


def _streak(rule: Rule, state: dict, fact: Mapping[str, Any]) -> bool:
    days = state.setdefault("days", [])
    day = fact["day"]
    if day not in days:
        days.append(day)
        days.sort()
        del days[:-_KEPT_DAYS]
    known = set(days)
    start = day
    while start - 1 in known:
        start -= 1
    end = day
    while end + 1 in known:
        end += 1
    return end - start + 1 >= rule.goal


def _record(rule: Rule, state: dict, fact: Mapping[str, Any]) -> bool:
    best = state.setdefault("best", {})
    improved = False
    for key, seconds in sorted((fact.get("best_efforts") or {}).items()):
        name = f"{fact.get('sport')}/{key}"
        known = best.get(name)
        if known is None or seconds < known:
            improved = improved or known is not None  # a first effort sets the mark; beating it is a record
            best[name] = seconds
    return improved


_MEASURE: dict[str, Callable[[Rule, dict, Mapping[str, Any]], bool]] = {
    "count": _count,
    "sum": _sum,
    "streak": _streak,
    "record": _record,
}


def advance(rule: Rule, state: dict, fact: Mapping[str, Any]) -> bool:
    """Apply ``fact`` to ``rule``'s ``state`` (in place): whether the rule's goal is reached with it."""
    return _passes(rule, fact) and _MEASURE[rule.measure](rule, state, fact)
