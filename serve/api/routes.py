"""Routes: make one from a GPX/TCX/FIT file or one of my workouts, read, edit, delete, export as GPX,
save others', and search the library by region, near a point, sport, surface, distance and climb.

Visibility works as a workout's: public, followers (``Account.may_see`` of the owner) or private; a
route the caller may not see is a 404, existence included. Every route needs a token.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.datastructures import UploadFile

from actors.account import VISIBILITIES, Account
from actors.route import DESCRIPTION_LENGTH, DIRECTORY_SHARDS, NAME_LENGTH, Route
from actors.route_directory import PAGE_MOST, RouteDirectory
from actors.route_library import OWN_MOST, RouteLibrary
from actors.route_track import SURFACES, BadTrack, measure, to_gpx
from actors.workout import SPORTS, Workout
from connectors.workout_files import MAX_FILE_BYTES, BadWorkoutFile, parse_workout_file
from engine.errors import EngineError, NotFound
from serve.api.workouts import visible_workout
from serve.auth import Caller
from serve.context import Arena, ArenaDep, CallerDep, EntityId, new_id
from serve.pagination import Cursor, Limit, decode_cursor, encode_cursor
from serve.problems import Problem

__all__ = ["RouteId", "router", "shared_route"]

router = APIRouter(tags=["routes"])

NEAR_MOST_KM = 200.0
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_LENGTH)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=DESCRIPTION_LENGTH)]
Sport = Literal[SPORTS]  # type: ignore[valid-type]
Surface = Literal[SURFACES]  # type: ignore[valid-type]
Visibility = Literal[VISIBILITIES]  # type: ignore[valid-type]
RouteId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"),
    Field(description="a public route's id (GET /routes): shown with its name, sport, distance and climb"),
]
Metres = Annotated[float, Query(ge=0, le=2_000_000, allow_inf_nan=False)]
Climb = Annotated[float, Query(ge=0, le=100_000, allow_inf_nan=False)]


class RouteFields(BaseModel):
    """What a new route may say besides its track; a file's form fields and a workout's JSON alike."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description = ""
    sport: Sport | None = None
    surface: Surface = "road"
    visibility: Visibility = "public"


class RouteFromWorkout(RouteFields):
    workout_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class RouteEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None
    sport: Sport | None = None
    surface: Surface | None = None
    visibility: Visibility | None = None


_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RouteFromWorkout.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "a GPX, TCX or FIT file"},
                        **RouteFields.model_json_schema()["properties"],
                    },
                }
            },
        },
    }
}


def _invalid(error: ValidationError) -> RequestValidationError:
    return RequestValidationError(error.errors(include_url=False, include_context=False))


