"""Training load: what each workout cost, and fitness, fatigue and form from the daily sums.

Pure functions over workout summaries (the fields ``GET /workouts/{id}`` shows) and arrays of
daily loads, oldest day first. Every load is on one scale, the Training Stress Score's: an hour
at threshold is 100, however it was measured (docs/training.md):

- **power** (a ride with ``avg_power`` and an FTP): Coggan's TSS,
  ``s × NP × IF / (FTP × 3600) × 100`` with ``IF = NP / FTP`` (Allen & Coggan, *Training and
  Racing with a Power Meter*, 2010). A summary has no power stream, so NP is taken as the
  average power (which under-reads a surging ride: NP ≥ average power).
- **heart rate** (``avg_hr`` and the athlete's rest, max and threshold heart rate): Banister's
  TRIMP, ``minutes × HRr × 0.64 × e^(1.92 × HRr)`` with ``HRr = (avg − rest) / (max − rest)``
  (Banister 1991, the men's weighting: Arena does not ask the sex), scaled so that an hour at the
  threshold heart rate is 100 (TrainingPeaks' hrTSS).
- **pace** (a run with a distance and a threshold pace): rTSS, ``hours × IF² × 100`` with
  ``IF = speed / threshold speed`` (TrainingPeaks' rTSS, flat-ground speed: no grade correction).
- else **session RPE**: ``RPE (CR-10) × minutes`` (Foster et al. 2001), the RPE given or the
  sport's default (``DEFAULT_RPE``), scaled so that an hour at RPE 7 ("very hard", about
  threshold) is 100.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "ATL_DAYS",
    "CTL_DAYS",
    "DEFAULT_RPE",
    "Day",
    "Thresholds",
    "WARNINGS",
    "acwr",
    "critical_speed",
    "estimate_thresholds",
    "forecast",
    "hr_tss",
    "monotony_strain",
    "performance",
    "power_tss",
    "run_tss",
    "srpe_load",
    "today",
    "trimp",
    "warnings",
    "workout_load",
]

CTL_DAYS = 42  # fitness: the chronic training load's time constant
ATL_DAYS = 7  # fatigue: the acute training load's
DEFAULT_REST_HR = 60.0
DEFAULT_RPE = {"run": 6, "ride": 5, "swim": 5, "row": 6, "walk": 3, "hike": 4, "other": 5}
RPE_AT_THRESHOLD = 7.0  # CR-10 "very hard": an hour of it counts as an hour at threshold (100)
MAX_MONOTONY = 10.0  # seven identical non-zero days have no spread: monotony is shown as this cap
MAX_WORKOUT_LOAD = 2_000.0  # a week of threshold in one summary is bad data, not training

# The warnings, their thresholds, and what makes each one (docs/training.md).
FORM_LOW = -30.0
FORM_LOW_DAYS = 7
ACWR_HIGH = 1.5
RAMP_HIGH = 8.0
MONOTONY_HIGH = 2.0
WARNINGS = ("form_low", "acwr_high", "ramp_high", "monotony_high")

_K_CTL = 1.0 - math.exp(-1.0 / CTL_DAYS)
_K_ATL = 1.0 - math.exp(-1.0 / ATL_DAYS)
# Critical speed from efforts of about 2 to 60 minutes: shorter ones lean on anaerobic capacity,
# longer ones on endurance (Monod & Scherrer 1965; Hill 1993).
_CS_EFFORTS = ("1k", "5k", "10k")
EFFORT_METRES = {"1k": 1_000.0, "5k": 5_000.0, "10k": 10_000.0, "half": 21_097.5, "marathon": 42_195.0}


def _number(value: Any) -> float | None:
    kind = type(value)  # int and float first: the ABC's isinstance costs a few µs, and a recompute calls this 10^8 times
    if kind is float or kind is int or (kind is not bool and isinstance(value, numbers.Real)):
        number = float(value)
        return number if math.isfinite(number) and number > 0 else None
    return None


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The athlete's thresholds: each estimated from their own workouts or set by them; None: unknown."""

    ftp_w: float | None = None
    threshold_hr: float | None = None
    max_hr: float | None = None
    rest_hr: float = DEFAULT_REST_HR
    threshold_pace_s_per_km: float | None = None  # running, from the critical speed

    def to_dict(self) -> dict:
        return asdict(self)


