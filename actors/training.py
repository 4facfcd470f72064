"""An athlete's training load: each workout's load, the daily sums, thresholds and warnings
(docs/training.md).

The entity reacts to the athlete's ``workout.recorded``, ``.edited`` and ``.deleted``. The three
come from the athlete's account but through separate consumers, so they may arrive in any order:
each workout keeps the account's journal seq of the state it holds, and a deletion is remembered,
so the newest state wins whatever the order. Thresholds are estimated again from the workouts of
the last year after each change (the athlete's own values replace them); when they move, every
kept workout's load is measured again. Warnings are checked after each change and told once per
episode (``training.warning``, which the inbox turns into a notification).

Bounded: workouts of the last ``WINDOW_DAYS`` days (at most ``MAX_WORKOUTS``), their daily sums,
``_GONE_KEPT`` deleted ids, one entry per warning, and one goal race (the plan is computed at each
read, never kept).
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np

from actors.events import HEALTH_WITHDRAWN, TRAINING_WARNING, WORKOUT_DELETED, WORKOUT_EDITED, WORKOUT_RECORDED
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected
from engine.events import Event, To, react
from engine.gamification.badges import local_time
from engine.gamification.badges import time_zone as zone_named
from engine.training import load as model
from engine.training import plan as planning
from engine.training import wellness
from engine.training.predictions import predict
from engine.training.reports import against_professionals, period_totals

HEART_THRESHOLDS = ("threshold_hr", "max_hr", "rest_hr")  # health data (docs/privacy.md)

__all__ = ["MAX_WORKOUTS", "OVERRIDABLE", "THRESHOLD_DAYS", "Training", "WINDOW_DAYS"]

WINDOW_DAYS = 730  # days of history kept: two years, for this period against last year's
THRESHOLD_DAYS = 365  # thresholds are estimated from this last year's workouts
MAX_WORKOUTS = 4_000  # in the window: five a day for two years; past it, the oldest go first
OVERRIDABLE = ("ftp_w", "threshold_hr", "max_hr", "rest_hr", "threshold_pace_s_per_km")
_GONE_KEPT = 1_000
_FACTS = ("sport", "start", "moving_s", "elapsed_s", "distance_m", "avg_hr", "max_hr", "avg_power", "rpe")
# A workout as kept: [seq, day, load, method, facts]


def _efforts(summary: dict) -> dict[str, float]:
    best = summary.get("best_efforts")
    if summary.get("sport") != "run" or not isinstance(best, dict):
        return {}
    return {k: float(v) for k, v in best.items() if k in model.EFFORT_METRES and isinstance(v, int | float)
            and not isinstance(v, bool) and math.isfinite(v) and v > 0}  # fmt: skip


class Training(Entity):
    kind = "training"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.time_zone: str | None = None
        self.overrides: dict[str, float] = {}
        self.thresholds: dict[str, Any] = model.Thresholds().to_dict()
        self.workouts: dict[str, list] = {}  # workout id -> [seq, day, load, method, facts]
        self.gone: dict[str, int] = {}  # deleted workout id -> the account's seq of the deletion
        self.days: dict[str, list[float]] = {}  # day ordinal -> [load, moving_s, distance_m, workouts]
        self.warned: dict[str, str] = {}  # warning code -> the day (ISO) its episode began
        self.goal: dict | None = None  # the goal race (docs/training.md, "Plan"): one at a time
        self.wellness: dict[str, list] = {}  # day ordinal -> [resting_hr, hrv_ms] (health data: with consent)

    # -- reactions -------------------------------------------------------------------------------

    @react(WORKOUT_RECORDED, to=To.field("owner"))
    def on_workout(self, event: Event) -> None:
        self._put(event.fields["workout_id"], event.seq, event.fields["summary"])

    @react(WORKOUT_EDITED, to=To.field("owner"))
    def on_workout_edited(self, event: Event) -> None:
        self._put(event.fields["workout_id"], event.seq, event.fields["after"])

    @react(WORKOUT_DELETED, to=To.field("owner"))
    def on_workout_deleted(self, event: Event) -> None:
        self._put(event.fields["workout_id"], event.seq, None)

    @update
    def backfill(self, workouts: list) -> dict:
        """The athlete's workouts as the lake has them (``connectors.lake.training``): ``[workout_id, seq,
        summary or None for deleted]`` each, applied as the live reactions would (the newest seq wins, whatever
        is here already), then the thresholds estimated and every load measured once. Doing it again, or
        over workouts the reactions already took, changes nothing."""
        if not isinstance(workouts, list):
            raise Rejected("workouts is a list of [workout_id, seq, summary]")
        applied = skipped = 0
        for item in workouts:
            if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str) and 0 < len(item[0]) <= 64
                    and type(item[1]) is int and (item[2] is None or isinstance(item[2], dict))):  # fmt: skip
                skipped += 1
                continue
            try:
                self._put(item[0], item[1], item[2], settle=False)
            except Rejected:  # a summary no reaction would have kept
                skipped += 1
                continue
            applied += 1
        self._trim()
        if not self._estimate():
            self._rebuild()
        self._check()
        return {"applied": applied, "skipped": skipped, "workouts": len(self.workouts)}

    def _put(self, workout_id: str, seq: int, summary: dict | None, *, settle: bool = True) -> None:
        """``settle``: measure, count and check now (a back-fill does it once at the end)."""
        kept = self.workouts.get(workout_id)
        if (kept is not None and kept[0] >= seq) or self.gone.get(workout_id, -1) >= seq:
            return  # a newer state of this workout is here already
        if kept is not None:
            self._count(kept, -1)
            del self.workouts[workout_id]
        if summary is None:
            self.gone[workout_id] = seq
            while len(self.gone) > _GONE_KEPT:
                del self.gone[next(iter(self.gone))]
        else:
            start = summary.get("start")
            if not isinstance(start, int | float) or isinstance(start, bool) or not math.isfinite(start):
                raise Rejected("a workout without a start")
            facts = {k: summary.get(k) for k in _FACTS}
            facts["best_efforts"] = _efforts(summary)
            day = self._day(float(start))
            if day <= self._today() - WINDOW_DAYS:
                return  # older than the window: it would fall out at once
            self.workouts[workout_id] = [seq, day, 0.0, "none", facts]
            if not settle:
                return  # trimmed, measured and counted once at the end
            self._trim()
            if workout_id not in self.workouts:
                return
        if not self._estimate() and summary is not None:
            self._measure(self.workouts[workout_id])
            self._count(self.workouts[workout_id], 1)
        self._check()

    # -- settings --------------------------------------------------------------------------------

    @update
    def set_time_zone(self, time_zone: str | None) -> str | None:
        try:
            zone = zone_named(time_zone)
        except ValueError as error:
            raise Rejected(str(error)) from None
        if time_zone != self.time_zone:
            self.time_zone = time_zone
            for record in self.workouts.values():
                record[1] = local_time(float(record[4]["start"]), zone)["day"]
            self._rebuild()
        return time_zone

    @react(HEALTH_WITHDRAWN, to=To.field("user_id"))
    def on_health_withdrawn(self, event: Event) -> None:
        """Consent to health data withdrawn: the athlete's own heart-rate thresholds go (estimates from
        workouts have no heart rate left to work from either)."""
        for name in HEART_THRESHOLDS:
            self.overrides.pop(name, None)
        self.wellness = {}
        self._estimate()

    @update
    def record_wellness(self, day: str, resting_hr: float | None, hrv_ms: float | None) -> dict:
        """A morning's resting heart rate (bpm) and HRV (rMSSD, ms) for a local ``day`` (ISO), from a device
        or by hand; a later reading of the same day replaces it, a null leaves that one as it was. The API
        takes them only with consent to health data."""
        try:
            ordinal = date.fromisoformat(day).toordinal()
        except (TypeError, ValueError):
            raise Rejected("a day is YYYY-MM-DD") from None
        if not self._today() - WINDOW_DAYS < ordinal <= self._today() + 1:
            raise Rejected(f"a reading is of the last {WINDOW_DAYS} days")
        for value, low, high, name in ((resting_hr, 25, 120, "resting_hr"), (hrv_ms, 5, 300, "hrv_ms")):
            if value is not None and not (isinstance(value, int | float) and not isinstance(value, bool)
                                          and low <= value <= high):  # fmt: skip
                raise Rejected(f"{name} is from {low} to {high}")
        if resting_hr is None and hrv_ms is None:
            raise Rejected("send resting_hr, hrv_ms or both")
        kept = self.wellness.get(str(ordinal), [None, None])
        self.wellness[str(ordinal)] = [resting_hr if resting_hr is not None else kept[0],
                                       hrv_ms if hrv_ms is not None else kept[1]]  # fmt: skip
        oldest = self._today() - WINDOW_DAYS
        for old in [d for d in self.wellness if int(d) <= oldest]:
            del self.wellness[old]
        return self.wellness_trends()

    @query
    def wellness_trends(self, first: str | None = None, last: str | None = None) -> dict:
        """The resting heart rate and HRV trends today (``engine.training.wellness``), and the readings of
        ``first``..``last`` (ISO days; default the last 90)."""
        today = self._today()
        try:
            end = date.fromisoformat(last).toordinal() if last else today
            start = date.fromisoformat(first).toordinal() if first else end - 89
        except (TypeError, ValueError):
            raise Rejected("a day is YYYY-MM-DD") from None
        readings = sorted((int(d), row[0], row[1]) for d, row in self.wellness.items())
        return {
            **wellness.trends(readings, today),
            "days": [
                {"day": date.fromordinal(d).isoformat(), "resting_hr": hr, "hrv_ms": ms}
                for d, hr, ms in readings
                if start <= d <= end
            ],  # fmt: skip
        }

    @update
    def set_thresholds(self, thresholds: dict) -> dict:
        """Replace the athlete's own thresholds (a null value: estimate that one again)."""
        unknown = sorted(set(thresholds) - set(OVERRIDABLE))
        if unknown:
            raise Rejected(f"unknown threshold(s) {', '.join(unknown)}; one of {', '.join(OVERRIDABLE)}")
        for name, value in thresholds.items():
            if value is None:
                self.overrides.pop(name, None)
            elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
                self.overrides[name] = float(value)
            else:
                raise Rejected(f"{name} must be a positive number or null")
        self._estimate()
        self._check()
        return self._threshold_view()

    @update
    def set_goal(self, goal: dict | None) -> dict | None:
        """The goal race the plan leads to (``race_day`` ISO, ``distance_m``, ``sport``, ``days_per_week``,
        ``long_day`` 0-6, ``target_s`` or None); None removes it."""
        if goal is not None:
            try:
                day = date.fromisoformat(goal["race_day"]).toordinal()
                planning.Goal(**{**goal, "race_day": day})
            except (KeyError, TypeError, ValueError) as error:
                raise Rejected(f"not a goal: {error}") from None
            if not 0 < day - self._today() <= 7 * planning.MAX_WEEKS:
                raise Rejected(f"a goal race is from tomorrow to {planning.MAX_WEEKS} weeks ahead")
        self.goal = goal
        return goal

    # -- the model -------------------------------------------------------------------------------

    def _day(self, start: float) -> int:
        return int(local_time(start, zone_named(self.time_zone))["day"])

    def _today(self) -> int:
        return self._day(self.now)

    def _trim(self) -> None:
        oldest = self._today() - WINDOW_DAYS + 1
        drop = [w for w, r in self.workouts.items() if r[1] < oldest]
        if len(self.workouts) - len(drop) > MAX_WORKOUTS:
            ordered = sorted(self.workouts, key=lambda w: (self.workouts[w][1], self.workouts[w][0]))
            drop = ordered[: len(self.workouts) - MAX_WORKOUTS]
        for workout_id in drop:
            self._count(self.workouts.pop(workout_id), -1)
        if any(int(day) < oldest for day in self.days):
            self.days = {day: row for day, row in self.days.items() if int(day) >= oldest}

    def _estimate(self) -> bool:
        """Estimate the thresholds again; when they moved, measure every workout again. True if they did."""
        since = self._today() - THRESHOLD_DAYS
        recent = (record[4] for record in self.workouts.values() if record[1] > since)
        found = model.estimate_thresholds(recent, self.overrides).to_dict()
        if found == self.thresholds:
            return False
        self.thresholds = found
        self._rebuild()
        return True

    def _rebuild(self) -> None:
        self.days = {}
        for record in self.workouts.values():
            self._measure(record)
            self._count(record, 1)

    def _measure(self, record: list) -> None:
        record[2], record[3] = model.workout_load(record[4], model.Thresholds(**self.thresholds))

    def _count(self, record: list, sign: int) -> None:
        if record[3] == "none":
            return  # no duration: nothing counted
        facts = record[4]
        row = self.days.setdefault(str(record[1]), [0.0, 0.0, 0.0, 0.0])
        moving = facts.get("moving_s") or facts.get("elapsed_s") or 0.0
        for i, value in enumerate((record[2], moving, facts.get("distance_m") or 0.0, 1.0)):
            row[i] = max(0.0, row[i] + sign * float(value))
        if row[3] < 0.5:
            del self.days[str(record[1])]

    def _loads(self) -> tuple[np.ndarray, int]:
        """The daily loads of the window, oldest first, up to today; and the first day's ordinal."""
        last = self._today()
        first = last - WINDOW_DAYS + 1
        loads = np.zeros(WINDOW_DAYS)
        for day, row in self.days.items():
            if first <= int(day) <= last:
                loads[int(day) - first] = row[0]
        if self.days:  # the chart starts at the first day with a load
            start = max(first, min(int(day) for day in self.days))
            return loads[start - first :], start
        return loads[-1:], last

    def _check(self) -> None:
        loads, first = self._loads()
        found = model.warnings(model.today(loads, first))
        today = date.fromordinal(self._today()).isoformat()
        for code, reason in found.items():
            if code not in self.warned:
                self.warned[code] = today
                self.emit(TRAINING_WARNING, user_id=self.id, warning=code, reason=reason, day=today)
        for code in [c for c in self.warned if c not in found]:
            del self.warned[code]  # the episode is over: the next one is told again

    def _threshold_view(self) -> dict:
        return {
            name: {"value": self.thresholds[name], "source": "set" if name in self.overrides else "estimated"}
            for name in OVERRIDABLE
        }

    def _efforts(self) -> dict[str, float]:
        since = self._today() - THRESHOLD_DAYS
        best: dict[str, float] = {}
        for record in self.workouts.values():
            if record[1] > since:
                for key, seconds in record[4]["best_efforts"].items():
                    best[key] = min(seconds, best.get(key, math.inf))
        return best

    # -- reads -----------------------------------------------------------------------------------

    @query
    def status(self) -> dict:
        loads, first = self._loads()
        figures = model.today(loads, first)
        figures.pop("recent_form")
        figures["day"] = date.fromordinal(figures["day"]).isoformat()
        current = model.warnings(model.today(loads, first))
        return {
            **figures,
            "warnings": [
                {"warning": code, "reason": reason, "since": self.warned.get(code, figures["day"])}
                for code, reason in current.items()
            ],  # fmt: skip
            "thresholds": self._threshold_view(),
            "time_zone": self.time_zone,
            "workouts": len(self.workouts),
        }

    @query
    def series(self, first: str, last: str) -> dict:
        """The chart's days from ``first`` to ``last`` (ISO dates, within the window): load,
        fitness, fatigue, form."""
        try:
            start, end = date.fromisoformat(first).toordinal(), date.fromisoformat(last).toordinal()
        except (TypeError, ValueError):
            raise Rejected("from and to are ISO dates") from None
        if end < start or end - start >= WINDOW_DAYS:
            raise Rejected(f"a range is 1 to {WINDOW_DAYS} days, from before to")
        loads, known = self._loads()
        fitness, fatigue, form = model.performance(loads)
        items = []
        for day in range(start, end + 1):
            i = day - known
            inside = 0 <= i < len(loads)
            items.append({
                "day": date.fromordinal(day).isoformat(),
                "load": float(loads[i]) if inside else 0.0,
                "fitness": float(fitness[i]) if inside else (float(fitness[-1]) if i >= len(loads) else 0.0),
                "fatigue": float(fatigue[i]) if inside else (float(fatigue[-1]) if i >= len(loads) else 0.0),
                "form": float(form[i]) if inside else 0.0,
            })  # fmt: skip
        return {"from": first, "to": last, "items": items}

    @query
    def forecast(self, weeks: int, weekly_load: float | None = None) -> dict:
        loads, _ = self._loads()
        figures = model.today(loads, 0)
        planned = float(loads[-28:].sum()) / 4.0 if weekly_load is None else float(weekly_load)
        try:
            ahead = model.forecast(figures["fitness"], figures["fatigue"], planned, 7 * int(weeks))
        except ValueError as error:
            raise Rejected(str(error)) from None
        today = self._today()
        for row in ahead:
            row["day"] = date.fromordinal(today + row.pop("offset")).isoformat()
        return {"weekly_load": planned, "planned_by": "default" if weekly_load is None else "request", "days": ahead}

    @query
    def predictions(self) -> dict:
        best = self._efforts()
        return {**predict(best), "best_efforts": best}

    @query
    def year_over_year(self, days: int) -> dict:
        """The last ``days`` days against the same days a year before."""
        if not 1 <= days <= 366:
            raise Rejected("a period is 1 to 366 days")
        today = self._today()
        sums = {int(d): row for d, row in self.days.items()}
        now = period_totals(sums, today - days + 1, today)
        then = period_totals(sums, today - days + 1 - 365, today - 365)
        change = {k: (now[k] - then[k]) / then[k] if then[k] else None for k in now}
        return {
            "period": {"from": date.fromordinal(today - days + 1).isoformat(), "to": date.fromordinal(today).isoformat()},
            "last_year": {"from": date.fromordinal(today - days + 1 - 365).isoformat(),
                          "to": date.fromordinal(today - 365).isoformat()},
            "this": now,
            "before": then,
            "change": change,
        }  # fmt: skip

    @query
    def professionals(self) -> dict:
        best = self._efforts()
        return against_professionals(predict(best)["races"], best, self.thresholds["ftp_w"])

    @query
    def plan(self) -> dict:
        """The next seven days and the weeks to the goal race (engine/training/plan.py)."""
        if self.goal is None:
            raise NotFound("no goal race: set one with PUT /me/training/goal")
        goal = planning.Goal(**{**self.goal, "race_day": date.fromisoformat(self.goal["race_day"]).toordinal()})
        loads, first = self._loads()
        figures = model.today(loads, first)
        predicted = None
        if goal.sport == "run":
            predicted = planning.predicted_seconds(predict(self._efforts()), goal.distance_m)
        now = planning.Situation(
            today=self._today(), fitness=figures["fitness"], fatigue=figures["fatigue"], form=figures["form"],
            acwr=figures["acwr"], chronic_week=float(loads[-28:].sum()) / 4.0, recent_form=figures["recent_form"],
            recent_loads=[float(x) for x in loads[-2:]], threshold_pace_s_per_km=self.thresholds["threshold_pace_s_per_km"],
            ftp_w=self.thresholds["ftp_w"], predicted_s=predicted,
        )  # fmt: skip
        try:
            answer = planning.plan(goal, now)
        except ValueError as error:
            raise Rejected(str(error)) from None
        return {**answer, "goal": self.goal, "today": {k: figures[k] for k in ("fitness", "fatigue", "form", "acwr")}}

    @query
    def weekly_distance(self, days: int = 28) -> dict[str, float]:
        """Metres a week per sport over the last ``days`` days (1-365)."""
        days = max(1, min(int(days), 365))
        since = self._today() - days
        total: dict[str, float] = {}
        for record in self.workouts.values():
            sport, metres = record[4].get("sport"), record[4].get("distance_m")
            if record[1] > since and isinstance(sport, str) and isinstance(metres, int | float) and metres > 0:
                total[sport] = total.get(sport, 0.0) + float(metres)
        return {sport: metres * 7 / days for sport, metres in total.items()}

    @query
    def zone(self) -> str | None:
        return self.time_zone

    @query
    def export(self) -> dict:
        return {"time_zone": self.time_zone, "overrides": self.overrides, "workouts": len(self.workouts),
                "days": self.days, "goal": self.goal,
                "wellness": {date.fromordinal(int(d)).isoformat(): row for d, row in self.wellness.items()}}  # fmt: skip
