"""My training: load, fitness, fatigue and form, thresholds, a forecast, race predictions and
comparative reports (docs/training.md)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from actors.account import Account
from actors.training import WINDOW_DAYS, Training
from serve.context import Arena, ArenaDep, CallerDep
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
    training = await _training(arena, caller.id)
    return await training.ask(Training.set_thresholds, thresholds=body.model_dump(exclude_unset=True))


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


@router.get("/me/reports/year-over-year", summary="The last days against the same days a year ago")
async def year_over_year(caller: CallerDep, arena: ArenaDep, days: Annotated[int, Query(ge=1, le=366)] = 28) -> dict:
    return await (await _training(arena, caller.id)).ask(Training.year_over_year, days=days)


@router.get("/me/reports/professionals", summary="My times and power against world records and elite riders")
async def professionals(caller: CallerDep, arena: ArenaDep) -> dict:
    return await (await _training(arena, caller.id)).ask(Training.professionals)


@router.get("/me/reports/peers", summary="Percentiles among the athletes of my region, from the data lake")
async def peers(caller: CallerDep, arena: ArenaDep, days: Annotated[int, Query(ge=1, le=366)] = 28) -> dict:
    if not arena.settings.lake:
        raise Problem(404, "this Arena keeps no data lake, so it has no peers to compare with")
    from connectors.lake.peers import peers as percentiles  # duckdb: only where there is a lake to read

    last = date.today() - timedelta(days=1)  # the aggregates cover whole days
    first = last - timedelta(days=days - 1)
    answer = await asyncio.to_thread(percentiles, arena.settings.lake_root, caller.id, first, last)
    return {"from": first.isoformat(), "to": last.isoformat(), **answer}
