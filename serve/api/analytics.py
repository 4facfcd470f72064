"""Training analytics over my own workouts: totals, personal records, streaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from engine.analytics import personal_records, streaks, totals
from serve.context import ArenaDep, CallerDep

__all__ = ["router"]

router = APIRouter(prefix="/me/analytics", tags=["analytics"])

TzOffset = Annotated[int, Query(ge=-1079, le=1079, description="minutes east of UTC of the athlete's days")]


@router.get("/totals", summary="Weekly or monthly totals per sport, newest first")
async def period_totals(
    caller: CallerDep, arena: ArenaDep, period: Literal["week", "month"] = "week", tz_offset_minutes: TzOffset = 0
) -> dict:
    workouts = await arena.ask("account", caller.id, "all_workouts")
    return {"period": period, "items": totals(workouts, period, tz_offset_minutes)}


@router.get("/records", summary="Personal records per sport: best efforts and the longest workout")
async def records(caller: CallerDep, arena: ArenaDep, tz_offset_minutes: TzOffset = 0) -> dict:
    return personal_records(await arena.ask("account", caller.id, "all_workouts"), tz_offset_minutes)


@router.get("/streaks", summary="Current and longest streaks of active days and weeks")
async def streak(caller: CallerDep, arena: ArenaDep, tz_offset_minutes: TzOffset = 0) -> dict:
    today = (datetime.now(UTC) + timedelta(minutes=tz_offset_minutes)).date()
    return streaks(await arena.ask("account", caller.id, "all_workouts"), today, tz_offset_minutes)
