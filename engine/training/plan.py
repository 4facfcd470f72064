"""Next workouts and a weekly plan toward a goal race: periodisation rules steered by the load model.

Pure: the plan is a function of the goal, today's figures (fitness, fatigue, form, ACWR), the
athlete's thresholds and predicted race time. Weeks run from tomorrow in blocks of seven days; the
last block holds the race. Counted back from the race: a **taper** of 1–3 weeks by distance
(Mujika & Padilla 2003: volume cut 40–60 %, intensity kept), two **peak** weeks, then **build**
and, before it, **base** (half each of what is left). Each normal week's load grows by ``GROWTH``
but never past what would raise fitness by the load model's ramp limit (``load.RAMP_HIGH``); every
4th week is a **recovery** week at ``RECOVERY_SHARE`` (every 3rd while the athlete is stressed:
form below ``FORM_EASY`` or an ACWR above ``ACWR_CAP``). Steering: form below −20 for 5 days makes
the first week a recovery week; the days are run forward through the impulse-response model, and a
day whose projected form is below −20 is easy; an ACWR above 1.3 caps the first week at the last
four weeks' average week (Gabbett 2016). No more than two hard days in a row (a long session is
hard), counting the last two days done. Paces from the threshold pace (Daniels' zones), power
from the FTP (Coggan's levels). Every week and day says why in words (docs/training.md, "Plan").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from engine.training.load import ATL_DAYS, CTL_DAYS, RAMP_HIGH

__all__ = ["ACWR_CAP", "FORM_EASY", "Goal", "MAX_WEEKS", "RECOVERY_SHARE", "SPORTS", "Situation", "plan", "predicted_seconds",
           "taper_weeks"]  # fmt: skip

SPORTS = ("run", "ride")
FORM_EASY = -20.0  # below this form the next days are easy
FORM_EASY_DAYS = 5  # days below it that make the week a recovery week
ACWR_CAP = 1.3  # above it, the first week's load is capped at the 4-week average week
GROWTH = 0.08  # a normal week's load over the last normal week's
RECOVERY_SHARE = 0.65  # a recovery week's load, of the last normal week's
MIN_WEEK_LOAD = 150.0  # a newcomer's first week: three easy sessions of about 50 min
TAPER_SHARES = {1: (0.6,), 2: (0.75, 0.55), 3: (0.8, 0.65, 0.5)}  # of the peak week's load, week by week
MAX_WEEKS = 52
# Intensity factor (of threshold pace or FTP) per session type; a session's load is hours × IF² × 100.
_IF = {"recovery": 0.65, "easy": 0.72, "long": 0.75, "tempo": 0.88, "intervals": 0.92, "race": 0.95}
_HARD = ("long", "tempo", "intervals", "race")
_QUALITY = {"base": ("tempo",), "build": ("intervals", "tempo"), "peak": ("intervals", "tempo"),
            "taper": ("intervals",), "recovery": ()}  # fmt: skip
_LONG_SHARE = 0.3  # the long session's share of a week's load
_QUALITY_SHARE = 0.18
_MAX_MINUTES = {"run": {"long": 180, "other": 100}, "ride": {"long": 330, "other": 150}}
_MIN_MINUTES = 20
# Daniels' paces as a factor of the threshold pace (seconds per km); Coggan's levels as shares of FTP.
_PACE = {"recovery": (1.30, 1.40), "easy": (1.20, 1.32), "long": (1.18, 1.28), "tempo": (0.99, 1.03),
         "intervals": (0.92, 0.95)}  # fmt: skip
_POWER = {"recovery": (0.0, 0.55), "easy": (0.56, 0.75), "long": (0.60, 0.75), "tempo": (0.88, 0.94),
          "intervals": (1.06, 1.20)}  # fmt: skip
_K_CTL, _K_ATL = 1.0 - math.exp(-1.0 / CTL_DAYS), 1.0 - math.exp(-1.0 / ATL_DAYS)
_WEEK_GAIN = 1.0 - math.exp(-7.0 / CTL_DAYS)  # the share of the gap to a steady daily load fitness closes in a week
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True, slots=True)
class Goal:
    race_day: int  # date ordinal
    distance_m: float
    sport: str  # run or ride
    days_per_week: int  # 3..7
    long_day: int  # 0 Monday .. 6 Sunday
    target_s: float | None = None

    def __post_init__(self) -> None:
        if self.sport not in SPORTS:
            raise ValueError(f"a goal's sport is one of {', '.join(SPORTS)}")
        if not 3 <= self.days_per_week <= 7:
            raise ValueError("a plan needs 3 to 7 days a week")
        if not 0 <= self.long_day <= 6:
            raise ValueError("the long day is 0 (Monday) to 6 (Sunday)")
        if not (math.isfinite(self.distance_m) and self.distance_m > 0):
            raise ValueError("a race distance is a positive number of metres")
        if self.target_s is not None and not (math.isfinite(self.target_s) and self.target_s > 0):
            raise ValueError("a target time is a positive number of seconds")


@dataclass(frozen=True, slots=True)
class Situation:
    """Today as the load model sees it."""

    today: int  # date ordinal
    fitness: float
    fatigue: float
    form: float
    acwr: float | None
    chronic_week: float  # the last 28 days' load / 4
    recent_form: Sequence[float] = ()  # the last days' form, oldest first
    recent_loads: Sequence[float] = ()  # the last two days' loads, oldest first
    threshold_pace_s_per_km: float | None = None
    ftp_w: float | None = None
    predicted_s: float | None = None  # the goal race's predicted time


def taper_weeks(sport: str, distance_m: float) -> int:
    """1 to 3 weeks: the longer the race, the longer the taper (Mujika & Padilla 2003: 8–14 days
    for most; a marathon's 3 weeks is the common practice)."""
    short, middle = (10_000, 21_100) if sport == "run" else (80_000, 160_000)
    return 1 if distance_m <= short else 2 if distance_m <= middle else 3


def predicted_seconds(predictions: Mapping, distance_m: float) -> float | None:
    """The goal distance's time from ``predictions.predict``'s answer: the nearest race carried
    with the athlete's exponent."""
    races = predictions.get("races") or []
    if not races:
        return None
    nearest = min(races, key=lambda r: abs(math.log(r["distance_m"] / distance_m)))
    return float(nearest["seconds"]) * (distance_m / nearest["distance_m"]) ** float(predictions["exponent"])


def _phases(weeks: int, taper: int) -> list[str]:
    taper = min(taper, weeks)
    peak = min(2, weeks - taper)
    build = (weeks - taper - peak + 1) // 2
    return ["base"] * (weeks - taper - peak - build) + ["build"] * build + ["peak"] * peak + ["taper"] * taper


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _pace(seconds_per_km: float) -> str:
    seconds = round(seconds_per_km)
    return f"{seconds // 60}:{seconds % 60:02d}/km"


def _outline(goal: Goal, now: Situation) -> list[dict]:
    weeks = max(1, math.ceil((goal.race_day - now.today) / 7))
    phases = _phases(weeks, taper_weeks(goal.sport, goal.distance_m))
    stressed = now.form < FORM_EASY or (now.acwr is not None and now.acwr > ACWR_CAP)
    low_days = 0
    for form in reversed(now.recent_form):
        if form >= FORM_EASY:
            break
        low_days += 1
    normal = max(now.chronic_week, MIN_WEEK_LOAD)
    fitness = now.fitness
    since_recovery = 0
    outline = []
    peak_load = normal
    for i, phase in enumerate(phases):
        first = now.today + 1 + 7 * i
        kind, reasons = phase, []
        if phase == "taper":
            shares = TAPER_SHARES[phases.count("taper")]
            load = peak_load * shares[i - phases.index("taper")]
            reasons.append(
                f"taper week {i - phases.index('taper') + 1} of {len(shares)}: the load falls to "
                f"{shares[i - phases.index('taper')]:.0%} of the peak week's, the intensity stays"
            )
        elif i == 0 and low_days >= FORM_EASY_DAYS:
            kind, load = "recovery", normal * RECOVERY_SHARE
            reasons.append(f"a recovery week: your form has been below {FORM_EASY:.0f} for {low_days} days")
        elif since_recovery >= (2 if stressed else 3):
            kind, load = "recovery", normal * RECOVERY_SHARE
            reasons.append(
                f"a recovery week after {since_recovery} weeks of building"
                + (" (every 3rd week while your form or load ratio says you are stressed)" if stressed else "")
            )
        else:
            load = normal * (1 + GROWTH) if i else normal
            ceiling = 7 * (fitness + RAMP_HIGH / _WEEK_GAIN)
            if load > ceiling:
                load = ceiling
                reasons.append(f"held at {load:.0f} so that your fitness rises no more than {RAMP_HIGH:.0f} a week")
            reasons.insert(
                0,
                f"{phase}: {load:.0f} load points, {(load / normal - 1):+.0%} on the last normal week"
                if i
                else f"{phase}: {load:.0f} load points, your last 4 weeks' average week",
            )
            if i == 0 and now.acwr is not None and now.acwr > ACWR_CAP:
                load = min(load, now.chronic_week)
                reasons.append(
                    f"capped at your 4-week average week: your load ratio (ACWR) is {now.acwr:.2f}, above {ACWR_CAP}"
                )
            normal = load
            peak_load = load
        since_recovery = 0 if kind == "recovery" else since_recovery + 1
        fitness += (load / 7 - fitness) * _WEEK_GAIN
        outline.append({"week": i + 1, "from": date.fromordinal(first).isoformat(), "phase": phase, "kind": kind,
                        "load": round(load, 1), "why": "; ".join(reasons)})  # fmt: skip
    return outline


def _training_days(goal: Goal) -> list[int]:
    """Weekdays to train, spread from the long day (0 Monday)."""
    step = 7 / goal.days_per_week
    return sorted({(goal.long_day + round(i * step)) % 7 for i in range(goal.days_per_week)})


def _session(goal: Goal, now: Situation, kind: str, load: float, why: list[str]) -> dict:
    factor = _IF[kind]
    caps = _MAX_MINUTES[goal.sport]
    minutes = load / (factor**2 * 100) * 60
    minutes = min(caps["long"] if kind == "long" else caps["other"], max(_MIN_MINUTES, minutes))
    target: dict = {}
    if goal.sport == "run" and now.threshold_pace_s_per_km and kind in _PACE:
        low, high = (now.threshold_pace_s_per_km * f for f in _PACE[kind])
        target = {"pace_s_per_km": [round(low), round(high)], "text": f"{_pace(low)} to {_pace(high)}"}
    elif goal.sport == "ride" and now.ftp_w and kind in _POWER:
        low, high = (now.ftp_w * f for f in _POWER[kind])
        target = {"power_w": [round(low), round(high)], "text": f"{low:.0f} to {high:.0f} W"}
    elif kind in _PACE:
        words = {"recovery": "very easy", "easy": "easy, you can talk", "long": "steady, you can talk",
                 "tempo": "comfortably hard (RPE 7)", "intervals": "hard (RPE 8-9), recover between"}  # fmt: skip
        target = {"text": words[kind]}
    return {"type": kind, "minutes": round(minutes), "load": round((minutes / 60) * factor**2 * 100, 1),
            "target": target, "why": "; ".join(why)}  # fmt: skip


def _race_day(goal: Goal, now: Situation) -> dict:
    seconds = goal.target_s or now.predicted_s
    why = [f"race day: {goal.distance_m / 1000:g} km"]
    target: dict = {}
    if seconds:
        source = "your target" if goal.target_s else "your predicted time"
        why.append(f"{source} {_clock(seconds)}")
        target["seconds"] = round(seconds)
        if goal.sport == "run":
            target["pace_s_per_km"] = round(seconds / goal.distance_m * 1000)
            target["text"] = f"{_pace(seconds / goal.distance_m * 1000)}"
    if goal.target_s and now.predicted_s:
        ahead = goal.target_s / now.predicted_s - 1
        why.append(
            f"{abs(ahead):.0%} {'slower' if ahead >= 0 else 'faster'} than your predicted {_clock(now.predicted_s)}"
        )
    if goal.sport == "ride" and now.ftp_w:
        hours = (seconds or goal.distance_m / 30_000 * 3600) / 3600
        share = 0.95 if hours <= 1 else 0.85 if hours <= 2 else 0.78 if hours <= 4 else 0.70
        target.update(power_w=round(now.ftp_w * share), text=f"about {now.ftp_w * share:.0f} W ({share:.0%} of FTP)")
    minutes = (seconds or 0) / 60
    return {"type": "race", "minutes": round(minutes), "load": round(minutes / 60 * _IF["race"] ** 2 * 100, 1),
            "target": target, "why": "; ".join(why)}  # fmt: skip


def _week_days(goal: Goal, now: Situation, week: dict, first: int) -> list[dict]:
    """The sessions of one week: a long day, the phase's quality sessions away from it, easy days."""
    train = _training_days(goal)
    quality = list(_QUALITY[week["kind"]])
    total = week["load"]
    long_load = total * _LONG_SHARE
    # Quality days: the training days farthest from the long day, Tuesday before Thursday when equal.
    others = sorted((d for d in train if d != goal.long_day), key=lambda d: (-min((d - goal.long_day) % 7,
                                                                                   (goal.long_day - d) % 7), d))  # fmt: skip
    quality_days = dict(zip(sorted(others[: len(quality)]), quality, strict=False))
    easy_days = [d for d in train if d != goal.long_day and d not in quality_days]
    easy_load = max(0.0, total - long_load - _QUALITY_SHARE * total * len(quality_days)) / max(1, len(easy_days))
    days = []
    for ordinal in range(first, first + 7):
        weekday = date.fromordinal(ordinal).weekday()
        days.append((ordinal, weekday))
    planned = []
    for ordinal, weekday in days:
        if weekday not in train:
            kind, load, why = "rest", 0.0, [f"a rest day: you train {goal.days_per_week} days a week"]
        elif weekday == goal.long_day:
            kind, load, why = (
                "long",
                long_load,
                [
                    f"the long {'run' if goal.sport == 'run' else 'ride'} on "
                    f"{_DAYS[weekday]}s: {_LONG_SHARE:.0%} of the week's load"
                ],
            )
        elif weekday in quality_days:
            kind, load = quality_days[weekday], _QUALITY_SHARE * total
            why = [f"{week['phase']} week: {kind}, {'speed at VO2max' if kind == 'intervals' else 'threshold'} work"]
        else:
            kind, load = ("recovery" if week["kind"] == "recovery" else "easy"), easy_load
            why = ["an easy day that adds volume without fatigue"]
        planned.append({"day": ordinal, "type": kind, "load": load, "why": why})
    return planned


def _steer(goal: Goal, now: Situation, planned: list[dict]) -> list[dict]:
    """Run the days through the load model, easing a day whose form would be below −20 and a third
    hard day in a row; the race day and the days just before it are set apart."""
    fitness, fatigue = now.fitness, now.fatigue
    hard_before = [load > max(60.0, 1.5 * now.fitness) for load in now.recent_loads[-2:]]
    out = []
    for day in planned:
        kind, why = day["type"], list(day["why"])
        form = fitness - fatigue
        to_race = goal.race_day - day["day"]
        if to_race < 0:
            kind, why = ("rest" if to_race > -3 else "easy"), ["after the race: recover"]
        elif to_race in (1, 2) and kind != "rest":
            kind, why = ("easy" if to_race == 1 else "rest"), ["the days before the race: fresh legs"]
        if to_race != 0 and kind in _HARD and form < FORM_EASY:
            why = [f"easy instead of {kind}: your form would be {form:.1f}, below {FORM_EASY:.0f}"]
            kind = "easy"
        if to_race != 0 and kind in _HARD and len(hard_before) >= 2 and all(hard_before[-2:]):
            why = [f"easy instead of {kind}: no more than two hard days in a row"]
            kind = "easy"
        if to_race == 0:
            session = _race_day(goal, now)
        elif kind == "rest":
            session = {"type": "rest", "minutes": 0, "load": 0.0, "target": {}, "why": "; ".join(why)}
        else:
            load = day["load"] if kind == day["type"] else 0.5 * day["load"]
            load = min(load, 25.0) if to_race == 1 else load
            session = _session(goal, now, kind, load, why)
        hard_before.append(session["type"] in _HARD)
        fitness += (session["load"] - fitness) * _K_CTL
        fatigue += (session["load"] - fatigue) * _K_ATL
        out.append({"day": date.fromordinal(day["day"]).isoformat(), "weekday": _DAYS[date.fromordinal(day["day"]).weekday()],
                    **session, "form": round(fitness - fatigue, 1)})  # fmt: skip
    return out


def plan(goal: Goal, now: Situation) -> dict:
    """The next seven days, day by day, and the outline of every week to the race."""
    if goal.race_day <= now.today:
        raise ValueError("the goal race is not ahead: set a new goal")
    if goal.race_day - now.today > 7 * MAX_WEEKS:
        raise ValueError(f"a goal race is at most {MAX_WEEKS} weeks ahead")
    outline = _outline(goal, now)
    days = _steer(goal, now, _week_days(goal, now, outline[0], now.today + 1))
    race: dict = {"day": date.fromordinal(goal.race_day).isoformat(), "distance_m": goal.distance_m,
                  "sport": goal.sport, "target_s": goal.target_s, "predicted_s": now.predicted_s,
                  "taper_weeks": min(taper_weeks(goal.sport, goal.distance_m), len(outline))}  # fmt: skip
    if goal.sport == "run" and (goal.target_s or now.predicted_s):
        race["pace_s_per_km"] = round((goal.target_s or now.predicted_s or 0) / goal.distance_m * 1000)
    return {"race": race, "days": days, "weeks": outline}
