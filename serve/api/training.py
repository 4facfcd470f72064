"""My training: load, fitness, fatigue and form, thresholds, a forecast, race predictions and
comparative reports (docs/training.md)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from actors.account import Account
from actors.training import HEART_THRESHOLDS, WINDOW_DAYS, Training
from engine.errors import Rejected
from serve.consents import require_health_consent
from serve.context import Arena, ArenaDep, CallerDep
from serve.entitlements import requires
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["training"])


class ThresholdsIn(BaseModel):
    """My own thresholds: a value replaces the estimate, null goes back to it, a field left out is kept."""

    model_config = ConfigDict(extra="forbid")

    ftp_w: Annotated[float | None, Field(ge=30, le=700)] = None
    threshold_hr: Annotated[float | None, Field(ge=80, le=230)] = None
    max_hr: Annotated[float | None, Field(ge=100, le=240)] = None
    rest_hr: Annotated[float | None, Field(ge=25, le=120)] = None
    threshold_pace_s_per_km: Annotated[float | None, Field(ge=120, le=900)] = None


class GoalIn(BaseModel):
    """The goal race the plan leads to."""

    model_config = ConfigDict(extra="forbid")

    race_date: date = Field(description="the race's day, from tomorrow to 52 weeks ahead")
    distance_m: Annotated[float, Field(ge=400, le=1_000_000, description="run: up to 250 km; ride: up to 1,000 km")]
    sport: Literal["run", "ride"] = "run"
    target_s: Annotated[float | None, Field(ge=60, le=7 * 86_400)] = None
    days_per_week: Annotated[int, Field(ge=3, le=7)] = 4
    long_day: Annotated[int, Field(ge=0, le=6, description="0 Monday to 6 Sunday")] = 6


async def _training(arena: Arena, user_id: str):  # noqa: ANN202 - an entity reference
    """The athlete's training entity, told their profile's time zone first if it has not heard of it."""
    training = arena.ref(Training, user_id)
    zone = (await arena.ref(Account, user_id).ask(Account.me))["profile"].get("time_zone")
    if zone != await training.ask(Training.zone):
        await training.ask(Training.set_time_zone, time_zone=zone)
    return training


@router.get("/me/training", summary="Today's fitness, fatigue, form, ACWR, monotony, strain, ramp, warnings")
async def status(caller: CallerDep, arena: ArenaDep) -> dict:
    return await (await _training(arena, caller.id)).ask(Training.status)


@router.get("/me/training/days", summary="The chart: each day's load, fitness, fatigue and form")
async def days(
    caller: CallerDep,
    arena: ArenaDep,
    first: Annotated[date | None, Query(alias="from", description="the first day (default: 90 days ago)")] = None,
    last: Annotated[date | None, Query(alias="to", description="the last day (default: today)")] = None,
) -> dict:
    last = last or date.today()
    first = first or last - timedelta(days=89)
    if last < first or (last - first).days >= WINDOW_DAYS:
        raise Problem(422, f"a range runs forward over 1 to {WINDOW_DAYS} days")
    training = await _training(arena, caller.id)
    return await training.ask(Training.series, first=first.isoformat(), last=last.isoformat())


@router.put("/me/training/thresholds", summary="Set (or, with null, estimate again) my thresholds")
async def set_thresholds(body: ThresholdsIn, caller: CallerDep, arena: ArenaDep) -> dict:
    given = body.model_dump(exclude_unset=True)
    if any(given.get(name) is not None for name in HEART_THRESHOLDS):
        await require_health_consent(arena, caller.id)
    training = await _training(arena, caller.id)
    return await training.ask(Training.set_thresholds, thresholds=body.model_dump(exclude_unset=True))


class WellnessIn(BaseModel):
    """A morning's readings: either or both."""

    model_config = ConfigDict(extra="forbid")

    resting_hr: Annotated[float | None, Field(ge=25, le=120, description="resting heart rate, bpm")] = None
    hrv_ms: Annotated[float | None, Field(ge=5, le=300, description="heart-rate variability, rMSSD in ms")] = None


@router.put(
    "/me/training/wellness/{day}",
    summary="Record a morning's resting heart rate and HRV (health data: needs my consent); answers the trends",
)
async def record_wellness(day: date, body: WellnessIn, caller: CallerDep, arena: ArenaDep) -> dict:
    if body.resting_hr is None and body.hrv_ms is None:
        raise Problem(422, "send resting_hr, hrv_ms or both")
    await require_health_consent(arena, caller.id)
    training = await _training(arena, caller.id)
    try:
        return await training.ask(
            Training.record_wellness, day=day.isoformat(), resting_hr=body.resting_hr, hrv_ms=body.hrv_ms
        )
    except Rejected as error:
        raise Problem(422, str(error)) from None