# -- load per workout ----------------------------------------------------------------------------


def power_tss(seconds: float, np_w: float, ftp_w: float) -> float:
    """Coggan's TSS; ``np_w`` the normalized power (the average power when there is no stream)."""
    intensity = np_w / ftp_w
    return seconds * np_w * intensity / (ftp_w * 3600.0) * 100.0


def trimp(seconds: float, avg_hr: float, rest_hr: float, max_hr: float) -> float:
    """Banister's TRIMP (1991), men's weighting: minutes × HRr × 0.64 e^(1.92 HRr)."""
    reserve = min(1.0, max(0.0, (avg_hr - rest_hr) / (max_hr - rest_hr)))
    return seconds / 60.0 * reserve * 0.64 * math.exp(1.92 * reserve)


def hr_tss(seconds: float, avg_hr: float, thresholds: Thresholds) -> float:
    """TRIMP as a share of an hour's TRIMP at the threshold heart rate, × 100."""
    assert thresholds.max_hr is not None and thresholds.threshold_hr is not None
    hour = trimp(3600.0, thresholds.threshold_hr, thresholds.rest_hr, thresholds.max_hr)
    return trimp(seconds, avg_hr, thresholds.rest_hr, thresholds.max_hr) / hour * 100.0 if hour > 0 else 0.0


def run_tss(seconds: float, distance_m: float, threshold_pace_s_per_km: float) -> float:
    """rTSS: hours × IF² × 100, IF = speed / threshold speed."""
    intensity = (distance_m / seconds) / (1000.0 / threshold_pace_s_per_km)
    return seconds / 3600.0 * intensity**2 * 100.0


def srpe_load(seconds: float, rpe: float) -> float:
    """Foster's session RPE (RPE × minutes), scaled so an hour at RPE 7 is 100."""
    return rpe * seconds / 60.0 * 100.0 / (RPE_AT_THRESHOLD * 60.0)


def workout_load(summary: Mapping[str, Any], thresholds: Thresholds) -> tuple[float, str]:
    """The workout's load and how it was measured (power, hr, pace, rpe); (0, "none") without a duration."""
    seconds = _number(summary.get("moving_s")) or _number(summary.get("elapsed_s"))
    if seconds is None:
        return 0.0, "none"
    sport = summary.get("sport")
    power, avg_hr, distance = (_number(summary.get(k)) for k in ("avg_power", "avg_hr", "distance_m"))
    if power is not None and thresholds.ftp_w:
        load, method = power_tss(seconds, power, thresholds.ftp_w), "power"
    elif avg_hr is not None and thresholds.threshold_hr and thresholds.max_hr:
        load, method = hr_tss(seconds, avg_hr, thresholds), "hr"
    elif sport == "run" and distance is not None and thresholds.threshold_pace_s_per_km:
        load, method = run_tss(seconds, distance, thresholds.threshold_pace_s_per_km), "pace"
    else:
        rpe = _number(summary.get("rpe"))
        rpe = min(10.0, rpe) if rpe is not None else float(DEFAULT_RPE.get(str(sport), DEFAULT_RPE["other"]))
        load, method = srpe_load(seconds, rpe), "rpe"
    return min(MAX_WORKOUT_LOAD, load), method


# -- thresholds from the athlete's own workouts --------------------------------------------------


def critical_speed(efforts: Mapping[str, float]) -> float | None:
    """Critical speed (m/s): the slope of distance against time over the best efforts of 1 to 10 km
    (least squares, D = D' + CS × T); None with fewer than two of them or a slope that is no speed."""
    points = [(EFFORT_METRES[k], s) for k, s in efforts.items() if k in _CS_EFFORTS and _number(s)]
    if len(points) < 2:
        return None
    distances, times = np.array(points).T
    slope = float(np.polyfit(times, distances, 1)[0])
    return slope if 0.5 < slope < 12.0 else None


