"""Group events (joint workouts): the group's admins create, edit and cancel them; members answer
going or not (past the capacity, the waitlist); the group's readers see them and who is going; an
athlete lists the events they said yes to (docs/groups.md, "Group events").

Who may do what is the group's content rule (``serve/api/groups.py``): reading needs what the feed
needs (anyone signed in for a public group, members otherwise; a hidden group is a 404 to outsiders),
answering needs membership, creating, editing and cancelling an admin.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator, model_validator

from actors.group import Group
from actors.group_event import (
    AHEAD_MOST_S,
    CAPACITY_MOST,
    DESCRIPTION_LENGTH,
    LABEL_LENGTH,
    PACE_GROUPS_MOST,
    PACE_LABEL_LENGTH,
    ROUTE_LENGTH,
    TITLE_LENGTH,
    GroupEvent,
    check_time_zone,
)
from actors.group_event_calendar import CALENDAR_MOST, EventCalendar
from actors.group_event_index import UPCOMING_MOST, GroupEventIndex
from actors.route import link
from actors.workout import SPORTS
from engine.errors import EngineError, Rejected
from serve.api.groups import _admin, _member, _named, _reader
from serve.api.routes import RouteId, shared_route
from serve.auth import Caller
from serve.context import Arena, ArenaDep, CallerDep, EntityId, new_id
from serve.pagination import Cursor, Limit, decode_cursor, encode_cursor
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["group events"])

Sport = Literal[SPORTS]  # type: ignore[valid-type]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_LENGTH)]
Description = Annotated[str, Field(max_length=DESCRIPTION_LENGTH)]
Route = Annotated[str | None, Field(max_length=ROUTE_LENGTH, description="how the route goes, in words")]
LinkedRoute = Annotated[
    RouteId | None,
    Field(
        description="a public route of the event's sport (shown as linked_route; null unlinks it): the meeting"
        " point is its start when none is given"
    ),
]
TimeZone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"),
    Field(description="an IANA time zone, such as Europe/Paris"),
]
Capacity = Annotated[int, Field(ge=1, le=CAPACITY_MOST)]
Start = Annotated[
    datetime,
    Field(description="the local date and time in `time_zone` (2027-07-03T09:00), or an instant with its offset"),
]


class MeetingPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=LABEL_LENGTH)]


class PaceGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=PACE_LABEL_LENGTH)]
    pace_s_per_km: Annotated[float | None, Field(ge=60, le=3_600)] = None


def _known_zone(name: str | None) -> str | None:
    if name is not None:
        try:
            check_time_zone(name)
        except Rejected as error:
            raise ValueError(error.message) from None
    return name


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    sport: Sport
    start: Start
    time_zone: TimeZone
    meeting_point: MeetingPoint | None = None
    route: Route = None
    route_id: LinkedRoute = None
    pace_groups: Annotated[list[PaceGroup], Field(max_length=PACE_GROUPS_MOST)] = []
    capacity: Capacity = CAPACITY_MOST

    _zone = field_validator("time_zone")(_known_zone)

    @model_validator(mode="after")
    def _placed(self) -> EventIn:
        if self.meeting_point is None and self.route_id is None:
            raise ValueError("an event needs a meeting_point, or a route_id to meet at the route's start")
        return self


class EventEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    sport: Sport | None = None
    start: Start | None = None
    time_zone: TimeZone | None = None
    meeting_point: MeetingPoint | None = None
    route: Route = None
    route_id: LinkedRoute = None
    pace_groups: Annotated[list[PaceGroup] | None, Field(max_length=PACE_GROUPS_MOST)] = None
    capacity: Capacity | None = None

    _zone = field_validator("time_zone")(_known_zone)

    @model_validator(mode="after")
    def _consistent(self) -> EventEdit:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        for name in self.model_fields_set - {"route", "route_id"}:
            if getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if "time_zone" in self.model_fields_set and "start" not in self.model_fields_set:
            raise ValueError("a new time zone needs the start in it (start)")
        return self


class Rsvp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    going: StrictBool


def _instant(start: datetime, time_zone: str) -> float:
    """The instant of a start given as a local time in ``time_zone`` (or with its own offset). A local time a
    clock change skips does not exist (422); one it repeats is the first of the two."""
    zone = ZoneInfo(time_zone)
    try:
        if start.tzinfo is None:
            local = start.replace(tzinfo=zone)
            if datetime.fromtimestamp(local.timestamp(), zone).replace(tzinfo=None) != start:
                raise Problem(422, f"{start.isoformat()} does not exist in {time_zone}: the clocks skip it")
            start = local
        instant = start.timestamp()
    except (OverflowError, ValueError):  # year 1 or 9999 shifted by the zone's offset falls off the calendar
        instant = math.nan
    now = time.time()
    if not now < instant <= now + AHEAD_MOST_S:
        raise Problem(422, "an event starts in the future, within a year")
    return instant


def _details(body: EventIn | EventEdit, fields: set[str], time_zone: str) -> dict:
    details = body.model_dump(include=fields)
    if body.start is not None and "start" in details:
        details["start"] = _instant(body.start, time_zone)
    return details


async def _linked(arena: Arena, caller: Caller, details: dict) -> dict | None:
    """Turns ``route_id`` in ``details`` into the event's ``linked_route`` (null unlinks); the route, if one."""
    if "route_id" not in details:
        return None
    route_id = details.pop("route_id")
    route = None if route_id is None else await shared_route(arena, route_id, caller)
    details["linked_route"] = None if route is None else link(route)
    return route


