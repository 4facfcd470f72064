"""Resting heart rate and heart-rate variability trends: the morning readings a watch or strap sends.

HRV is the rMSSD in milliseconds, judged on its natural logarithm (its distribution is skewed; Plews
et al. 2012, "Heart rate variability in elite triathletes"). Both series are read as a 7-day rolling
mean against a baseline: the mean and standard deviation of the daily values of the 60 days before
the last 7 (at least ``MIN_BASELINE`` readings). The normal range of the 7-day mean is the baseline
± the smallest worthwhile change, half a standard deviation (Plews et al. 2013; Buchheit 2014,
"Monitoring training status with HR measures"). A 7-day mean under the range says the body is
coping less well (fatigue, illness, stress); over it, for HRV, nothing worrying; resting heart rate
the other way round, with a floor of 2 bpm for the change so a very steady baseline does not flag
every beat.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["BASELINE_DAYS", "MIN_BASELINE", "RECENT_DAYS", "trend", "trends"]

RECENT_DAYS = 7
BASELINE_DAYS = 60
MIN_BASELINE = 14  # readings in the baseline window before a judgement is made
_MIN_RHR_CHANGE = 2.0  # bpm


def trend(readings: Mapping[int, float], today: int, *, log: bool, higher_is_better: bool) -> dict:
    """The series' 7-day mean against its baseline on day ordinal ``today``: ``recent`` (the 7-day mean,
    in the reading's unit), ``baseline``, ``low``/``high`` (the normal range), ``status``
    (``within``, ``below``, ``above``, or ``unknown`` without enough readings) and ``concern``
    (True when the move is the worrying way)."""
    recent = [readings[d] for d in range(today - RECENT_DAYS + 1, today + 1) if d in readings]
    first = today - RECENT_DAYS - BASELINE_DAYS + 1
    base = [readings[d] for d in range(first, today - RECENT_DAYS + 1) if d in readings]
    unknown = {"recent": None, "baseline": None, "low": None, "high": None, "status": "unknown", "concern": False,
               "readings": len(base) + len(recent)}  # fmt: skip
    if not recent:
        return unknown
    transform = np.log if log else np.asarray
    back = np.exp if log else (lambda x: x)
    mean_recent = float(np.mean(transform(np.asarray(recent, dtype=float))))
    answer = {**unknown, "recent": round(float(back(mean_recent)), 1)}
    if len(base) < MIN_BASELINE:
        return answer
    values = transform(np.asarray(base, dtype=float))
    centre, spread = float(np.mean(values)), float(np.std(values, ddof=1))
    change = 0.5 * spread if log else max(_MIN_RHR_CHANGE, 0.5 * spread)
    low, high = centre - change, centre + change
    status = "below" if mean_recent < low else "above" if mean_recent > high else "within"
    concern = status == ("below" if higher_is_better else "above")
    return {**answer, "baseline": round(float(back(centre)), 1), "low": round(float(back(low)), 1),
            "high": round(float(back(high)), 1), "status": status, "concern": concern}  # fmt: skip


def trends(days: Sequence[tuple[int, float | None, float | None]], today: int) -> dict:
    """Both trends from ``(day ordinal, resting_hr, hrv_ms)`` readings (None: not measured that day), with a
    note in words for each concern."""
    resting = {day: float(hr) for day, hr, _ in days if hr is not None and math.isfinite(hr)}
    hrv = {day: float(ms) for day, _, ms in days if ms is not None and math.isfinite(ms) and ms > 0}
    answer = {
        "resting_hr": trend(resting, today, log=False, higher_is_better=False),
        "hrv": trend(hrv, today, log=True, higher_is_better=True),
    }
    notes = []
    if answer["hrv"]["concern"]:
        h = answer["hrv"]
        notes.append(f"Your HRV this week ({h['recent']} ms) is under your normal range ({h['low']}–{h['high']} ms): "
                     "your body may be coping less well with training, illness or stress. Go easier for a few days.")  # fmt: skip
    if answer["resting_hr"]["concern"]:
        r = answer["resting_hr"]
        notes.append(f"Your resting heart rate this week ({r['recent']} bpm) is over your normal range "
                     f"({r['low']}–{r['high']} bpm): a sign of fatigue or of an illness coming.")  # fmt: skip
    return {**answer, "notes": notes}