async def _from_file(request: Request) -> tuple[RouteFields, list[list], dict, float]:
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=16 * 1024)
    except Exception as error:  # starlette's MultiPartException and parse errors: a malformed body
        raise Problem(400, f"the form cannot be read: {str(error)[:200]}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Problem(422, "send the route as a file field named file (GPX, TCX or FIT)")
    try:
        fields = RouteFields.model_validate({k: v for k, v in form.items() if k != "file"})
    except ValidationError as error:
        raise _invalid(error) from None
    data = await upload.read(MAX_FILE_BYTES + 1)
    try:  # a 25 MB file takes seconds to parse: off the event loop
        parsed = await asyncio.to_thread(parse_workout_file, data, upload.filename)
    except (BadWorkoutFile, ValueError) as error:
        raise Problem(422, f"the file cannot make a route: {error}") from None
    if fields.name is None and parsed.name:
        fields.name = parsed.name.strip()[:NAME_LENGTH] or None
    if fields.sport is None and parsed.sport in SPORTS:
        fields.sport = parsed.sport
    points = [[p.lat, p.lon, p.ele, p.t - parsed.start] for p in parsed.points]
    return fields, points, {"kind": "file", "format": parsed.format}, parsed.start


async def _from_workout(request: Request, arena: Arena, caller: Caller) -> tuple[RouteFields, list[list], dict, float]:
    try:
        body = RouteFromWorkout.model_validate_json(await request.body())
    except ValidationError as error:
        raise _invalid(error) from None
    access = await visible_workout(arena, body.workout_id, caller)
    if access["owner"] != caller.id:
        raise Problem(403, "a route is made from one of your own workouts")
    workout = await arena.ref(Workout, body.workout_id).ask(Workout.full, viewer=caller.id)
    fields = RouteFields.model_validate(body.model_dump(exclude={"workout_id"}))
    if fields.name is None:
        fields.name = (workout.get("title") or "Route")[:NAME_LENGTH]
    if fields.sport is None:
        fields.sport = workout.get("sport") or "other"
    source = {"kind": "workout", "workout_id": body.workout_id}
    return fields, workout.get("track") or [], source, float(workout.get("start") or 0.0)


@router.post(
    "/routes",
    status_code=201,
    summary="Make a route from a GPX, TCX or FIT file (multipart) or from one of my workouts (JSON)",
    openapi_extra=_CREATE_BODY,
)
async def create_route(request: Request, caller: CallerDep, arena: ArenaDep) -> dict:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        fields, points, source, recorded = await _from_file(request)
    elif kind == "application/json":
        fields, points, source, recorded = await _from_workout(request, arena, caller)
    else:
        raise Problem(415, "send a file as multipart/form-data, or {workout_id} as application/json")
    if not await arena.ref(RouteLibrary, caller.id).ask(RouteLibrary.room):
        raise Problem(409, f"you have {OWN_MOST:,} routes: delete some before making more")
    try:
        measured = await asyncio.to_thread(measure, points)
    except BadTrack as error:
        raise Problem(422, f"these points cannot make a route: {error}") from None
    return await arena.ref(Route, new_id()).ask(
        Route.create,
        owner=caller.id,
        name=fields.name or "Route",
        description=fields.description,
        sport=fields.sport or "other",
        surface=fields.surface,
        visibility=fields.visibility,
        measured=measured,
        source=source,
        recorded=recorded,
    )


async def _visible(arena: Arena, route_id: str, caller: Caller) -> dict:
    """The route's owner and visibility, or 404 if the caller may not see it (existence included)."""
    access = await arena.ref(Route, route_id).ask(Route.access)
    if access["owner"] != caller.id and not await arena.ref(Account, access["owner"]).ask(
        Account.may_see, viewer=caller.id, visibility=access["visibility"]
    ):
        raise NotFound("no such route")
    return access


async def shared_route(arena: Arena, route_id: str, caller: Caller) -> dict:
    """The route a race, a group event or a challenge is to use (``Route.full``): one the caller sees (else
    422, as for an unknown one) and public, since everyone who sees what uses it is shown the route."""
    try:
        access = await _visible(arena, route_id, caller)
    except NotFound:
        raise Problem(422, f"no route {route_id}") from None
    if access["visibility"] != "public":
        raise Problem(
            422,
            f"the route {route_id} is {access['visibility']}: what uses a route shows it to everyone who sees"
            " it, so make the route public first (PATCH /routes/{id}) or pick a public one",
        )
    return await arena.ref(Route, route_id).ask(Route.full)


async def _owned(arena: Arena, route_id: str, caller: Caller) -> None:
    if (await _visible(arena, route_id, caller))["owner"] != caller.id:
        raise Problem(403, "only the route's owner may change it")


@router.get("/routes", summary="Search the route library: near a point or in a region, by sport, surface, "
            "distance and climb; nearest first with a point, else newest first")  # fmt: skip
async def search_routes(
    caller: CallerDep,
    arena: ArenaDep,
    lat: Annotated[float | None, Query(ge=-90, le=90, allow_inf_nan=False)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180, allow_inf_nan=False)] = None,
    radius_km: Annotated[float, Query(gt=0, le=NEAR_MOST_KM, allow_inf_nan=False)] = 25.0,
    region: Annotated[str | None, Query(pattern=r"^[0-9a-f]{15}$", description="an H3 cell, resolution 5")] = None,
    sport: Sport | None = None,
    surface: Surface | None = None,
    min_distance_m: Metres | None = None,
    max_distance_m: Metres | None = None,
    min_elevation_gain_m: Climb | None = None,
    max_elevation_gain_m: Climb | None = None,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> dict:
    if (lat is None) != (lon is None):
        raise Problem(422, "near me needs both lat and lon")
    after = decode_cursor(cursor)
    query: dict[str, Any] = {
        "near": [lat, lon] if lat is not None else None,
        "radius_km": radius_km,
        "region": region,
        "sport": sport,
        "surface": surface,
        "distance_m": [min_distance_m, max_distance_m],
        "elevation_gain_m": [min_elevation_gain_m, max_elevation_gain_m],
        "limit": min(limit, PAGE_MOST),
    }
    # A followers-only route is kept only for its owner's followers, so each shard is asked for a full
    # page past the cursor, and the page ends where every shard's answer is complete.
    answers = await arena.cluster.deliver(
        [(RouteDirectory.kind, f"r{n:02d}", "search", {**query, "after": after}, None) for n in range(DIRECTORY_SHARDS)]
    )
    parts = [answer for answer in answers if not isinstance(answer, EngineError)]
    if len(parts) < len(answers):
        raise Problem(503, "the route library is busy; try again", headers={"Retry-After": "1"})
    full = [part[-1]["key"] for part in parts if len(part) == query["limit"]]
    bound = min(((k[0], k[1]) for k in full), default=None)
    merged = sorted(
        (item for part in parts for item in part if bound is None or (item["key"][0], item["key"][1]) <= bound),
        key=lambda item: (item["key"][0], item["key"][1]),
    )
    owners = sorted({i["owner"] for i in merged if i["visibility"] != "public" and i["owner"] != caller.id})
    allowed = await arena.cluster.deliver(
        [(Account.kind, o, "may_see", {"viewer": caller.id, "visibility": "followers"}, None) for o in owners]
    )
    hidden = {o for o, ok in zip(owners, allowed) if ok is not True}
    items = [i for i in merged if i["owner"] not in hidden or i["visibility"] == "public"][:limit]
    following = items[-1]["key"] if len(items) == limit else (list(bound) if bound is not None else None)
    for item in items:
        del item["key"]
    return {"items": items, "next_cursor": encode_cursor(following)}


@router.get("/routes/{route_id}.gpx", summary="A route as a GPX 1.1 file", response_class=Response)
async def export_gpx(route_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await _visible(arena, route_id, caller)
    route = await arena.ref(Route, route_id).ask(Route.full)
    document = to_gpx(route["name"], route["sport"], route["points"], route["recorded"])
    return Response(
        document,
        media_type="application/gpx+xml",
        headers={"Content-Disposition": f'attachment; filename="route-{route_id}.gpx"'},
    )


@router.get("/routes/{route_id}", summary="A route: its figures, elevation profile and points")
async def get_route(route_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await _visible(arena, route_id, caller)
    route = await arena.ref(Route, route_id).ask(Route.full)
    route["saved"] = await arena.ref(RouteLibrary, caller.id).ask(RouteLibrary.is_saved, route_id=route_id)
    return route


@router.patch("/routes/{route_id}", summary="Rename a route, or change its sport, surface or visibility")
async def edit_route(route_id: EntityId, body: RouteEdit, caller: CallerDep, arena: ArenaDep) -> dict:
    await _owned(arena, route_id, caller)
    return await arena.ref(Route, route_id).ask(Route.edit, changes=body.model_dump(exclude_none=True))


@router.delete("/routes/{route_id}", status_code=204, summary="Delete one of my routes")
async def delete_route(route_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await _owned(arena, route_id, caller)
    await arena.ref(Route, route_id).ask(Route.delete)
    return Response(status_code=204)


@router.put("/routes/{route_id}/saved", summary="Save a route to my library")
async def save_route(route_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await _visible(arena, route_id, caller)
    await arena.ref(RouteLibrary, caller.id).ask(RouteLibrary.save, route_id=route_id)
    return {"saved": True}


@router.delete("/routes/{route_id}/saved", summary="Take a route out of my saved ones")
async def unsave_route(route_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await arena.ref(RouteLibrary, caller.id).ask(RouteLibrary.unsave, route_id=route_id)
    return {"saved": False}


@router.get("/me/routes", summary="My routes, or those I saved, newest first")
async def my_routes(
    caller: CallerDep,
    arena: ArenaDep,
    which: Literal["mine", "saved"] = "mine",
    cursor: Cursor = None,
    limit: Limit = 20,
) -> dict:
    page = await arena.ref(RouteLibrary, caller.id).ask(
        RouteLibrary.routes, which=which, before=decode_cursor(cursor), limit=limit
    )
    infos = await arena.cluster.deliver([(Route.kind, i["id"], "info", {}, None) for i in page["items"]])
    owners = sorted({i["owner"] for i in infos if isinstance(i, dict) and i["owner"] != caller.id})
    allowed = await arena.cluster.deliver(
        [(Account.kind, o, "may_see", {"viewer": caller.id, "visibility": "followers"}, None) for o in owners]
    )
    followed = {o for o, ok in zip(owners, allowed) if ok is True}
    items = []
    for entry, info in zip(page["items"], infos):
        if isinstance(info, EngineError):
            items.append({"id": entry["id"], "at": entry["at"], "gone": True})  # deleted since it was saved
            continue
        shown = (
            info["owner"] == caller.id
            or info["visibility"] == "public"
            or (info["visibility"] == "followers" and info["owner"] in followed)
        )
        if shown:
            del info["profile"]
            items.append({**info, "at": entry["at"], "gone": False})
        else:
            items.append({"id": entry["id"], "at": entry["at"], "gone": True})  # hidden from me since
    return {"items": items, "next_cursor": encode_cursor(page["next"])}
