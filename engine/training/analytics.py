"""Training analytics: totals per week or month, personal records and streaks.

Pure functions over workout summaries. Days and weeks are the athlete's local
ones: ``tz_offset_minutes`` (east of UTC positive) moves each start into local
time before it is given a date. Weeks are ISO weeks, named like ``2026-W53``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any, Literal

from engine.dates import EARLIEST

__all__ = ["WorkoutFacts", "readable", "totals", "personal_records", "streaks"]

_MAX_OFFSET_MINUTES = 18 * 60  # the widest offset datetime.timezone accepts
_LAST_START = 32_503_680_000  # 3000-01-01: later starts are bad data, and near year 9999 dates overflow


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkoutFacts:
    id: str
    sport: str
    start: float  # unix seconds
    distance_m: float
    moving_s: float
    elevation_gain_m: float = 0.0
    best_efforts: dict[str, float] = field(default_factory=dict)  # distance key ("5k") -> fastest seconds

    def __post_init__(self) -> None:
        for name in ("id", "sport"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"workout {name} must be a non-empty string, got {value!r}")
        for name in ("start", "distance_m", "moving_s", "elevation_gain_m"):
            value = getattr(self, name)
            if not _is_number(value):
                raise ValueError(f"workout {self.id}: {name} must be a finite number, got {value!r}")
            if not (EARLIEST if name == "start" else 0) <= value <= (_LAST_START if name == "start" else math.inf):
                raise ValueError(f"workout {self.id}: {name} is out of range: {value!r}")
        if not isinstance(self.best_efforts, Mapping):
            raise ValueError(f"workout {self.id}: best_efforts must map a distance key to seconds")
        for key, seconds in self.best_efforts.items():
            if not _is_number(seconds) or seconds <= 0:
                raise ValueError(f"workout {self.id}: best effort {key!r} must be a positive number of seconds")

    @classmethod
    def of(cls, workout: WorkoutFacts | Mapping[str, Any]) -> WorkoutFacts:
        """Take a summary as it comes from the store; fields this module does not use are ignored."""
        if isinstance(workout, cls):
            return workout
        if not isinstance(workout, Mapping):
            raise TypeError(f"a workout must be a WorkoutFacts or a mapping, not {type(workout).__name__}")
        try:
            return cls(**{f.name: workout[f.name] for f in fields(cls) if f.name in workout})
        except TypeError as missing:
            raise ValueError(f"workout {workout.get('id')!r}: {missing}") from None


def _facts(workouts: Iterable[WorkoutFacts | Mapping[str, Any]]) -> list[WorkoutFacts]:
    return [WorkoutFacts.of(w) for w in workouts]


def readable(workouts: Iterable[Any]) -> tuple[list[WorkoutFacts], list[Any]]:
    """The stored workouts these functions can read, and the ids of those they cannot.

    A store may hold summaries from before today's checks (a start in year 1 or 9999):
    one such workout must cost its own place in the analytics, not all of them.
    """
    facts, unreadable = [], []
    for workout in workouts:
        try:
            facts.append(WorkoutFacts.of(workout))
        except (TypeError, ValueError):
            unreadable.append(workout.get("id") if isinstance(workout, Mapping) else None)
    return facts, unreadable


def _local_day(start: float, tz_offset_minutes: int) -> date:
    return datetime.fromtimestamp(start + tz_offset_minutes * 60, UTC).date()


def _check_offset(tz_offset_minutes: int) -> None:
    if not isinstance(tz_offset_minutes, int) or abs(tz_offset_minutes) >= _MAX_OFFSET_MINUTES:
        raise ValueError(f"tz_offset_minutes must be a whole number of minutes under 18 h, got {tz_offset_minutes!r}")


def _iso_week(day: date) -> tuple[int, int]:
    year, week, _ = day.isocalendar()
    return year, week


def totals(
    workouts: Iterable[WorkoutFacts | Mapping[str, Any]],
    period: Literal["week", "month"],
    tz_offset_minutes: int = 0,
) -> list[dict]:
    """Count, distance, moving time and elevation per period and sport, newest period first."""
    if period not in ("week", "month"):
        raise ValueError(f"period must be 'week' or 'month', got {period!r}")
    _check_offset(tz_offset_minutes)
    sums: dict[tuple[tuple[int, int], str], dict] = {}
    for w in _facts(workouts):
        day = _local_day(w.start, tz_offset_minutes)
        when = _iso_week(day) if period == "week" else (day.year, day.month)
        row = sums.get((when, w.sport))
        if row is None:
            name = f"{when[0]}-W{when[1]:02d}" if period == "week" else f"{when[0]}-{when[1]:02d}"
            row = sums[when, w.sport] = {
                "period": name,
                "sport": w.sport,
                "count": 0,
                "distance_m": 0.0,
                "moving_s": 0.0,
                "elevation_gain_m": 0.0,
            }
        row["count"] += 1
        row["distance_m"] += w.distance_m
        row["moving_s"] += w.moving_s
        row["elevation_gain_m"] += w.elevation_gain_m
    order = sorted(sums, key=lambda k: (-k[0][0], -k[0][1], k[1]))
    return [sums[k] for k in order]


def personal_records(
    workouts: Iterable[WorkoutFacts | Mapping[str, Any]], tz_offset_minutes: int = 0
) -> dict[str, dict]:
    """Per sport: the fastest time at each effort distance and the longest workout.

    ``{"run": {"efforts": {"5k": {"seconds", "workout_id", "date"}}, "longest": {"distance_m", "workout_id", "date"}}}``;
    on a tie the earlier workout keeps the record.
    """
    _check_offset(tz_offset_minutes)
    records: dict[str, dict] = {}
    for w in sorted(_facts(workouts), key=lambda w: (w.start, w.id)):
        day = _local_day(w.start, tz_offset_minutes).isoformat()
        sport = records.setdefault(w.sport, {"efforts": {}, "longest": None})
        for key, seconds in w.best_efforts.items():
            best = sport["efforts"].get(key)
            if best is None or seconds < best["seconds"]:
                sport["efforts"][key] = {"seconds": seconds, "workout_id": w.id, "date": day}
        if sport["longest"] is None or w.distance_m > sport["longest"]["distance_m"]:
            sport["longest"] = {"distance_m": w.distance_m, "workout_id": w.id, "date": day}
    return records


def _runs(indexes: set[int], now: int) -> tuple[int, int]:
    """(current, longest) run of consecutive indexes; the current one ends at ``now`` or just before."""
    longest = current = run = 0
    previous = None
    for index in sorted(indexes):
        run = run + 1 if previous == index - 1 else 1
        longest = max(longest, run)
        if index >= now - 1:
            current = run
        previous = index
    return current, longest


def _week_index(day: date) -> int:
    return (day.toordinal() - day.weekday()) // 7  # Mondays are 7 apart


def streaks(
    workouts: Iterable[WorkoutFacts | Mapping[str, Any]], today: date, tz_offset_minutes: int = 0
) -> dict[str, int]:
    """Current and longest runs of active days and of active ISO weeks.

    A current streak still counts when its last day (week) is yesterday (last
    week): today is not over yet. Workouts dated after ``today`` are ignored.
    """
    if not isinstance(today, date) or isinstance(today, datetime):
        raise TypeError(f"today must be a datetime.date, got {type(today).__name__}")
    _check_offset(tz_offset_minutes)
    days = {d for w in _facts(workouts) if (d := _local_day(w.start, tz_offset_minutes)) <= today}
    current_days, longest_days = _runs({d.toordinal() for d in days}, today.toordinal())
    current_weeks, longest_weeks = _runs({_week_index(d) for d in days}, _week_index(today))
    return {
        "current_days": current_days,
        "longest_days": longest_days,
        "current_weeks": current_weeks,
        "longest_weeks": longest_weeks,
    }
