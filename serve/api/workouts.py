"""Workouts: record by hand, import GPX/TCX/FIT, read, edit, delete; kudos and comments."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, UploadFile
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from actors.account import HEALTH_FIELDS, VISIBILITIES, Account
from actors.athlete import age_group
from actors.feed import Feed
from actors.my_activity import MyActivity
from actors.workout import MAX_COMMENT_LENGTH, SPORTS, Workout, track_start
from connectors.workout_files import MAX_FILE_BYTES, BadWorkoutFile, ParsedWorkout, fingerprint, parse_workout_file
from engine import dates
from engine.errors import NotFound, Rejected
from engine.privacy_zones import Zone, visible_range
from engine.training.tracks import TrackSummary, summarize
from serve.auth import Caller
from serve.context import Arena, ArenaDep, CallerDep, EntityId, OptionalCallerDep, new_id
from serve.notify import notify
from serve.pagination import Cursor, Limit, paged
from serve.privacy_views import hide_workout, shown_to, zones_of
from serve.problems import Problem

__all__ = ["router", "publish_workout", "SPORTS"]

router = APIRouter(tags=["workouts"])

Visibility = Literal[VISIBILITIES]  # type: ignore[valid-type]
_TRACK_POINTS = 1_000  # the map keeps this many points of the track


class ManualWorkout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sport: Literal[SPORTS]  # type: ignore[valid-type]
    start: AwareDatetime
    duration_s: Annotated[float, Field(gt=0, le=7 * 86_400)]
    distance_m: Annotated[float, Field(ge=0, le=2_000_000)] = 0
    elevation_gain_m: Annotated[float, Field(ge=0, le=100_000)] = 0
    avg_hr: Annotated[float | None, Field(ge=20, le=250)] = None
    max_hr: Annotated[int | None, Field(ge=20, le=250)] = None
    calories: Annotated[float | None, Field(ge=0, le=100_000)] = None
    title: Annotated[str | None, Field(max_length=120)] = None
    visibility: Visibility | None = None
    indoor: bool = False

    @field_validator("start")
    @classmethod
    def _plausible(cls, start: datetime) -> datetime:
        try:
            seconds = start.timestamp()
        except (OverflowError, ValueError):  # year 1 east of UTC is before year 1 in UTC
            seconds = -math.inf
        dates.recorded(seconds, "a workout's start")
        return start


class WorkoutEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str | None, Field(max_length=120)] = None
    description: Annotated[str | None, Field(max_length=2_000)] = None
    visibility: Visibility | None = None


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, Field(min_length=1, max_length=MAX_COMMENT_LENGTH)]


def _pace(distance_m: float, seconds: float) -> float | None:
    return seconds / (distance_m / 1000) if distance_m > 0 else None


async def publish_workout(arena: Arena, owner: str, summary: dict, detail: dict, file_print: str | None = None) -> dict:
    """Record a workout, list it in its owner's account, and fan it out to followers' feeds."""
    account = await arena.ref(Account, owner).ask(Account.me)
    summary = {**summary, "visibility": summary.get("visibility") or account["default_visibility"]}
    if account["privacy_zones"] and detail.get("track"):  # segments match only what others may see
        zones = [Zone(z["lat"], z["lon"], z["radius_m"]) for z in account["privacy_zones"]]
        detail = {**detail, "shared": list(visible_range(detail["track"], zones))}
    if not account["health_consent"]:  # heart rates are not stored without it (docs/privacy.md)
        summary = {k: v for k, v in summary.items() if k not in HEALTH_FIELDS}
        detail = {**detail, "splits": [{k: v for k, v in split.items() if k not in HEALTH_FIELDS}
                                       for split in detail.get("splits", [])]}  # fmt: skip
    profile = account["profile"]  # its efforts count on the segment boards of this sex and age group
    athlete = {"sex": profile.get("sex"), "age_group": age_group(profile.get("birth_year"), summary["start"])}
    await arena.ref(Workout, summary["id"]).ask(
        Workout.record, owner=owner, summary=summary, detail=detail, athlete=athlete
    )
    try:
        await arena.ref(Account, owner).ask(Account.add_workout, summary=summary, fingerprint=file_print)
    except Rejected as duplicate:
        await arena.ref(Workout, summary["id"]).ask(Workout.delete)
        raise Problem(409, duplicate.message) from None
    if summary["visibility"] != "private":
        item = {
            "id": summary["id"],
            "at": summary["start"],
            "owner": owner,
            "owner_name": account["profile"].get("display_name"),
            **{k: summary.get(k) for k in ("sport", "title", "distance_m", "moving_s", "elapsed_s", "visibility")},
        }
        # Read-your-writes for the owner; followers' feeds get it from the relay (workout.recorded).
        await arena.ref(Feed, owner).ask(Feed.push, item=item)
    return summary


@router.post("/workouts", status_code=201, summary="Record a workout by hand (indoor ones too)")
async def record(body: ManualWorkout, caller: CallerDep, arena: ArenaDep) -> dict:
    summary = {
        "id": new_id(),
        "sport": body.sport,
        "title": body.title or f"{body.sport.capitalize()} on {body.start.date().isoformat()}",
        "start": body.start.timestamp(),
        "elapsed_s": body.duration_s,
        "moving_s": body.duration_s,
        "distance_m": body.distance_m,
        "elevation_gain_m": body.elevation_gain_m,
        "pace_s_per_km": _pace(body.distance_m, body.duration_s),
        "avg_hr": body.avg_hr,
        "max_hr": body.max_hr,
        "avg_power": None,
        "calories": body.calories,
        "visibility": body.visibility,
        "indoor": body.indoor,
        "source": "manual",
        "best_efforts": {},
        "start_point": None,
    }
    return await publish_workout(arena, caller.id, summary, {"splits": [], "track": []})


@router.post("/workouts/import", status_code=201, summary="Import a GPX, TCX or FIT file")
async def import_file(
    file: UploadFile,
    caller: CallerDep,
    arena: ArenaDep,
    visibility: Annotated[Visibility | None, Query()] = None,
    title: Annotated[str | None, Query(max_length=120)] = None,
) -> dict:
    data = await file.read(MAX_FILE_BYTES + 1)

    def read() -> tuple[ParsedWorkout, TrackSummary]:
        parsed = parse_workout_file(data, file.filename)
        return parsed, summarize(parsed.points)

    try:  # a 25 MB file takes seconds to parse: off the event loop
        parsed, track = await asyncio.to_thread(read)
    except (BadWorkoutFile, ValueError) as error:
        raise Problem(422, f"the file cannot be imported: {error}") from None
    stats = track.to_dict()
    indoor = not any(p.lat is not None for p in parsed.points)
    sport = parsed.sport or "other"
    step = max(1, math.ceil(len(parsed.points) / _TRACK_POINTS))
    summary = {
        "id": new_id(),
        "sport": sport,
        "title": title or parsed.name or f"{sport.capitalize()} on {datetime.fromtimestamp(parsed.start).date()}",
        "start": parsed.start,
        "elapsed_s": stats["elapsed_s"],
        "moving_s": stats["moving_s"],
        "distance_m": stats["distance_m"],
        "elevation_gain_m": stats["elevation_gain_m"],
        "pace_s_per_km": stats["pace_s_per_km"],
        "avg_hr": stats["avg_hr"],
        "max_hr": stats["max_hr"],
        "avg_power": stats["avg_power"],
        "calories": parsed.calories,
        "visibility": visibility,
        "indoor": indoor,
        "source": parsed.format,
        "best_efforts": stats["best_efforts"],
        "start_point": track_start([p.lat, p.lon] for p in parsed.points),
    }
    detail = {
        "splits": stats["splits"],
        # [lat, lon, ele, seconds from the start]: segment efforts are timed from the track (docs/segments.md)
        "track": [[p.lat, p.lon, p.ele, p.t - parsed.start] for p in parsed.points[::step] if p.lat is not None],
    }
    return await publish_workout(arena, caller.id, summary, detail, fingerprint(parsed))


async def visible_workout(arena: Arena, workout_id: str, viewer: Caller | None) -> dict:
    """The workout's owner and visibility, or 404 if the viewer may not see it (existence included)."""
    access = await arena.ref(Workout, workout_id).ask(Workout.access)
    viewer_id = viewer.id if viewer else None
    if not await arena.ref(Account, access["owner"]).ask(
        Account.may_see, viewer=viewer_id, visibility=access["visibility"]
    ):
        raise NotFound("no such workout")
    return access