def estimate_thresholds(
    summaries: Iterable[Mapping[str, Any]], overrides: Mapping[str, float] | None = None
) -> Thresholds:
    """Thresholds from the athlete's workouts, each replaced by the athlete's own value where set.

    - eFTP: the best average power of a ride of 20–60 minutes × 0.95 (Coggan's 20-minute test),
      or of a ride of an hour or more as it is (FTP is about the best hour's power);
    - max heart rate: the highest one recorded;
    - threshold heart rate: the best average heart rate over 20–60 minutes (Friel's 30-minute
      test), else 89 % of the max;
    - threshold pace: 1 km at the critical speed of the best 1k, 5k and 10k efforts.
    """
    ftp = max_hr = lthr = 0.0
    efforts: dict[str, float] = {}
    for summary in summaries:
        seconds = _number(summary.get("moving_s")) or 0.0
        power, avg_hr, peak = (_number(summary.get(k)) for k in ("avg_power", "avg_hr", "max_hr"))
        if power is not None and summary.get("sport") == "ride" and seconds >= 1200:
            ftp = max(ftp, power * (0.95 if seconds < 3600 else 1.0))
        if peak is not None and peak <= 230:
            max_hr = max(max_hr, peak)
        if avg_hr is not None and 1200 <= seconds <= 3600 and avg_hr <= 230:
            lthr = max(lthr, avg_hr)
        best = summary.get("best_efforts")
        if summary.get("sport") == "run" and isinstance(best, Mapping):
            for key, value in best.items():
                if key in EFFORT_METRES and _number(value) and value < efforts.get(key, math.inf):
                    efforts[key] = float(value)
    if max_hr and lthr > max_hr:
        max_hr = lthr
    if max_hr and not lthr:
        lthr = 0.89 * max_hr
    speed = critical_speed(efforts)
    found: dict[str, Any] = {
        "ftp_w": ftp or None,
        "max_hr": max_hr or None,
        "threshold_hr": lthr or None,
        "rest_hr": DEFAULT_REST_HR,
        "threshold_pace_s_per_km": 1000.0 / speed if speed else None,
    }
    found.update({k: float(v) for k, v in (overrides or {}).items() if v is not None})
    if found["max_hr"] is not None and found["max_hr"] <= found["rest_hr"] + 20:
        found["max_hr"] = None  # no reserve to measure against
    if found["threshold_hr"] is not None and found["threshold_hr"] <= found["rest_hr"]:
        found["threshold_hr"] = None
    return Thresholds(**found)


# -- fitness, fatigue, form ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Day:
    """One day of the performance chart."""

    day: int  # date ordinal
    load: float
    fitness: float  # CTL
    fatigue: float  # ATL
    form: float  # TSB: yesterday's fitness − yesterday's fatigue


def performance(loads: np.ndarray, fitness0: float = 0.0, fatigue0: float = 0.0) -> tuple[np.ndarray, ...]:
    """Banister's impulse-response model as exponentially weighted averages of the daily loads
    (time constants 42 and 7 days): ``x_t = x_{t−1} + (load_t − x_{t−1}) (1 − e^{−1/τ})``.
    Returns fitness, fatigue and form per day; form is the day before's fitness − fatigue."""
    n = len(loads)
    fitness, fatigue = np.empty(n), np.empty(n)
    ctl, atl = fitness0, fatigue0
    for i, load in enumerate(loads.tolist()):
        ctl += (load - ctl) * _K_CTL
        atl += (load - atl) * _K_ATL
        fitness[i], fatigue[i] = ctl, atl
    form = np.empty(n)
    if n:
        form[0] = fitness0 - fatigue0
        form[1:] = fitness[:-1] - fatigue[:-1]
    return fitness, fatigue, form


def acwr(loads: np.ndarray) -> float | None:
    """Acute:chronic workload ratio of the last day: the 7-day average over the 28-day average
    (rolling averages, Gabbett 2016); None without 28 days of history or with no chronic load."""
    if len(loads) < 28:
        return None
    chronic = float(loads[-28:].sum()) / 28.0
    return float(loads[-7:].sum()) / 7.0 / chronic if chronic > 0 else None


