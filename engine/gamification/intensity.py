"""How hard a workout was, as a MET value (multiples of the energy spent at rest), sport-blind
where the data allow it.

In order of preference:

1. **Heart rate** relative to the athlete's own reserve, when the athlete gave their maximum
   (and resting) heart rate: ``MET = 1 + HRR × (13 − 1)``, where ``HRR = (avg − rest) /
   (max − rest)`` and 13 METs is the aerobic capacity of a fit recreational athlete (ACSM: the
   share of heart-rate reserve tracks the share of VO₂ reserve). The same heart rate for the same
   time is the same effort whatever the sport.
2. **Power** on a bike: ACSM's leg-cycling equation, ``VO₂ = 10.8 · W / kg + 7`` ml/kg/min, for a
   rider of 75 kg (Arena does not ask the weight).
3. **Pace**, from each sport's table: ACSM's running and walking equations (with the climb's
   grade for walks and hikes), the Compendium of Physical Activities (Ainsworth et al., 2011) for
   riding, swimming and rowing speeds, and 5 METs for anything else.

Every value is kept between 1 and ``MAX_MET``: an average beyond that over a whole workout is
not an effort, it is bad data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AEROBIC_CAPACITY_MET", "DEFAULT_REST_HR", "Heart", "MAX_MET", "met", "met_from_heart_rate", "met_from_pace"]

MAX_MET = 16.0
AEROBIC_CAPACITY_MET = 13.0
DEFAULT_REST_HR = 60.0
RIDER_KG = 75.0
OTHER_MET = 5.0

# (pace or speed bound, MET): the first row whose bound the workout is within applies.
_RIDE_KMH = ((16.0, 4.0), (19.3, 6.8), (22.5, 8.0), (25.7, 10.0), (math.inf, 12.0))  # speed up to → MET
_SWIM_S_PER_100M = ((90.0, 11.0), (110.0, 9.8), (130.0, 8.3), (160.0, 7.0), (200.0, 5.8), (math.inf, 4.8))
_ROW_S_PER_500M = ((120.0, 12.0), (135.0, 8.5), (155.0, 7.0), (math.inf, 4.8))  # ~200, 150, 100, <80 W
# Cycling speed says less than a runner's pace (drafting, descents): the table stops at 12 METs,
# the Compendium's 16–19 mph, where the Compendium goes on to 15.8 for racing speeds.


@dataclass(frozen=True, slots=True)
class Heart:
    """The athlete's own heart rates, when known."""

    max_hr: float
    rest_hr: float = DEFAULT_REST_HR

    def __post_init__(self) -> None:
        if not (100 <= self.max_hr <= 240 and 25 <= self.rest_hr < self.max_hr - 20):
            raise ValueError(f"a heart's rates are a maximum of 100-240 and a rest 20 below it, not {self}")


def _bounded(value: float) -> float:
    return min(MAX_MET, max(1.0, value))


def met_from_heart_rate(avg_hr: float, heart: Heart) -> float:
    reserve = (avg_hr - heart.rest_hr) / (heart.max_hr - heart.rest_hr)
    return _bounded(1.0 + min(1.0, max(0.0, reserve)) * (AEROBIC_CAPACITY_MET - 1.0))


def _table(rows: tuple[tuple[float, float], ...], value: float) -> float:
    return next(met for bound, met in rows if value <= bound)


def met_from_pace(
    sport: str, moving_s: float, distance_m: float, elevation_gain_m: float = 0.0, avg_power: float | None = None
) -> float:
    """The sport's table, from the workout's average speed (or a ride's average power)."""
    speed = distance_m / moving_s if moving_s > 0 else 0.0  # m/s
    if sport == "ride" and avg_power:
        return _bounded((10.8 * avg_power / RIDER_KG + 7.0) / 3.5)
    if speed <= 0:  # time without distance (indoors, by hand): a moderate effort
        return OTHER_MET
    per_minute = speed * 60.0
    grade = min(0.3, elevation_gain_m / distance_m) if distance_m > 0 else 0.0
    if sport == "run":
        return _bounded((3.5 + 0.2 * per_minute + 0.9 * per_minute * grade) / 3.5)
    if sport in ("walk", "hike"):
        return _bounded((3.5 + 0.1 * per_minute + 1.8 * per_minute * grade) / 3.5)
    if sport == "ride":
        return _table(_RIDE_KMH, speed * 3.6)
    if sport == "swim":
        return _table(_SWIM_S_PER_100M, 100.0 / speed)
    if sport == "row":
        return _table(_ROW_S_PER_500M, 500.0 / speed)
    return OTHER_MET


def met(
    sport: str,
    moving_s: float,
    distance_m: float,
    *,
    elevation_gain_m: float = 0.0,
    avg_hr: float | None = None,
    avg_power: float | None = None,
    heart: Heart | None = None,
) -> float:
    """The workout's intensity: from heart rate when both it and the athlete's heart are known."""
    if heart is not None and avg_hr:
        return met_from_heart_rate(avg_hr, heart)
    return met_from_pace(sport, moving_s, distance_m, elevation_gain_m, avg_power)
