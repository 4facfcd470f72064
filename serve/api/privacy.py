"""Privacy zones (the places whose surroundings an athlete's tracks never show others) and consents (docs/privacy.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from actors.access_log import AccessLog
from actors.account import Account
from engine.privacy_zones import MAX_RADIUS_M, MIN_RADIUS_M, place_zone
from serve.api.races import health_changed
from serve.consents import CONSENTS, current
from serve.context import ArenaDep, CallerDep, EntityId, new_id
from serve.pagination import Cursor, Limit, paged
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["privacy"])


class NewZone(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Annotated[str, Field(min_length=1, max_length=40)] = "Home"
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    radius_m: Annotated[float, Field(ge=MIN_RADIUS_M, le=MAX_RADIUS_M)] = 500.0


@router.get("/me/privacy-zones", summary="My privacy zones")
async def my_zones(caller: CallerDep, arena: ArenaDep) -> list[dict]:
    return await arena.ref(Account, caller.id).ask(Account.zones)


@router.post("/me/privacy-zones", status_code=201, summary="Hide my tracks' start and end around a place")
async def add_zone(body: NewZone, caller: CallerDep, arena: ArenaDep) -> dict:
    """The zone hides ``radius_m`` around the place, and more: its circle is moved at random up to half the
    radius away (and widened to match) so where tracks appear cannot be traced back to the place, which is
    not kept."""
    zone = await asyncio.to_thread(place_zone, body.lat, body.lon, body.radius_m)
    return await arena.ref(Account, caller.id).ask(
        Account.add_privacy_zone, zone_id=new_id(), label=body.label, lat=zone.lat, lon=zone.lon,
        radius_m=zone.radius_m,
    )  # fmt: skip


@router.delete("/me/privacy-zones/{zone_id}", status_code=204, summary="Remove a privacy zone")
async def remove_zone(zone_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await arena.ref(Account, caller.id).ask(Account.remove_privacy_zone, zone_id=zone_id)
    return Response(status_code=204)


# -- consent (GDPR Articles 7 and 9; serve/consents.py) ----------------------------


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    given: StrictBool
    version: Annotated[str, Field(min_length=1, max_length=40)]  # of the text the athlete was shown


@router.get("/consents", summary="The consent texts, each with its current version")
async def consent_texts() -> dict:
    return CONSENTS


@router.get("/me/consents", summary="My consents, and when and how each was given or withdrawn")
async def my_consents(caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(Account, caller.id).ask(Account.consents)


@router.put("/me/consents/{purpose}", summary="Give or withdraw a consent (health data, marketing)")
async def set_consent(purpose: Literal["health", "marketing"], body: ConsentIn, caller: CallerDep,
                      arena: ArenaDep) -> dict:  # fmt: skip
    if body.version != current(purpose):
        raise Problem(409, f"the {purpose} consent text is now version {current(purpose)}: show it first (GET /consents)")
    account = arena.ref(Account, caller.id)
    if purpose == "health":
        consents = await account.ask(Account.set_health_consent, given=body.given, version=body.version)
        await health_changed(arena, caller.id, body.given)  # the races they are in keep or drop heart rates
        return consents
    me = await account.ask(Account.update_profile, marketing_consent=body.given, consent_version=body.version)
    return {"health": me["health_consent"], "marketing": me["marketing_consent"]}


# -- access logging (actors/access_log.py) ----------------------------------------------


@router.get("/me/access-log", summary="Who read my data with an admin's or an organizer's tool, newest first")
async def my_access_log(caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50) -> dict:
    return await paged(arena.ref(AccessLog, caller.id), AccessLog.read, cursor, limit)