@router.get("/users/{user_id}/workouts", summary="An athlete's workouts the caller may see, newest first")
async def list_workouts(
    user_id: EntityId,
    caller: OptionalCallerDep,
    arena: ArenaDep,
    cursor: Cursor = None,
    limit: Limit = 20,
) -> dict:
    viewer = caller.id if caller else None
    page = await paged(arena.ref(Account, user_id), Account.workout_list, cursor, limit, viewer=viewer)
    return {**page, "items": await shown_to(arena, viewer, user_id, page["items"])}


@router.get("/workouts/{workout_id}", summary="One workout with its splits and track")
async def get_workout(workout_id: EntityId, caller: OptionalCallerDep, arena: ArenaDep) -> dict:
    await visible_workout(arena, workout_id, caller)
    viewer = caller.id if caller else None
    workout = await arena.ref(Workout, workout_id).ask(Workout.full, viewer=viewer)
    if workout["owner"] == viewer:
        return workout
    return hide_workout(workout, (await zones_of(arena, [workout["owner"]]))[workout["owner"]])


async def _owned(arena: Arena, workout_id: str, caller: Caller) -> dict:
    access = await arena.ref(Workout, workout_id).ask(Workout.access)
    if access["owner"] != caller.id:
        await visible_workout(arena, workout_id, caller)  # 404 for those who may not even see it
        raise Problem(403, "only the workout's owner may change it")
    return access