def monotony_strain(loads: np.ndarray) -> tuple[float | None, float]:
    """Foster's (1998) monotony (the last 7 days' mean load over its standard deviation) and
    strain (the week's load × monotony). No load: (None, 0)."""
    week = np.zeros(7)
    tail = loads[-7:]
    week[7 - len(tail) :] = tail
    total = float(week.sum())
    if total <= 0:
        return None, 0.0
    spread = float(week.std())
    monotony = MAX_MONOTONY if spread < 1e-9 else min(MAX_MONOTONY, float(week.mean()) / spread)
    return monotony, total * monotony


def today(loads: np.ndarray, first: int, fitness0: float = 0.0, fatigue0: float = 0.0) -> dict:
    """The last day's figures: fitness, fatigue, form, ACWR, monotony, strain, ramp (fitness
    gained over the last 7 days) and the form of each of the last ``FORM_LOW_DAYS`` days."""
    fitness, fatigue, form = performance(loads, fitness0, fatigue0)
    monotony, strain = monotony_strain(loads)
    week_ago = fitness[-8] if len(fitness) >= 8 else fitness0
    return {
        "day": first + len(loads) - 1,
        "load": float(loads[-1]) if len(loads) else 0.0,
        "fitness": float(fitness[-1]) if len(loads) else fitness0,
        "fatigue": float(fatigue[-1]) if len(loads) else fatigue0,
        "form": float(form[-1]) if len(loads) else fitness0 - fatigue0,
        "acwr": acwr(loads),
        "monotony": monotony,
        "strain": strain,
        "ramp": float(fitness[-1] - week_ago) if len(loads) else 0.0,
        "recent_form": [float(f) for f in form[-FORM_LOW_DAYS:]],
        "week_load": float(loads[-7:].sum()),
    }


def warnings(figures: Mapping[str, Any]) -> dict[str, str]:
    """The warnings the day's figures raise (code -> the reason in words)."""
    found: dict[str, str] = {}
    recent = figures["recent_form"]
    if len(recent) >= FORM_LOW_DAYS and max(recent) < FORM_LOW:
        found["form_low"] = (
            f"Your form has been below {FORM_LOW:.0f} for {FORM_LOW_DAYS} days (today {figures['form']:.1f}): "
            "fatigue is far above fitness. Ease off for a few days."
        )
    if figures["acwr"] is not None and figures["acwr"] > ACWR_HIGH:
        found["acwr_high"] = (
            f"This week's load is {figures['acwr']:.2f} times your 4-week average (above {ACWR_HIGH}): "
            "a jump that raises the risk of injury."
        )
    if figures["ramp"] > RAMP_HIGH:
        found["ramp_high"] = (
            f"Your fitness rose {figures['ramp']:.1f} points in a week (above {RAMP_HIGH:.0f}): "
            "the load is building faster than the body adapts."
        )
    if figures["monotony"] is not None and figures["monotony"] > MONOTONY_HIGH:
        found["monotony_high"] = (
            f"Your training monotony is {figures['monotony']:.1f} (above {MONOTONY_HIGH:.0f}): every day "
            "is alike. Mix hard days with easy ones or rest."
        )
    return found


def forecast(fitness: float, fatigue: float, weekly_load: float, days: int) -> list[dict]:
    """The model run forward ``days`` days from today's fitness and fatigue, the weekly load
    spread evenly over its days: each future day's fitness, fatigue and form."""
    if days < 0 or not math.isfinite(weekly_load) or weekly_load < 0:
        raise ValueError("a forecast needs a number of days and a weekly load that are not negative")
    loads = np.full(days, weekly_load / 7.0)
    ahead = performance(loads, fitness, fatigue)
    return [
        {"offset": i + 1, "load": float(loads[i]), "fitness": float(ahead[0][i]), "fatigue": float(ahead[1][i]),
         "form": float(ahead[2][i])}
        for i in range(days)
    ]  # fmt: skip
