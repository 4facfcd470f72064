"""Segments: create one from a stretch of your own workout, read it, its leaderboards, your records, those near a point.

Efforts come from the engine (a reaction to every recorded workout with a track, docs/segments.md) and,
for the workouts recorded before a segment, from its backfill, which creating it starts (a Ray job,
``serve/segment_backfill.py``). Every route needs a token.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import Annotated, Literal

import h3
import numpy as np
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from actors.account import Account
from actors.athlete import AGE_GROUPS, SEXES
from actors.segment import BOARDS, LEGEND_DAYS, NAME_LENGTH, Segment
from actors.segment_index import MAX_VERTICES, SegmentShard
from actors.segment_records import SegmentRecords
from actors.segment_shards import SHARD_RESOLUTION, segment_shard
from actors.workout import Workout
from engine.errors import EngineError
from engine.segments import MAX_LENGTH_M, MIN_LENGTH_M, resample
from engine.segments.geometry import path_length_m
from serve.api.workouts import visible_workout
from serve.context import Arena, ArenaDep, CallerDep, EntityId, new_id
from serve.problems import Problem
from serve.race_privacy import named_as_seen
from serve.segment_backfill import start_backfill

__all__ = ["router"]

router = APIRouter(tags=["segments"])

NEAR_MOST_KM = 50.0
_SHARD_EDGE_KM = h3.average_hexagon_edge_length(SHARD_RESOLUTION, "km")
_SPARE_ROWS = 10  # a board reads this many rows more than it shows, for those its privacy check leaves out
Distance = Annotated[float, Field(ge=0, le=2_000_000, allow_inf_nan=False)]


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workout_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_LENGTH)]
    from_m: Distance = Field(description="where the segment starts, in metres along the workout's track")
    to_m: Distance

    @model_validator(mode="after")
    def _ordered(self) -> SegmentIn:
        if not self.from_m < self.to_m:
            raise ValueError("from_m must come before to_m")
        return self


def _stretch(track: list, from_m: float, to_m: float) -> tuple[list[float], list[float]]:
    """The track's polyline between two distances along it, its ends interpolated."""
    points = np.array([[p[0], p[1]] for p in track if p[0] is not None and p[1] is not None], dtype=float)
    if len(points) < 2:
        raise Problem(422, "this workout has no GPS track to make a segment from")
    steps = [0.0] + [path_length_m(points[i : i + 2, 0], points[i : i + 2, 1]) for i in range(len(points) - 1)]
    arc = np.cumsum(steps)
    if to_m > arc[-1]:
        raise Problem(422, f"the track is {arc[-1]:.0f} m long: to_m must be within it")
    inside = (arc > from_m) & (arc < to_m)
    lat = np.concatenate(
        ([np.interp(from_m, arc, points[:, 0])], points[inside, 0], [np.interp(to_m, arc, points[:, 0])])
    )
    lon = np.concatenate(
        ([np.interp(from_m, arc, points[:, 1])], points[inside, 1], [np.interp(to_m, arc, points[:, 1])])
    )
    if len(lat) > MAX_VERTICES:
        lat, lon = resample(lat, lon, MAX_VERTICES)
    return [round(float(v), 6) for v in lat], [round(float(v), 6) for v in lon]


@router.post("/segments", status_code=201, summary="Create a segment from a stretch of one of my workouts")
async def create_segment(body: SegmentIn, caller: CallerDep, arena: ArenaDep) -> dict:
    access = await visible_workout(arena, body.workout_id, caller)
    if access["owner"] != caller.id:
        raise Problem(403, "a segment is made from one of your own workouts")
    workout = await arena.ref(Workout, body.workout_id).ask(Workout.full, viewer=caller.id)
    lat, lon = _stretch(workout.get("track") or [], body.from_m, body.to_m)
    length = path_length_m(np.array(lat), np.array(lon))
    if not MIN_LENGTH_M <= length <= MAX_LENGTH_M:
        raise Problem(
            422, f"a segment is {MIN_LENGTH_M:.0f} m to {MAX_LENGTH_M / 1000:.0f} km long, not {length:.0f} m"
        )
    segment_id, shard = new_id(), segment_shard(lat[0], lon[0])
    await arena.ref(SegmentShard, shard).ask(SegmentShard.add, segment_id=segment_id, lat=lat, lon=lon, length_m=length)
    created = await arena.ref(Segment, segment_id).ask(
        Segment.define,
        creator=caller.id,
        name=body.name,
        sport=workout.get("sport") or "other",
        lat=lat,
        lon=lon,
        length_m=round(length, 1),
        shard=shard,
    )
    return {**created, "backfill": await start_backfill(arena, segment_id)}  # the workouts recorded before it