@router.patch("/workouts/{workout_id}", summary="Edit a workout's title, description or visibility")
async def edit_workout(workout_id: EntityId, body: WorkoutEdit, caller: CallerDep, arena: ArenaDep) -> dict:
    await _owned(arena, workout_id, caller)
    changes = body.model_dump(exclude_none=True)
    card = await arena.ref(Workout, workout_id).ask(Workout.edit, changes=changes)
    await arena.ref(Account, caller.id).ask(Account.edit_workout, workout_id=workout_id, changes=changes)
    return card


@router.delete("/workouts/{workout_id}", status_code=204, summary="Delete a workout")
async def delete_workout(workout_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await _owned(arena, workout_id, caller)
    await arena.ref(Workout, workout_id).ask(Workout.delete)
    await arena.ref(Account, caller.id).ask(Account.remove_workout, workout_id=workout_id)
    return Response(status_code=204)


@router.put("/workouts/{workout_id}/kudos", summary="Give kudos")
async def give_kudos(workout_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    access = await visible_workout(arena, workout_id, caller)
    given = await arena.ref(Workout, workout_id).ask(Workout.give_kudos, athlete=caller.id)
    if given["added"]:
        await arena.ref(MyActivity, caller.id).ask(MyActivity.kudos_given, workout_id=workout_id, given=True)
        await notify(arena, access["owner"], "kudos", {"workout_id": workout_id, "from": caller.id})
    return {"kudos": given["kudos"]}


@router.delete("/workouts/{workout_id}/kudos", summary="Take kudos back")
async def take_kudos(workout_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await visible_workout(arena, workout_id, caller)
    kudos = await arena.ref(Workout, workout_id).ask(Workout.take_kudos, athlete=caller.id)
    await arena.ref(MyActivity, caller.id).ask(MyActivity.kudos_given, workout_id=workout_id, given=False)
    return {"kudos": kudos}


@router.get("/workouts/{workout_id}/kudos", summary="Who gave kudos")
async def list_kudos(
    workout_id: EntityId,
    caller: OptionalCallerDep,
    arena: ArenaDep,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict:
    await visible_workout(arena, workout_id, caller)
    return await paged(arena.ref(Workout, workout_id), Workout.kudos_list, cursor, limit)


@router.post("/workouts/{workout_id}/comments", status_code=201, summary="Comment on a workout")
async def comment(workout_id: EntityId, body: CommentIn, caller: CallerDep, arena: ArenaDep) -> dict:
    access = await visible_workout(arena, workout_id, caller)
    item = await arena.ref(Workout, workout_id).ask(
        Workout.comment, comment_id=new_id(), author=caller.id, text=body.text
    )
    await arena.ref(MyActivity, caller.id).ask(  # the athlete's export finds it there (docs/privacy.md)
        MyActivity.commented, workout_id=workout_id, comment_id=item["id"], text=body.text
    )
    if access["owner"] != caller.id:
        await notify(
            arena, access["owner"], "comment", {"workout_id": workout_id, "from": caller.id, "comment_id": item["id"]}
        )
    return item


@router.get("/workouts/{workout_id}/comments", summary="Comments, newest first")
async def list_comments(
    workout_id: EntityId,
    caller: OptionalCallerDep,
    arena: ArenaDep,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict:
    await visible_workout(arena, workout_id, caller)
    return await paged(arena.ref(Workout, workout_id), Workout.comment_list, cursor, limit)


@router.delete("/workouts/{workout_id}/comments/{comment_id}", status_code=204, summary="Delete a comment")
async def delete_comment(workout_id: EntityId, comment_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await visible_workout(arena, workout_id, caller)
    await arena.ref(Workout, workout_id).ask(Workout.remove_comment, comment_id=comment_id, by=caller.id)
    await arena.ref(MyActivity, caller.id).ask(MyActivity.uncommented, workout_id=workout_id, comment_id=comment_id)
    return Response(status_code=204)
