"""What a workout earns: points for effort, the same for the same effort in any sport.

``points = moving minutes × (MET − 1) / 10 × the source's weight``: the effort above rest
(``intensity.met``), so an hour's hard swim earns what an hour's hard ride or run does, and a
long easy ride earns no more than its time and intensity, whatever its distance. Manual
workouts (typed in, no recording behind them) earn ``SOURCE_WEIGHTS["manual"]`` of that. An
athlete earns at most ``DAILY_CAP`` points per day of their own calendar (farming a day with
hours of easy spinning stops there). A workout whose figures cannot be true (``implausible``)
earns nothing and counts towards no badge.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from engine.gamification.intensity import Heart, met
from engine.training.tracks import BEST_EFFORT_DISTANCES_M

__all__ = [
    "DAILY_CAP",
    "MAX_SPEED_M_S",
    "SOURCE_WEIGHTS",
    "capped",
    "implausible",
    "workout_points",
]

DAILY_CAP = 300
SOURCE_WEIGHTS = {"manual": 0.5}  # every other source (a file, a device, a race) weighs 1
# The fastest average over a whole workout that is still a human effort, per sport (m/s). World
# records average 5.7 m/s over a marathon and 10.4 over 100 m; a bike's 25 m/s is 90 km/h.
MAX_SPEED_M_S = {"run": 7.0, "walk": 3.5, "hike": 3.5, "ride": 25.0, "swim": 3.0, "row": 7.0, "other": 40.0}
MAX_MOVING_S = 7 * 86_400.0  # what a workout by hand may last
MAX_AVG_POWER_W = 2_000.0


def _number(value: Any) -> float | None:
    """A finite real number, or None (absent); anything else is NaN, which no check passes."""
    if value is None:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else math.nan
    return math.nan


def implausible(summary: Mapping[str, Any]) -> str | None:
    """Why this workout's figures cannot be true, or None when they can."""
    sport = summary.get("sport")
    if not isinstance(sport, str):
        return "no sport"
    moving, elapsed, distance = (_number(summary.get(k)) for k in ("moving_s", "elapsed_s", "distance_m"))
    for name, value in (("moving time", moving), ("elapsed time", elapsed), ("distance", distance)):
        if value is not None and not value >= 0:
            return f"the {name} is not a number of at least 0"
    if moving is not None and moving > MAX_MOVING_S:
        return "it moved for more than 7 days"
    if moving and elapsed and moving > elapsed + 60:
        return "it moved for longer than it lasted"
    if moving and distance and distance / moving > MAX_SPEED_M_S.get(sport, MAX_SPEED_M_S["other"]):
        return f"an average of {distance / moving * 3.6:.0f} km/h is not a {sport}"
    if not moving and distance and distance > 1_000:
        return "a distance covered in no time"
    avg_hr, max_hr = _number(summary.get("avg_hr")), _number(summary.get("max_hr"))
    if avg_hr is not None and not 25 <= avg_hr <= 250:
        return "an average heart rate outside 25-250"
    if max_hr is not None and not (25 <= max_hr <= 250 and (avg_hr is None or max_hr >= avg_hr)):
        return "a maximum heart rate outside 25-250 or below the average"
    power = _number(summary.get("avg_power"))
    if power is not None and not 0 <= power <= MAX_AVG_POWER_W:
        return "an average power outside 0-2,000 W"
    efforts = summary.get("best_efforts") or {}
    if not isinstance(efforts, Mapping):
        return "best efforts that are not a map"
    fastest = MAX_SPEED_M_S.get(sport, MAX_SPEED_M_S["other"]) * 1.5  # a short effort beats the average
    for key, seconds in efforts.items():
        length = BEST_EFFORT_DISTANCES_M.get(key)
        value = _number(seconds)
        if value is None or not value > 0 or (length is not None and length / value > fastest):
            return f"a best effort over {key} of {seconds!r} s"
    return None


def workout_points(summary: Mapping[str, Any], heart: Heart | None = None) -> float:
    """The points a plausible workout earns before the daily cap (weighted by its source)."""
    moving = _number(summary.get("moving_s")) or 0.0
    intensity = met(
        summary["sport"],
        moving,
        _number(summary.get("distance_m")) or 0.0,
        elevation_gain_m=_number(summary.get("elevation_gain_m")) or 0.0,
        avg_hr=_number(summary.get("avg_hr")),
        avg_power=_number(summary.get("avg_power")),
        heart=heart,
    )
    weight = SOURCE_WEIGHTS.get(summary.get("source") or "", 1.0)
    return moving / 60.0 * (intensity - 1.0) / 10.0 * weight


def capped(points: float, earned_that_day: int, cap: int = DAILY_CAP) -> int:
    """Whole points to award, the day's cap taken into account (rounded half up)."""
    return max(0, min(int(points + 0.5), cap - earned_that_day))
