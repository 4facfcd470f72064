"""Live races: organizers run them, athletes join and stream telemetry, spectators watch."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from actors.account import Account
from actors.race import (
    MAX_CAPACITY,
    MAX_CATEGORIES,
    MAX_CATEGORY_CHARS,
    MAX_CHECKPOINTS,
    MAX_DURATION_S,
    MAX_NAME_CHARS,
    MAX_ROUTE_POINTS,
    MAX_TARGET_M,
    ROUTE_TOLERANCE,
    SETTLED,
    SHARED_RACE_CAPACITY,
    SHARED_RACE_PREFIX,
    Race,
    RaceEntries,
    RaceIndex,
    RaceRef,
)
from actors.route import link
from connectors.samples import MAX_SAMPLES_PER_POST, Sample, pack_samples
from engine.dates import EARLIEST, LATEST_SCHEDULED
from engine.errors import EngineError, NotFound
from engine.race import RACE_KINDS, SPORTS, TIGHTEN
from serve.access_log import record_reads
from serve.api.devices import bind_device
from serve.api.routes import RouteId, shared_route
from serve.audit import audit
from serve.auth import Caller
from serve.context import Arena, ArenaDep, CallerDep, EntityId, OptionalCallerDep, new_id
from serve.problems import Problem
from serve.race_privacy import PUBLIC, Audience, audience, conceal, shown
from serve.spectators import RaceView

__all__ = ["health_changed", "live_event", "live_view", "privacy_changed", "router", "status_event"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/races", tags=["races"])

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
RoutePoint = tuple[Annotated[float, Field(ge=-90, le=90)], Annotated[float, Field(ge=-180, le=180)]]


class RaceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    sport: Literal[SPORTS] | None = None  # type: ignore[valid-type]
    kind: Literal[RACE_KINDS] | None = None  # type: ignore[valid-type]
    target_m: Annotated[float | None, Field(gt=0, le=MAX_TARGET_M)] = None
    duration_s: Annotated[float | None, Field(gt=0, le=MAX_DURATION_S)] = None
    checkpoints_m: Annotated[
        list[Annotated[float, Field(gt=0, le=MAX_TARGET_M)]] | None, Field(max_length=MAX_CHECKPOINTS)
    ] = None
    start_mode: Literal["mass", "rolling"] | None = None
    start_at: Annotated[float | None, Field(gt=0, le=LATEST_SCHEDULED)] = None
    start_window_s: Annotated[float | None, Field(gt=0, le=MAX_DURATION_S)] = None
    categories: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_CATEGORY_CHARS)]] | None,
        Field(max_length=MAX_CATEGORIES),
    ] = None
    capacity: Annotated[
        int | None,
        Field(
            ge=1,
            le=MAX_CAPACITY,
            description=f"the most athletes (default 100,000); a race created with at most {SHARED_RACE_CAPACITY:,}"
            " runs on the shared hosts and cannot later grow past that",
        ),
    ] = None
    registration_opens: Annotated[float | None, Field(ge=EARLIEST, le=LATEST_SCHEDULED)] = None
    registration_closes: Annotated[float | None, Field(ge=EARLIEST, le=LATEST_SCHEDULED)] = None
    route: Annotated[
        list[RoutePoint] | None,
        Field(min_length=2, max_length=MAX_ROUTE_POINTS, description="the course as [lat, lon] points, for maps"),
    ] = None
    route_id: Annotated[
        RouteId | None,
        Field(
            description="a public route the race uses (shown as linked_route): a distance race given no target_m"
            f" runs the route's distance, and one off it by more than {ROUTE_TOLERANCE:.0%} is refused; the route's"
            " track becomes the course when the route is the organizer's own and no route points are given"
        ),
    ] = None
    # fair-play thresholds this race tightens (engine/race/profiles.py TIGHTEN: which, and how far)
    fair_play: dict[Literal[tuple(TIGHTEN)], Annotated[float, Field(gt=0)]] | None = None  # type: ignore[valid-type]


class NewRace(RaceSettings):
    name: Name
    sport: Literal[SPORTS]  # type: ignore[valid-type]
    kind: Literal[RACE_KINDS]  # type: ignore[valid-type]


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: Annotated[str | None, Field(max_length=MAX_CATEGORY_CHARS)] = None
    weight_kg: Annotated[float | None, Field(gt=20, lt=250)] = None
    sex: Literal["men", "women"] | None = None  # picks the W/kg caps fair play holds the athlete to


class Correction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    action: Literal["disqualify", "reinstate"]
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class Telemetry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    samples: Annotated[list[Sample], Field(min_length=1, max_length=MAX_SAMPLES_PER_POST)]


async def _settings(arena: Arena, caller: Caller, body: RaceSettings) -> dict:
    """The race's settings as the entity takes them: a ``route_id`` becomes the route's ``linked_route``, and
    replaces the course unless points are given: with the route's track when the route is the organizer's,
    else with none, so that another athlete's route made private later is not still drawn on the race."""
    config = body.model_dump(exclude_none=True, exclude={"route_id"})
    if body.route_id is not None:
        route = await shared_route(arena, body.route_id, caller)
        config["linked_route"] = link(route)
        if body.route is None:
            config["route"] = [point[:2] for point in route["points"]] if route["owner"] == caller.id else None
    return config


