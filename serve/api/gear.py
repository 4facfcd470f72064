"""An athlete's gear: add, edit, retire, delete; defaults per sport; a workout's item; replacements."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.catalogue import Catalogue
from actors.gear import CATALOGUE_ID, Gear
from actors.workout import SPORTS, Workout
from engine.commerce.wear import COMPONENTS, GEAR_TYPES
from serve.api.workouts import visible_workout
from serve.context import ArenaDep, CallerDep, EntityId, new_id
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["gear"])

Sport = Literal[SPORTS]  # type: ignore[valid-type]
_Text = Annotated[str, Field(min_length=1, max_length=80)]
GearId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class _GearFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: _Text | None = None
    brand: _Text | None = None
    model: _Text | None = None
    purchased: date | None = None
    start_km: Annotated[float, Field(ge=0, le=1_000_000)] | None = None
    life_km: Annotated[float, Field(gt=0, le=1_000_000)] | None = None
    sports: Annotated[list[Sport], Field(max_length=len(SPORTS))] | None = None
    price: Annotated[int, Field(ge=0, le=100_000_000, description="minor units (cents)")] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None

    def fields(self) -> dict:
        fields = self.model_dump(exclude_unset=True, exclude={"start_km", "life_km", "purchased", "retired"})
        if "sports" in fields:
            fields["sports"] = sorted(set(fields["sports"] or []))
        if "purchased" in self.model_fields_set:
            fields["purchased"] = self.purchased.isoformat() if self.purchased else None
        if "start_km" in self.model_fields_set:
            fields["start_m"] = round((self.start_km or 0) * 1000)
        if "life_km" in self.model_fields_set:
            fields["life_m"] = None if self.life_km is None else round(self.life_km * 1000)
        return fields


class NewGear(_GearFields):
    type: Literal[GEAR_TYPES]  # type: ignore[valid-type]
    component: Literal[COMPONENTS] | None = None  # type: ignore[valid-type]
    name: _Text
    default: bool = Field(False, description="new workouts of its sports count for it")

    @model_validator(mode="after")
    def _part(self) -> NewGear:
        if self.component is not None and self.type != "component":
            raise ValueError("only a component names its part")
        return self


class GearEdit(_GearFields):
    retired: bool | None = None


class DefaultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gear_id: GearId | None = None


class WorkoutGearIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gear_id: GearId | None


@router.get("/me/gear", summary="My gear with its wear, the active items first")
async def my_gear(caller: CallerDep, arena: ArenaDep, retired: Annotated[bool, Query()] = True) -> dict:
    return await arena.ref(Gear, caller.id).ask(Gear.listing, retired=retired)


@router.post("/me/gear", status_code=201, summary="Add an item of gear")
async def add_gear(body: NewGear, caller: CallerDep, arena: ArenaDep) -> dict:
    fields = {**body.fields(), "type": body.type, "component": body.component}
    fields.pop("default", None)
    default_for = fields.get("sports", []) if body.default else []
    return await arena.ref(Gear, caller.id).ask(Gear.add, gear_id=new_id(), fields=fields, default_for=default_for)


@router.get("/me/gear/{gear_id}", summary="One item of my gear")
async def get_gear(gear_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(Gear, caller.id).ask(Gear.card, gear_id=gear_id)


@router.patch("/me/gear/{gear_id}", summary="Edit an item (its life, distance at start, sports...) or retire it")
async def edit_gear(gear_id: EntityId, body: GearEdit, caller: CallerDep, arena: ArenaDep) -> dict:
    ref = arena.ref(Gear, caller.id)
    card = await ref.ask(Gear.card, gear_id=gear_id)
    fields = body.fields()
    if fields:
        card = await ref.ask(Gear.edit, gear_id=gear_id, changes=fields)
    if body.retired is not None:
        card = await ref.ask(Gear.retire, gear_id=gear_id, retired=body.retired)
    return card


@router.delete("/me/gear/{gear_id}", status_code=204, summary="Delete an item (its workouts count for none)")
async def delete_gear(gear_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await arena.ref(Gear, caller.id).ask(Gear.remove, gear_id=gear_id)
    return Response(status_code=204)


@router.put("/me/gear-defaults/{sport}", summary="The item new workouts of a sport count for (null: none)")
async def set_default(sport: Sport, body: DefaultIn, caller: CallerDep, arena: ArenaDep) -> dict:
    return {"defaults": await arena.ref(Gear, caller.id).ask(Gear.set_default, sport=sport, gear_id=body.gear_id)}


@router.get("/me/gear/{gear_id}/suggestions", summary="Replacements from the shop's catalogue")
async def suggestions(gear_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    card = await arena.ref(Gear, caller.id).ask(Gear.card, gear_id=gear_id)
    gear = {"type": card["type"], "component": card["component"], "sports": card["sports"], "price": card["price"],
            "brand": card["brand"]}  # fmt: skip
    return {"items": await arena.ref(Catalogue, CATALOGUE_ID).ask(Catalogue.suggestions, gear=gear, limit=6)}


@router.get("/workouts/{workout_id}/gear", summary="The item a workout counts for")
async def workout_gear(workout_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    access = await visible_workout(arena, workout_id, caller)
    return await arena.ref(Gear, access["owner"]).ask(Gear.of_workout, workout_id=workout_id)


@router.put("/workouts/{workout_id}/gear", summary="Count a workout for one of my items, by hand (null: none)")
async def assign_gear(workout_id: EntityId, body: WorkoutGearIn, caller: CallerDep, arena: ArenaDep) -> dict:
    access = await arena.ref(Workout, workout_id).ask(Workout.access)
    if access["owner"] != caller.id:
        await visible_workout(arena, workout_id, caller)  # 404 for those who may not even see it
        raise Problem(403, "only the workout's owner chooses its gear")
    return await arena.ref(Gear, caller.id).ask(Gear.assign, workout_id=workout_id, gear_id=body.gear_id)
