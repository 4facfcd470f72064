"""A challenge's goal: what one workout contributes to it, and a participant's progress from those.

A challenge counts the workouts that start on a day of its period (``first_day`` to ``last_day``,
inclusive) **in the participant's own calendar** (their time zone, UTC without one), in one of its
sports (any sport without a filter), with figures that can be true (``points.implausible``) and no
fair-play doubt (a race workout whose result was flagged, provisional or not finished is marked
``flagged`` by the account). Each counted workout contributes ``[day, value]``:

- ``distance_m``, ``moving_s``, ``elevation_m``: the workout's figure, summed;
- ``activities``: 1 a workout, summed;
- ``streak_days``: its day; progress is the longest run of consecutive days in the period;
- ``single_effort``: the workout's best time over ``effort`` (a best effort a recording found, or a
  race over that distance), never one typed in; progress is the fastest, and lower is better.

``score`` turns progress into the number boards rank by, higher better (a time is negated), and
``None`` while there is none (no effort yet).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from engine.gamification.badges import time_zone
from engine.gamification.points import implausible
from engine.training.tracks import BEST_EFFORT_DISTANCES_M

__all__ = [
    "ADDITIVE",
    "EFFORTS",
    "GOAL_TYPES",
    "UNITS",
    "Terms",
    "contribution",
    "progress",
    "reached",
    "score",
    "time_zone",
]

GOAL_TYPES = ("distance_m", "moving_s", "elevation_m", "activities", "streak_days", "single_effort")
ADDITIVE = ("distance_m", "moving_s", "elevation_m", "activities")  # a team's progress is its members' sum
EFFORTS = tuple(BEST_EFFORT_DISTANCES_M)
# The finest step boards tell apart, per goal type (a rank index's bucket is at least this wide).
UNITS = {"distance_m": 10.0, "moving_s": 10.0, "elevation_m": 1.0, "activities": 1.0, "streak_days": 1.0,
         "single_effort": 1.0}  # fmt: skip
_RACE_SLACK = 0.02  # a race counts as an effort over a distance it covered within 2 % of
_FIGURE = {"distance_m": "distance_m", "moving_s": "moving_s", "elevation_m": "elevation_gain_m"}


@dataclass(frozen=True, slots=True)
class Terms:
    """What a challenge counts: fixed once it is created, so each shard holds a copy."""

    goal_type: str
    goal: float
    first_day: int  # date ordinals, inclusive
    last_day: int
    sports: tuple[str, ...] = ()  # none: every sport
    effort: str | None = None  # single_effort: a key of EFFORTS

    def __post_init__(self) -> None:
        if self.goal_type not in GOAL_TYPES:
            raise ValueError(f"a goal type is one of {', '.join(GOAL_TYPES)}, not {self.goal_type!r}")
        if not (isinstance(self.goal, int | float) and math.isfinite(self.goal) and self.goal > 0):
            raise ValueError("a goal is a positive number")
        if self.first_day > self.last_day:
            raise ValueError("a challenge's period ends on or after its first day")
        if (self.goal_type == "single_effort") != (self.effort is not None):
            raise ValueError("a single effort, and only one, names its distance (effort)")
        if self.effort is not None and self.effort not in EFFORTS:
            raise ValueError(f"an effort is one of {', '.join(EFFORTS)}")

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> Terms:
        return cls(
            goal_type=fields["goal_type"],
            goal=float(fields["goal"]),
            first_day=int(fields["first_day"]),
            last_day=int(fields["last_day"]),
            sports=tuple(fields.get("sports") or ()),
            effort=fields.get("effort"),
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "sports": list(self.sports)}

    @property
    def lower_is_better(self) -> bool:
        return self.goal_type == "single_effort"

    def opens(self) -> float:
        """The earliest instant a counted workout can start: the first day's midnight at UTC+14."""
        return _midnight(self.first_day) - 14 * 3600

    def closes(self) -> float:
        """The instant after which no workout can count: the last day's end at UTC-12."""
        return _midnight(self.last_day + 1) + 12 * 3600


def _midnight(ordinal: int) -> float:
    day = date.fromordinal(ordinal)
    return datetime(day.year, day.month, day.day, tzinfo=time_zone(None)).timestamp()


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def local_day(t: float, zone: tzinfo) -> int:
    return datetime.fromtimestamp(t, zone).toordinal()


def contribution(terms: Terms, summary: Mapping[str, Any], zone: tzinfo) -> list | None:
    """``[day, value]`` this workout adds to the challenge, or None when it does not count."""
    if summary.get("flagged") or implausible(summary) is not None:
        return None
    if terms.sports and summary.get("sport") not in terms.sports:
        return None
    start = summary.get("start")
    if not isinstance(start, int | float) or isinstance(start, bool) or not terms.opens() <= start <= terms.closes():
        return None
    day = local_day(float(start), zone)
    if not terms.first_day <= day <= terms.last_day:
        return None
    kind = terms.goal_type
    if kind in _FIGURE:
        return [day, _number(summary.get(_FIGURE[kind]))]
    if kind in ("activities", "streak_days"):
        return [day, 1.0]
    best = _effort(summary, terms.effort or "")
    return None if best is None else [day, best]


def _effort(summary: Mapping[str, Any], effort: str) -> float | None:
    if summary.get("source") == "manual":
        return None  # a time typed in has nothing recorded behind it
    seconds = (summary.get("best_efforts") or {}).get(effort)
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds > 0:
        return float(seconds)
    length, covered = BEST_EFFORT_DISTANCES_M[effort], _number(summary.get("distance_m"))
    moving = _number(summary.get("moving_s"))
    if summary.get("source") == "race" and moving > 0 and abs(covered - length) <= length * _RACE_SLACK:
        return moving
    return None


def progress(terms: Terms, parts: Iterable[list | None]) -> float | None:
    """A participant's progress from their workouts' contributions (None: no effort yet)."""
    counted = [p for p in parts if p is not None]
    if terms.goal_type == "single_effort":
        return min((p[1] for p in counted), default=None)
    if terms.goal_type == "streak_days":
        return float(_longest_run({p[0] for p in counted}))
    return float(sum(p[1] for p in counted))


def _longest_run(days: set[int]) -> int:
    best = 0
    for day in days:
        if day - 1 not in days:
            end = day
            while end + 1 in days:
                end += 1
            best = max(best, end - day + 1)
    return best


def reached(terms: Terms, value: float | None) -> bool:
    if value is None:
        return False
    return value <= terms.goal if terms.lower_is_better else value >= terms.goal


def score(terms: Terms, value: float | None) -> float | None:
    """What boards rank by, higher is better."""
    if value is None:
        return None
    return -value if terms.lower_is_better else value
