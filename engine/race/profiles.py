"""Sport profiles: the thresholds fair play holds each sport to, as data, with their sources.

An organizer may tighten a race's thresholds within bounds (``TIGHTEN``, ``tightened``);
looser than the profile is refused. The rules that read them are in ``fair_play``; what
each catches and why its line sits where it does is in ``docs/fair-play.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["SportProfile", "PROFILES", "SPORTS", "TIGHTEN", "tightened"]


@dataclass(frozen=True, slots=True)
class SportProfile:
    max_speed: float  # m/s: 3 reported speeds in a row, or from distance over ≥ 5 s
    window_speed: float  # m/s: cap on the mean speed over ~20 s (an EMA)
    long_speed: float  # m/s: cap on the mean speed over ~150 s (an EMA)
    accel_power: float  # W/kg: speed × acceleration no body sustains for ACCEL_STEPS seconds
    move_speed: float  # m/s from which the athlete's own motion must show in the cadence
    min_cadence: float | None = None  # steps or revolutions per minute at move_speed and above
    effort_speed: float | None = None  # m/s held for EFFORT_S: race effort by pace
    effort_power: float | None = None  # W held for EFFORT_S: race effort by power
    hr_floor: float | None = None  # bpm: no heart at race effort beats slower
    coast_speed: float | None = None  # m/s from which the power a speed needs is checked
    cda: float | None = None  # m²: the smallest drag area of a rider at speed in a small group
    indoor_cda: float | None = None  # m²: the smallest deep in a peloton (indoor speed may be drafted)
    crr: float = 0.003  # the lowest rolling resistance of a racing tyre on smooth tarmac
    stride_max: float | None = None  # m per step: no distance runner strides further (indoor runs)
    wkg_5min: tuple[float, float] | None = None  # W/kg over any 5 minutes: (men, women)
    wkg_20min: tuple[float, float] | None = None  # W/kg over any 20 minutes: (men, women)


# Sources. Running: World Athletics records (400 m 43.03 s = 9.30 m/s; 1500 m 3:26.00 =
# 7.28 m/s; 100 m peak ~12.3 m/s, Bolt 2009); cadence 150-210 spm at every running pace
# (Cavanagh & Kram 1989; Heiderscheit 2011); stride ~2.0 m for elite 5-10 km pace. Cycling:
# the men's 5-min and functional-threshold ceilings of Coggan's power profile (Allen & Coggan,
# "Training and Racing with a Power Meter", table 3.1: 7.60 and 6.40 W/kg; women 6.61 and
# 5.69), the caps ZwiftPower-style race verification applies; drag area 0.25-0.35 m² for a
# road position, -30 to -50 % deep in a pack (Blocken 2018), so 0.18 m² is below any rider.
# Heart rate: a trained athlete's heart at race effort beats at 70-95 % of its maximum,
# well above 100 bpm even for elites with resting rates near 40 (Achten & Jeukendrup 2003).
PROFILES = {
    "run": SportProfile(
        max_speed=12.5,
        window_speed=9.0,  # 600 m indoor record 1:12.81 = 8.2 m/s; 400 m 9.3 m/s over 43 s
        long_speed=7.6,  # 2000 m record 4:44.79 = 7.02 m/s
        accel_power=30.0,
        move_speed=3.5,
        min_cadence=100.0,
        effort_speed=2.2,  # a jog; walking tops out near 2 m/s
        hr_floor=95.0,
        stride_max=2.3,
    ),
    "walk": SportProfile(
        max_speed=4.8, window_speed=4.2, long_speed=4.0, accel_power=20.0, move_speed=1.8, min_cadence=70.0
    ),
    "ride": SportProfile(
        max_speed=30.0,  # beyond a sprint (~20 m/s) and a fast descent
        window_speed=20.0,  # 72 km/h held: beyond a flat-road pack; a 15 s sprint at 20 m/s averages less
        long_speed=16.0,  # the hour record is 15.3 m/s (55.1 km/h, 2022); no flat pack holds 58 km/h for minutes
        accel_power=30.0,  # a 25 W/kg sprint peak (Menaspà 2015) is all a body has; a car pulls away at 2-4 m/s²
        move_speed=12.0,
        min_cadence=40.0,  # riders turn 70-100 rpm; coasting reads absent, not low
        effort_speed=8.0,
        effort_power=130.0,
        hr_floor=90.0,
        coast_speed=13.0,
        cda=0.18,
        indoor_cda=0.10,  # a rider deep in a peloton meets ~10 % of the drag alone (Blocken 2018)
        wkg_5min=(7.5, 6.6),
        wkg_20min=(6.4, 5.7),
    ),
    "swim": SportProfile(max_speed=2.5, window_speed=2.3, long_speed=2.1, accel_power=10.0, move_speed=1.0),
    # Rowing: 2000 m world record of the men's eight 5:18.68 = 6.28 m/s; single sculls ~5.6 m/s.
    "row": SportProfile(
        max_speed=7.0,
        window_speed=6.5,
        long_speed=6.4,
        accel_power=20.0,
        move_speed=4.0,
        min_cadence=14.0,
        effort_power=150.0,
        hr_floor=90.0,
        wkg_5min=(7.0, 6.0),  # Concept2 2000 m records: ~6.9 W/kg men, ~5.9 W/kg women over ~5:40
        wkg_20min=(5.8, 5.0),
    ),
    # Cross-country skiing: sprint finishes reach 10 m/s, descents 20 m/s for a few seconds.
    "ski": SportProfile(
        max_speed=22.0,
        window_speed=12.0,
        long_speed=9.0,  # 50 km classic winners average ~6.5 m/s; a sprint ~8 m/s
        accel_power=30.0,
        move_speed=6.0,
        effort_speed=4.0,
        hr_floor=100.0,
    ),
}
SPORTS = tuple(PROFILES)  # the sports a race may be: the ones fair play has a profile for

# What an organizer may tighten, and how far: (the direction that is tighter, the farthest
# a race may move from the profile as a fraction of it). Looser than the profile is refused.
TIGHTEN = {
    "max_speed": ("lower", 0.5),
    "window_speed": ("lower", 0.5),
    "wkg_5min": ("lower", 0.75),
    "wkg_20min": ("lower", 0.75),
    "hr_floor": ("higher", 1.2),
}


def tightened(profile: SportProfile, overrides: dict[str, float] | None) -> SportProfile:
    """The profile with a race's own tighter thresholds; ValueError for a looser or unknown one."""
    if not overrides:
        return profile
    if not isinstance(overrides, dict):
        raise ValueError("fair_play settings are a map of threshold name to value")
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in TIGHTEN:
            raise ValueError(f"fair_play may tighten {', '.join(TIGHTEN)}, not {name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"fair_play {name} must be a number, not {value!r}")
        current = getattr(profile, name)
        if current is None:
            raise ValueError(f"this sport has no {name} to tighten")
        base = current[0] if isinstance(current, tuple) else current
        direction, reach = TIGHTEN[name]
        lo, hi = (base * reach, base) if direction == "lower" else (base, base * reach)
        if not lo <= value <= hi:
            raise ValueError(f"fair_play {name} may be tightened within {lo:g}-{hi:g}, not {value!r}")
        if isinstance(current, tuple):  # the men's cap as given, the women's moved in proportion
            changes[name] = (float(value), *(x * value / base for x in current[1:]))
        else:
            changes[name] = float(value)
    return replace(profile, **changes)