async def _views(arena: Arena, cards: list[dict], viewer: str) -> list[dict]:
    """The live events of a page of cards (one batched call); one gone since is left out."""
    views = await arena.cluster.deliver(
        [(GroupEvent.kind, c["id"], "view", {"group_id": c["group_id"], "viewer": viewer}, None) for c in cards]
    )
    return [view for view in views if not isinstance(view, EngineError)]


async def _listed(arena: Arena, group_id: str, view: dict) -> None:
    """Read-your-writes for the group's list; ``group_event.listed`` brings the same card (kept once)."""
    card = await arena.ref(GroupEvent, view["id"]).ask(GroupEvent.card, group_id=group_id)
    await arena.ref(GroupEventIndex, group_id).ask(GroupEventIndex.put, card=card)


@router.post("/groups/{group_id}/events", status_code=201, summary="Create a group event (the group's admins)")
async def create_event(group_id: EntityId, body: EventIn, caller: CallerDep, arena: ArenaDep) -> dict:
    await _admin(arena, group_id, caller)
    if await arena.ref(GroupEventIndex, group_id).ask(GroupEventIndex.upcoming_count) >= UPCOMING_MOST:
        raise Problem(409, f"this group has {UPCOMING_MOST} events to come, as many as a group may have")
    details = _details(body, set(EventIn.model_fields), body.time_zone)
    route = await _linked(arena, caller, details)
    if route is not None and body.meeting_point is None:
        lat, lon = route["start_point"]
        details["meeting_point"] = {"lat": lat, "lon": lon, "label": f"Start of {route['name']}"[:LABEL_LENGTH]}
    view = await arena.ref(GroupEvent, new_id()).ask(GroupEvent.create, group_id=group_id, by=caller.id,
                                                     details=details)  # fmt: skip
    await _listed(arena, group_id, view)
    return view


