"""Training analytics over my own workouts: totals, personal records, streaks."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from actors.account import Account
from engine.training.analytics import WorkoutFacts, personal_records, readable, streaks, totals
from serve.context import Arena, ArenaDep, CallerDep

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/me/analytics", tags=["analytics"])

TzOffset = Annotated[int, Query(ge=-1079, le=1079, description="minutes east of UTC of the athlete's days")]


async def _workouts(arena: Arena, user_id: str) -> list[WorkoutFacts]:
    facts, unreadable = readable(await arena.ref(Account, user_id).ask(Account.all_workouts))
    if unreadable:
        log.warning("analytics of %s leave out unreadable workouts %s", user_id, unreadable[:20])
    return facts


@router.get("/totals", summary="Weekly or monthly totals per sport, newest first")
async def period_totals(
    caller: CallerDep, arena: ArenaDep, period: Literal["week", "month"] = "week", tz_offset_minutes: TzOffset = 0
) -> dict:
    return {"period": period, "items": totals(await _workouts(arena, caller.id), period, tz_offset_minutes)}


@router.get("/records", summary="Personal records per sport: best efforts and the longest workout")
async def records(caller: CallerDep, arena: ArenaDep, tz_offset_minutes: TzOffset = 0) -> dict:
    return personal_records(await _workouts(arena, caller.id), tz_offset_minutes)


@router.get("/streaks", summary="Current and longest streaks of active days and weeks")
async def streak(caller: CallerDep, arena: ArenaDep, tz_offset_minutes: TzOffset = 0) -> dict:
    today = (datetime.now(UTC) + timedelta(minutes=tz_offset_minutes)).date()
    return streaks(await _workouts(arena, caller.id), today, tz_offset_minutes)