@router.get(
    "/me/training/wellness",
    summary="My resting heart rate and HRV: the 7-day means against my 60-day baseline, notes, and the readings",
)
async def wellness(
    caller: CallerDep,
    arena: ArenaDep,
    first: Annotated[date | None, Query(alias="from", description="the first day (default: 90 days ago)")] = None,
    last: Annotated[date | None, Query(alias="to", description="the last day (default: today)")] = None,
) -> dict:
    if first and last and (last < first or (last - first).days >= WINDOW_DAYS):
        raise Problem(422, f"a range runs forward over 1 to {WINDOW_DAYS} days")
    training = await _training(arena, caller.id)
    return await training.ask(
        Training.wellness_trends, first=first.isoformat() if first else None, last=last.isoformat() if last else None
    )


@router.get("/me/training/forecast", summary="Fitness and form for the next weeks under a planned weekly load")
async def forecast(
    caller: CallerDep,
    arena: ArenaDep,
    weeks: Annotated[int, Query(ge=1, le=26)] = 6,
    weekly_load: Annotated[
        float | None, Query(ge=0, le=3_000, description="default: the last 4 weeks' average")
    ] = None,
) -> dict:
    training = await _training(arena, caller.id)
    return await training.ask(Training.forecast, weeks=weeks, weekly_load=weekly_load)


@router.get("/me/training/predictions", summary="Race times predicted from my best efforts, with their band")
async def predictions(caller: CallerDep, arena: ArenaDep) -> dict:
    return await (await _training(arena, caller.id)).ask(Training.predictions)


@router.put("/me/training/goal", summary="Set my goal race: the plan leads to it")
async def set_goal(body: GoalIn, caller: CallerDep, arena: ArenaDep) -> dict:
    if body.sport == "run" and body.distance_m > 250_000:
        raise Problem(422, "a running race is at most 250 km")
    goal = body.model_dump(exclude={"race_date"})
    goal["race_day"] = body.race_date.isoformat()
    training = await _training(arena, caller.id)
    try:
        return await training.ask(Training.set_goal, goal=goal)
    except Rejected as error:  # a race day that is not ahead in the athlete's own time zone
        raise Problem(422, error.message) from None


@router.delete("/me/training/goal", status_code=204, summary="Remove my goal race")
async def remove_goal(caller: CallerDep, arena: ArenaDep) -> None:
    await (await _training(arena, caller.id)).ask(Training.set_goal, goal=None)


@router.get("/me/training/plan", summary="The next 7 days toward my goal race and the weeks to it, each with why")
async def plan(caller: CallerDep, arena: ArenaDep) -> dict:
    return await (await _training(arena, caller.id)).ask(Training.plan)


@router.get("/me/training/next", summary="Tomorrow's workout toward my goal race, and why")
async def next_workout(caller: CallerDep, arena: ArenaDep) -> dict:
    answer = await (await _training(arena, caller.id)).ask(Training.plan)
    return {"workout": answer["days"][0], "week": answer["weeks"][0], "race": answer["race"]}


@router.get("/me/reports/year-over-year", summary="The last days against the same days a year ago")
async def year_over_year(caller: CallerDep, arena: ArenaDep, days: Annotated[int, Query(ge=1, le=366)] = 28) -> dict:
    return await (await _training(arena, caller.id)).ask(Training.year_over_year, days=days)


@router.get(
    "/me/reports/professionals",
    summary="My times and power against world records and elite riders (premium: advanced_training)",
    dependencies=[requires("advanced_training")],
)
async def professionals(caller: CallerDep, arena: ArenaDep) -> dict:
    return await (await _training(arena, caller.id)).ask(Training.professionals)


@router.get(
    "/me/reports/peers",
    summary="Percentiles among the athletes of my region, from the data lake (premium: advanced_training)",
    dependencies=[requires("advanced_training")],
)
async def peers(caller: CallerDep, arena: ArenaDep, days: Annotated[int, Query(ge=1, le=366)] = 28) -> dict:
    if not arena.settings.lake:
        raise Problem(404, "this Arena keeps no data lake, so it has no peers to compare with")
    from connectors.lake.peers import peers as percentiles  # duckdb: only where there is a lake to read

    last = date.today() - timedelta(days=1)  # the aggregates cover whole days
    first = last - timedelta(days=days - 1)
    answer = await asyncio.to_thread(percentiles, arena.settings.lake_root, caller.id, first, last)
    return {"from": first.isoformat(), "to": last.isoformat(), **answer}