@router.get("/segments", summary="Segments that start near a point, nearest first")
async def segments_near(
    caller: CallerDep,
    arena: ArenaDep,
    lat: Annotated[float, Query(ge=-85, le=85, allow_inf_nan=False)],
    lon: Annotated[float, Query(ge=-180, le=180, allow_inf_nan=False)],
    radius_km: Annotated[float, Query(gt=0, le=NEAR_MOST_KM, allow_inf_nan=False)] = 10.0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> dict:
    rings = math.ceil(radius_km / (1.5 * _SHARD_EDGE_KM / 1.25)) + 1
    shards = sorted(h3.grid_disk(segment_shard(lat, lon), rings))
    answers = await arena.cluster.deliver(
        [(SegmentShard.kind, s, "near", {"lat": lat, "lon": lon, "radius_km": radius_km}, None) for s in shards]
    )
    found = sorted(
        (item for answer in answers if not isinstance(answer, EngineError) for item in answer),
        key=lambda item: (item["distance_km"], item["id"]),
    )[:limit]
    infos = await arena.cluster.deliver([(Segment.kind, item["id"], "info", {}, None) for item in found])
    items = [
        {"id": item["id"], "distance_km": item["distance_km"], **{k: info[k] for k in ("name", "sport", "length_m")}}
        for item, info in zip(found, infos)
        if not isinstance(info, EngineError)
    ]
    return {"items": items}


@router.get("/segments/{segment_id}", summary="A segment: its name, sport, length and points, its KOM and QOM")
async def get_segment(segment_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    info = await arena.ref(Segment, segment_id).ask(Segment.info)
    overall, women = await asyncio.gather(
        _board(arena, segment_id, caller.id, "overall", 1), _board(arena, segment_id, caller.id, "overall", 1, "women")
    )
    return {**info, "kom": overall["kom"], "qom": women["qom"]}


@router.get(
    "/segments/{segment_id}/leaderboard",
    summary="A segment's leaderboard: overall (KOM), this year, friends, Local Legend; by sex (QOM) and age group",
)
async def leaderboard(
    segment_id: EntityId,
    caller: CallerDep,
    arena: ArenaDep,
    board: Literal[BOARDS] = "overall",  # type: ignore[valid-type]
    sex: Literal[SEXES] | None = None,  # type: ignore[valid-type]
    age_group: Literal[AGE_GROUPS] | None = None,  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> dict:
    return await _board(arena, segment_id, caller.id, board, limit, sex, age_group)


async def _board(
    arena: Arena,
    segment_id: str,
    viewer: str,
    board: str,
    limit: int,
    sex: str | None = None,
    age_group: str | None = None,
) -> dict:
    """The board as ``viewer`` may see it; ``kom`` (overall, the fastest of all) and ``qom`` (overall, the
    fastest woman) name its first row, and ``local_legend`` the legend's."""
    now = time.time()
    since = None
    if board == "year":
        since = datetime(datetime.fromtimestamp(now, UTC).year, 1, 1, tzinfo=UTC).timestamp()
    elif board == "legend":
        since = now - LEGEND_DAYS * 86_400
    friends = await arena.ref(Account, viewer).ask(Account.ids, which="following") if board == "friends" else None
    asked = limit if board == "legend" else min(100, limit + _SPARE_ROWS)
    answer = await arena.ref(Segment, segment_id).ask(
        Segment.leaderboard,
        board=board,
        viewer=viewer,
        friends=friends,
        since=since,
        limit=asked,
        sex=sex,
        age_group=age_group,
    )
    if board != "legend":
        answer = await _still_public(arena, answer, viewer, limit)
    answer["rows"] = await named_as_seen(arena, answer["rows"], viewer, key="athlete")  # private profiles hidden
    if board == "overall" and age_group is None and sex in (None, "women"):
        answer["qom" if sex else "kom"] = answer["rows"][0] if answer["rows"] else None
    if board == "legend":
        answer["local_legend"] = answer["rows"][0] if answer["rows"] else None
    return answer


async def _still_public(arena: Arena, answer: dict, viewer: str, limit: int) -> dict:
    """The board without the efforts of workouts made private (or deleted) since they were matched: the segment
    decided ``shown`` when the effort came, and a workout's later edit tells it nothing. The viewer's own stay."""
    rows = answer["rows"]
    others = [r for r in rows if r["athlete"] != viewer]
    access = await arena.cluster.deliver([(Workout.kind, r["workout_id"], "access", None, None) for r in others])
    hidden = {
        r["workout_id"] for r, a in zip(others, access) if isinstance(a, EngineError) or a["visibility"] != "public"
    }
    kept = [{**r, "rank": n} for n, r in enumerate((r for r in rows if r["workout_id"] not in hidden), 1)]
    me = next((r for r in kept if r["athlete"] == viewer), None)
    if me is None and answer["me"] is not None:  # further down than the rows read: those hidden above move it up
        me = {**answer["me"], "rank": answer["me"]["rank"] - len(hidden)}
    return {**answer, "rows": kept[:limit], "me": me}


@router.get("/me/segments/records", summary="My best effort on every segment I have covered")
async def my_records(caller: CallerDep, arena: ArenaDep) -> dict:
    return {"items": await arena.ref(SegmentRecords, caller.id).ask(SegmentRecords.records)}