@router.post("", status_code=201, summary="Create a race (organizers)")
async def create(body: NewRace, caller: CallerDep, arena: ArenaDep) -> dict:
    if not caller.has("organizer"):
        raise Problem(403, "only organizers create races")
    # A small race lives on the shared hosts (no process of its own): its id says so (actors/race.py).
    small = body.capacity is not None and body.capacity <= SHARED_RACE_CAPACITY
    race_id = f"{SHARED_RACE_PREFIX}{new_id()}" if small else new_id()
    config = await _settings(arena, caller, body)
    await arena.ref(RaceRef, race_id).ask(RaceRef.register, organizer=caller.id)
    info = await arena.races.ref(race_id).ask(Race.create, organizer=caller.id, config=config)
    await arena.ref(RaceIndex, "all").ask(
        RaceIndex.add, race_id=race_id, name=body.name, organizer=caller.id, status="draft"
    )
    return info


@router.get("", summary="Recent races, newest first (mine=true: the ones I organize, drafts included)")
async def recent(
    caller: OptionalCallerDep,
    arena: ArenaDep,
    mine: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict:
    organizer = None
    if mine:
        if caller is None:
            raise Problem(401, "sign in to list your races", headers={"WWW-Authenticate": "Bearer"})
        organizer = caller.id
    return {"items": await arena.ref(RaceIndex, "all").ask(RaceIndex.recent, organizer=organizer, limit=limit)}


def _may_see_draft(caller: Caller | None, organizer: str | None) -> bool:
    return caller is not None and (caller.id == organizer or caller.has("admin"))


def _private(rows: list[dict]) -> set[int]:
    """The participants that the race marked private in ``rows`` (the mark itself is taken out)."""
    return {row["participant"] for row in rows if row.pop("private", False)}


async def _race(arena: Arena, race_id: str, caller: Caller | None) -> dict:
    """The race's info; a draft exists for its organizer (and admins) alone, for everyone else it is 404."""
    info = await arena.races.ref(race_id).ask(Race.info)
    if info["status"] == "draft" and not _may_see_draft(caller, info["organizer"]):
        raise NotFound("no such race")
    corrections = info.get("corrections", [])
    info["corrections"] = await shown(arena, caller, info["organizer"], corrections, _private(corrections))
    return info


async def _spectate(arena: Arena, race_id: str, caller: Caller | None) -> RaceView:
    """The spectators' cached view, with the same rule for drafts as ``_race``."""
    view = await arena.spectators.view(race_id)
    if view.status == "draft" and not _may_see_draft(caller, view.organizer):
        raise NotFound("no such race")
    return view


@router.get("/{race_id}", summary="A race: settings, status, transitions, totals")
async def get(race_id: EntityId, caller: OptionalCallerDep, arena: ArenaDep) -> dict:
    return await _race(arena, race_id, caller)


@router.patch("/{race_id}", summary="Change a draft or open race (its organizer)")
async def configure(race_id: EntityId, body: RaceSettings, caller: CallerDep, arena: ArenaDep) -> dict:
    changes = await _settings(arena, caller, body)
    info = await arena.races.ref(race_id).ask(Race.configure, by=caller.id, changes=changes)
    await arena.ref(RaceIndex, "all").ask(RaceIndex.note, race_id=race_id, status=info["status"], name=info["name"])
    return info


_TRANSITIONS = {
    "open": Race.open,
    "start": Race.start,
    "end": Race.end,
    "finalize": Race.finalize,
    "cancel": Race.cancel,
}


@router.post("/{race_id}/actions/{action}", summary="Open, force-start, force-end, finalize or cancel (its organizer)")
async def transition(
    race_id: EntityId, action: Literal["open", "start", "end", "finalize", "cancel"], caller: CallerDep, arena: ArenaDep
) -> dict:
    event = await arena.races.ref(race_id).ask(_TRANSITIONS[action], by=caller.id)
    await arena.ref(RaceIndex, "all").ask(RaceIndex.note, race_id=race_id, status=event["status"])
    if action in ("finalize", "cancel"):
        await audit(arena, f"race.{action}", actor=caller.id, race=race_id)
    return event


@router.post("/{race_id}/athletes", status_code=201, summary="Join a race")
async def join(race_id: EntityId, body: Entry, caller: CallerDep, arena: ArenaDep) -> dict:
    me = await arena.ref(Account, caller.id).ask(Account.me)
    if body.weight_kg is not None and not me["health_consent"]:
        raise Problem(409, "a body weight is health data: give your consent first (PUT /me/consents/health)")
    participant = await arena.races.ref(race_id).ask(
        Race.join,
        user_id=caller.id,
        name=me["profile"].get("display_name") or "athlete",
        private=bool(me.get("private")),
        health=bool(me.get("health_consent")),
        **body.model_dump(exclude_none=True),
    )
    await arena.ref(RaceEntries, caller.id).ask(RaceEntries.add, race_id=race_id)
    return {"participant": participant}


async def privacy_changed(arena: Arena, user_id: str, private: bool) -> None:
    """Tell every race the athlete joined that their profile became private or public."""

    async def tell(race_id: str) -> None:
        try:
            await arena.races.ref(race_id).ask(Race.privacy, user_id=user_id, private=private)
        except EngineError as error:  # a race that lost the athlete (or is gone) has nothing to show
            log.warning("race %s not told of %s's privacy: %s", race_id, user_id, error)

    race_ids = await arena.ref(RaceEntries, user_id).ask(RaceEntries.race_ids)
    await asyncio.gather(*(tell(race_id) for race_id in race_ids))


async def health_changed(arena: Arena, user_id: str, given: bool) -> None:
    """Tell every race the athlete joined that they gave or withdrew consent to health data."""

    async def tell(race_id: str) -> None:
        try:
            await arena.races.ref(race_id).ask(Race.health_consent, user_id=user_id, given=given)
        except EngineError as error:  # a settled race takes nothing more from them anyway
            log.warning("race %s not told of %s's health consent: %s", race_id, user_id, error)

    race_ids = await arena.ref(RaceEntries, user_id).ask(RaceEntries.race_ids)
    await asyncio.gather(*(tell(race_id) for race_id in race_ids))


@router.delete("/{race_id}/athletes/me", status_code=204, summary="Withdraw from a race")
async def withdraw(race_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await arena.races.ref(race_id).ask(Race.withdraw, user_id=caller.id)
    return Response(status_code=204)


@router.put("/{race_id}/devices/{device_id}", summary="Bind one of my devices to my entry")
async def bind(race_id: EntityId, device_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    return await bind_device(arena, caller, device_id, race_id)


@router.post("/{race_id}/telemetry", summary="Stream my samples (acknowledged once journaled)")
async def telemetry(race_id: EntityId, body: Telemetry, caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.races.ref(race_id).ask(Race.ingest, samples=pack_samples(body.samples), athletes=[caller.id])


Category = Annotated[str, Query(max_length=40)]
LEADERBOARD_MAX_AGE_S = 1  # the board moves once a tick (a second)
Top = Annotated[int, Query(ge=1, le=100)]


def _board(view, category: str, n: int) -> dict:
    board = view.boards.get(category)
    if board is None:
        raise Problem(404, f"no category {category!r} in this race")
    return {
        "status": view.status,
        "at": view.at,
        "version": view.version,
        **board,
        "entries": board["entries"][:n],
        "signal_lost": sorted(view.signal_lost),
    }


def live_event(view: RaceView, category: str, n: int) -> str:
    """The leaderboard event of one tick, encoded once for every stream that watches it;
    ``moved``: the athletes whose place changed since the tick before."""
    key = (category, n)
    cached = view.events.get(key)
    if cached is None:
        board = _board(view, category, n)
        board["entries"] = conceal(board["entries"], view.private, PUBLIC)  # one event for every viewer
        places = {e["participant"]: e["rank"] for e in board["entries"]}
        before = view.previous.events.get(key, (None, {}))[1] if view.previous is not None else {}
        board["moved"] = [p for p, rank in places.items() if before.get(p) != rank]
        event = f"event: leaderboard\ndata: {json.dumps(board, separators=(',', ':'), default=float)}\n\n"
        cached = view.events[key] = (event, places)
    return cached[0]


async def live_view(arena: Arena, race_id: str, caller: Caller | None, category: str, n: int) -> RaceView:
    """The view a live stream starts from, after the stream's checks (here and in ``serve.push``):
    a draft is its organizer's alone, and the category must be the race's."""
    view = await _spectate(arena, race_id, caller)
    _board(view, category, n)
    return view


def status_event(view: RaceView) -> str:
    """The event that tells a stream the race's status: first, and again at each transition."""
    return f"event: status\ndata: {json.dumps({'status': view.status, 'at': view.at})}\n\n"


@router.get(
    "/{race_id}/leaderboard",
    summary="Top N overall or in a category (spectator cache; ETag, and a second's max-age for shared caches)",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}, 304: {"description": "not modified (If-None-Match)"}},
)
async def leaderboard(
    request: Request, race_id: EntityId, caller: OptionalCallerDep, arena: ArenaDep, category: Category = "",
    n: Top = 100,
) -> Response:  # fmt: skip
    """Polling clients are many and the board moves once a tick: an anonymous answer is the same for
    everyone (private athletes hidden), so a CDN or the ingress may keep it for a second
    (``public, max-age=1``); a signed-in one may show whom the caller follows, so only the caller's
    own cache keeps it (``private``). The ETag is the body's digest, the same on every replica for
    the same board, and ``If-None-Match`` with it answers 304 without the body."""
    view = await _spectate(arena, race_id, caller)
    board = _board(view, category, n)
    board["entries"] = await shown(arena, caller, view.organizer, board["entries"], view.private)
    body = json.dumps(board, separators=(",", ":"), default=float).encode()
    tag = f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
    headers = {
        "ETag": tag,
        "Cache-Control": f"{'public' if caller is None else 'private'}, max-age={LEADERBOARD_MAX_AGE_S}",
        "Vary": "Authorization",
    }
    wanted = request.headers.get("if-none-match", "")
    if tag in (t.strip().removeprefix("W/") for t in wanted.split(",")) or wanted.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


@router.get("/{race_id}/leaderboard/rows", summary="Any window of the whole order, filtered by category or name")
async def rows(
    race_id: EntityId,
    caller: OptionalCallerDep,
    arena: ArenaDep,
    start: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    count: Annotated[int, Query(ge=1, le=500)] = 100,
    category: Category = "",
    q: Annotated[str, Query(max_length=80)] = "",
) -> dict:
    view = await _spectate(arena, race_id, caller)
    places = view.filtered(category, q) if category or q else None
    total = len(view.order) if places is None else len(places)
    return {
        "status": view.status,
        "at": view.at,
        "version": view.version,
        "total": total,
        "start": start,
        "rows": await shown(arena, caller, view.organizer, view.rows(start, start + count, places), view.private),
    }


@router.get("/{race_id}/leaderboard/around/{user_id}", summary="±N places around an athlete")
async def around(
    race_id: EntityId,
    user_id: EntityId,
    caller: OptionalCallerDep,
    arena: ArenaDep,
    n: Annotated[int, Query(ge=1, le=50)] = 5,
) -> dict:
    view = await _spectate(arena, race_id, caller)
    place = view.place(user_id)
    viewer = await audience(arena, caller, view.organizer) if view.private else PUBLIC
    if place is None or (view.index_of[user_id] in view.private and not viewer.sees(user_id)):
        raise Problem(404, "this athlete is not in the race")  # a hidden athlete is not found by their id
    return {"place": place, "entries": conceal(view.around(user_id, n), view.private, viewer)}


@router.get("/{race_id}/leaderboard/friends", summary="Me and the athletes I follow, in race order")
async def friends(race_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    view = await _spectate(arena, race_id, caller)
    wanted = {caller.id, *await arena.ref(Account, caller.id).ask(Account.ids, which="following")}
    places = sorted(p for user in wanted if (p := view.place(user)) is not None)
    entries = [row for p in places for row in view.rows(p - 1, p)]
    # Whom I follow is in hand: a private athlete is among them only once they approved me.
    viewer = Audience(everyone=caller.id == view.organizer or caller.has("admin"), known=frozenset(wanted))
    return {"entries": conceal(entries, view.private, viewer)}


@router.get("/{race_id}/live", summary="The leaderboard as Server-Sent Events, once a tick", response_class=Response)
async def live(
    request: Request,
    race_id: EntityId,
    caller: OptionalCallerDep,
    arena: ArenaDep,
    category: Category = "",
    n: Top = 100,
) -> StreamingResponse:
    """The public stream: private athletes are hidden in it for every viewer (each tick is encoded once)."""
    await live_view(arena, race_id, caller, category, n)  # a 404 now, before the stream starts

    async def events():
        yield "retry: 2000\n\n"
        status = None
        async for view in arena.spectators.updates(race_id):
            if await request.is_disconnected():
                return
            if view.status != status:  # a transition: draft, open, live, finished, final, cancelled
                status = view.status
                yield status_event(view)
            yield live_event(view, category, n)
            if view.status in SETTLED:
                return

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/{race_id}/results", summary="Results with DNS, DNF and DSQ (provisional until final)")
async def results(race_id: EntityId, caller: OptionalCallerDep, arena: ArenaDep) -> dict:
    info = await _race(arena, race_id, caller)
    return {
        "status": info["status"],
        "official": info["status"] == "final",
        "results": await _results(arena, race_id, caller, info),
        "corrections": info["corrections"],
    }


async def _results(arena: Arena, race_id: str, caller: Caller | None, info: dict) -> list[dict]:
    rows = await arena.races.ref(race_id).ask(Race.results)
    return await shown(arena, caller, info["organizer"], rows, _private(rows))


_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """A text cell that a spreadsheet would run as a formula gets a leading quote (OWASP: CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


@router.get("/{race_id}/results.csv", summary="Results as CSV", response_class=Response)
async def results_csv(race_id: EntityId, caller: OptionalCallerDep, arena: ArenaDep) -> Response:
    info = await _race(arena, race_id, caller)
    rows = await _results(arena, race_id, caller, info)
    out = io.StringIO()
    columns = ["place", "name", "user_id", "category", "status", "provisional", "distance_m", "finish_s", "flags"]
    writer = csv.DictWriter(out, columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(value) for key, value in {**row, "flags": " ".join(row["flags"])}.items()})
    headers = {"Content-Disposition": f'attachment; filename="race-{race_id}-results.csv"'}
    return Response(out.getvalue(), media_type="text/csv", headers=headers)


@router.get("/{race_id}/flags", summary="Fair-play flags with their evidence (its organizer)")
async def flags(race_id: EntityId, caller: CallerDep, arena: ArenaDep) -> list[dict]:
    info = await _race(arena, race_id, caller)  # a draft's flags are as hidden as the draft
    if info["organizer"] != caller.id:
        raise Problem(403, "only the race's organizer reviews flags")
    flagged = await arena.races.ref(race_id).ask(Race.flags)
    await record_reads(arena, caller, [f.get("user_id") for f in flagged], "fair-play flags", race_id)
    return flagged


@router.post("/{race_id}/flags/{user_id}/{decision}", summary="Accept a flagged athlete or disqualify them")
async def review(
    race_id: EntityId, user_id: EntityId, decision: Literal["accept", "disqualify"], caller: CallerDep, arena: ArenaDep
) -> dict:
    answer = await arena.races.ref(race_id).ask(Race.review, by=caller.id, user_id=user_id, accept=decision == "accept")
    await audit(arena, f"race.{decision}", actor=caller.id, subject=user_id, race=race_id)
    return answer


@router.post("/{race_id}/corrections", status_code=201, summary="Correct a final result, with a reason (its organizer)")
async def correct(race_id: EntityId, body: Correction, caller: CallerDep, arena: ArenaDep) -> dict:
    correction = await arena.races.ref(race_id).ask(Race.correct, by=caller.id, **body.model_dump())
    await audit(
        arena,
        "race.correct",
        actor=caller.id,
        subject=body.user_id,
        race=race_id,
        action=body.action,
        reason=body.reason,
    )
    return correction