@router.get("/groups/{group_id}/events", summary="The group's events: to come (soonest first) or past (latest first)")
async def list_events(
    group_id: EntityId,
    caller: CallerDep,
    arena: ArenaDep,
    when: Literal["upcoming", "past"] = "upcoming",
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> dict:
    await _reader(arena, group_id, caller)
    page = await arena.ref(GroupEventIndex, group_id).ask(
        GroupEventIndex.browse, when=when, after=decode_cursor(cursor), limit=limit
    )
    return {"items": await _views(arena, page["items"], caller.id), "next_cursor": encode_cursor(page["next"])}


@router.get("/groups/{group_id}/events/{event_id}", summary="One group event, and the caller's answer")
async def get_event(group_id: EntityId, event_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await _reader(arena, group_id, caller)
    return await arena.ref(GroupEvent, event_id).ask(GroupEvent.view, group_id=group_id, viewer=caller.id)


@router.patch("/groups/{group_id}/events/{event_id}", summary="Edit a group event (admins); those going hear of a "
              "new time or place")  # fmt: skip
async def edit_event(
    group_id: EntityId, event_id: EntityId, body: EventEdit, caller: CallerDep, arena: ArenaDep
) -> dict:
    await _admin(arena, group_id, caller)
    event = arena.ref(GroupEvent, event_id)
    zone = body.time_zone or (await event.ask(GroupEvent.card, group_id=group_id))["time_zone"]
    changes = _details(body, body.model_fields_set, zone)
    await _linked(arena, caller, changes)
    view = await event.ask(GroupEvent.edit, group_id=group_id, by=caller.id, changes=changes)
    await _listed(arena, group_id, view)
    return view


@router.delete("/groups/{group_id}/events/{event_id}", summary="Cancel a group event (admins); everyone who answered "
               "hears of it")  # fmt: skip
async def cancel_event(group_id: EntityId, event_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await _admin(arena, group_id, caller)
    view = await arena.ref(GroupEvent, event_id).ask(GroupEvent.cancel, group_id=group_id, by=caller.id)
    await _listed(arena, group_id, view)
    return view


@router.put("/groups/{group_id}/events/{event_id}/rsvp", summary="Answer going or not (members); past the capacity, "
            "the waitlist")  # fmt: skip
async def rsvp(group_id: EntityId, event_id: EntityId, body: Rsvp, caller: CallerDep, arena: ArenaDep) -> dict:
    await _member(arena, group_id, caller)
    if body.going and await arena.ref(EventCalendar, caller.id).ask(EventCalendar.count) >= CALENDAR_MOST:
        raise Problem(409, f"you said yes to {CALENDAR_MOST} events, as many as one athlete may")
    return await arena.ref(GroupEvent, event_id).ask(
        GroupEvent.answer, group_id=group_id, user_id=caller.id, going=body.going
    )


@router.get("/groups/{group_id}/events/{event_id}/attendees", summary="Who is going (in the order they said so), "
            "or waiting")  # fmt: skip
async def attendees(
    group_id: EntityId,
    event_id: EntityId,
    caller: CallerDep,
    arena: ArenaDep,
    which: Literal["going", "waitlist"] = "going",
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict:
    await _reader(arena, group_id, caller)
    page = await arena.ref(GroupEvent, event_id).ask(
        GroupEvent.people, group_id=group_id, which=which, after=decode_cursor(cursor), limit=limit
    )
    return {"items": await _named(arena, page["items"], caller.id), "next_cursor": encode_cursor(page["next"])}


@router.get("/me/events", summary="The group events I said yes to (going or waiting) that are not over, soonest first")
async def my_events(
    caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Annotated[int, Query(ge=1, le=50)] = 20
) -> dict:
    page = await arena.ref(EventCalendar, caller.id).ask(EventCalendar.upcoming, after=decode_cursor(cursor),
                                                         limit=limit)  # fmt: skip
    views = await _views(arena, page["items"], caller.id)
    terms = await arena.cluster.deliver(
        [(Group.kind, view["group_id"], "terms", {"viewer": caller.id}, None) for view in views]
    )
    items = [{**view, "group_name": t["name"]} for view, t in zip(views, terms) if not isinstance(t, EngineError)]
    return {"items": items, "next_cursor": encode_cursor(page["next"])}
