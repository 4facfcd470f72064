"""Points, levels and badges: an athlete's achievements, the badge catalogue, heart-rate settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.account import Account
from actors.achievements import Achievements
from engine.gamification import badges
from serve.consents import require_health_consent
from serve.context import ArenaDep, CallerDep, EntityId, OptionalCallerDep
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["achievements"])


class HeartSettings(BaseModel):
    """The athlete's own heart rates: points then read a workout's heart rate as a share of the reserve."""

    model_config = ConfigDict(extra="forbid")

    max_hr: Annotated[int | None, Field(ge=100, le=240)] = None
    rest_hr: Annotated[int | None, Field(ge=25, le=120)] = None

    @model_validator(mode="after")
    def _consistent(self) -> HeartSettings:
        if self.rest_hr is not None and (self.max_hr is None or self.rest_hr > self.max_hr - 20):
            raise ValueError("a resting heart rate needs a maximum at least 20 above it")
        return self


@router.get("/badges", summary="Every badge there is to earn, and what earns it")
async def catalogue() -> dict:
    return {"items": [rule.card() for rule in badges.RULES]}


@router.get(
    "/users/{user_id}/achievements", summary="An athlete's level, points and badges, as the caller may see them"
)
async def of_user(user_id: EntityId, caller: OptionalCallerDep, arena: ArenaDep) -> dict:
    view = await arena.ref(Account, user_id).ask(Account.view, viewer=caller.id if caller else None)
    if view["private"] and not (view["relation"]["self"] or view["relation"]["following"]):
        raise Problem(403, "this athlete's profile is private")
    return await arena.ref(Achievements, user_id).ask(Achievements.summary)


@router.get("/me/achievements", summary="My level, points and badges")
async def mine(caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(Achievements, caller.id).ask(Achievements.summary)


@router.get("/me/achievements/settings", summary="My time zone (from my profile) and heart rates")
async def settings(caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(Achievements, caller.id).ask(Achievements.settings)


@router.put("/me/achievements/settings", summary="Set (or, without a maximum, forget) my heart rates")
async def set_settings(body: HeartSettings, caller: CallerDep, arena: ArenaDep) -> dict:
    if body.max_hr is not None:
        await require_health_consent(arena, caller.id)
    achievements = arena.ref(Achievements, caller.id)
    await achievements.ask(Achievements.set_heart, max_hr=body.max_hr, rest_hr=body.rest_hr)
    return await achievements.ask(Achievements.settings)
