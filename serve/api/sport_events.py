"""Organizers' events, offline and online: organizers create and cancel them; athletes register (a tier,
the questions answered; past the capacity, the waitlist), cancel, and show their ticket's code at the
venue, where the organizer checks them in; the event calendar by place, sport and dates; partner offers
with signed links; an athlete's iCalendar feed behind a secret link (docs/sport-events.md).
"""

from __future__ import annotations

import asyncio
import io
import time
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import segno
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
    model_validator,
)

from actors.group_event import DESCRIPTION_LENGTH, TITLE_LENGTH
from actors.group_event_calendar import EventCalendar
from actors.partner_offers import OFFERS_MOST, PartnerOffers
from actors.places import MAX_RADIUS_KM
from actors.route import Route
from actors.sport_event import (
    ANSWER_LENGTH,
    CAPACITY_MOST,
    CHOICES_MOST,
    DIRECTORY_SHARDS,
    QUESTIONS_MOST,
    RACES_MOST,
    TIERS_MOST,
    SportEvent,
    check_answers,
)
from actors.sport_event_directory import SportEventDirectory
from actors.sport_event_entries import ENTRIES_MOST, SportEventEntries
from actors.workout import SPORTS
from engine.commerce.signatures import make_click
from engine.errors import EngineError, NotFound, Rejected
from serve.access_log import record_reads
from serve.api.group_events import TimeZone, _instant, _known_zone
from serve.api.shop import CLICK_PARAM
from serve.context import ArenaDep, CallerDep, EntityId, new_id
from serve.event_tokens import (
    TOKEN_LENGTH,
    BadToken,
    make_calendar_token,
    make_ticket,
    read_calendar_token,
    read_ticket,
)
from serve.ical import calendar
from serve.pagination import Cursor, Limit, decode_cursor, encode_cursor
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["events"])

Sport = Literal[SPORTS]  # type: ignore[valid-type]
Key = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Lat = Annotated[float, Field(ge=-90, le=90)]
Lon = Annotated[float, Field(ge=-180, le=180)]
Link = Annotated[AnyHttpUrl, Field(description="an http(s) address")]


class Venue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: Lat
    lon: Lon
    address: Text


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Key
    name: Short
    price: Annotated[float, Field(ge=0, le=100_000, description="0: free; else paid (no checkout: pending)")] = 0
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "EUR"
    capacity: Annotated[int | None, Field(ge=1, le=CAPACITY_MOST)] = None


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Key
    label: Text
    kind: Literal["text", "choice"] = "text"
    choices: Annotated[list[Short], Field(max_length=CHOICES_MOST)] = []
    required: StrictBool = False

    @model_validator(mode="after")
    def _choices(self) -> Question:
        if (self.kind == "choice") != bool(self.choices) or (self.choices and len(self.choices) < 2):
            raise ValueError("a choice question has 2 or more choices, a text question none")
        return self


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_LENGTH)]
    description: Annotated[str, Field(max_length=DESCRIPTION_LENGTH)] = ""
    sport: Sport
    start: Annotated[datetime, Field(description="local date and time in time_zone, or an instant with its offset")]
    end: datetime
    time_zone: TimeZone
    venue: Venue | None = None
    online_url: Annotated[Link | None, Field(description="where an online event happens")] = None
    capacity: Annotated[int, Field(ge=1, le=CAPACITY_MOST)] = 100
    tiers: Annotated[list[Tier], Field(min_length=1, max_length=TIERS_MOST)] = [Tier(id="free", name="Free")]
    questions: Annotated[list[Question], Field(max_length=QUESTIONS_MOST)] = []
    races: Annotated[list[Id], Field(max_length=RACES_MOST, description="race ids of the caller's")] = []
    group_rides: Annotated[str, Field(max_length=1_000)] = ""
    route_id: Id | None = None

    _zone = field_validator("time_zone")(_known_zone)

    @model_validator(mode="after")
    def _consistent(self) -> EventIn:
        if (self.venue is None) == (self.online_url is None):
            raise ValueError("an event is at a venue or online: give one of venue, online_url")
        if len(str(self.online_url or "")) > 500:
            raise ValueError("online_url has at most 500 characters")
        if len({t.id for t in self.tiers}) != len(self.tiers) or len({q.id for q in self.questions}) != len(
            self.questions
        ):
            raise ValueError("tiers and questions each have distinct ids")
        return self


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: Key
    answers: Annotated[
        dict[Key, Annotated[str, Field(max_length=ANSWER_LENGTH)]], Field(max_length=QUESTIONS_MOST)
    ] = {}


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, Field(min_length=1, max_length=TOKEN_LENGTH)]


class Offer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Key
    kind: Literal["lodging", "travel"]
    title: Text
    partner: Short
    url: Link
    lat: Lat | None = None
    lon: Lon | None = None
    radius_km: Annotated[float, Field(gt=0, le=MAX_RADIUS_KM)] = 50

    @model_validator(mode="after")
    def _place(self) -> Offer:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("an offer's place is a lat and a lon, or neither")
        if len(str(self.url)) > 500:
            raise ValueError("url has at most 500 characters")
        return self


class Offers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    offers: Annotated[list[Offer], Field(max_length=OFFERS_MOST)]


# -- organizers ------------------------------------------------------------------------------------------------


@router.post("/events", status_code=201, summary="Create an event, at a venue or online (organizers)")
async def create_event(body: EventIn, caller: CallerDep, arena: ArenaDep) -> dict:
    if not caller.has("organizer"):
        raise Problem(403, "only organizers create events")
    start, end = _instant(body.start, body.time_zone), _instant(body.end, body.time_zone)
    if not start < end <= start + 31 * 86_400:
        raise Problem(422, "an event ends after its start, within 31 days")
    for race_id in body.races:
        try:
            info = await arena.race(race_id, "info")
        except NotFound:
            raise Problem(422, f"no race {race_id}") from None
        if info["organizer"] != caller.id:
            raise Problem(403, f"the race {race_id} is not yours")
    if body.route_id is not None:
        try:
            access = await arena.ref(Route, body.route_id).ask(Route.access)
        except NotFound:
            raise Problem(422, f"no route {body.route_id}") from None
        if access["visibility"] != "public" and access["owner"] != caller.id:
            raise Problem(422, f"no route {body.route_id}")
        if access["visibility"] != "public":
            raise Problem(422, "an event's route is public: make it public first")
    details = body.model_dump(mode="json")
    details.update(start=start, end=end)
    return await arena.ref(SportEvent, new_id()).ask(SportEvent.create, organizer=caller.id, details=details)


@router.delete("/events/{sport_event_id}", summary="Cancel an event (its organizer): every registration ends, "
               "refunds of paid ones are recorded")  # fmt: skip
async def cancel_event(sport_event_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(SportEvent, sport_event_id).ask(SportEvent.cancel, by=caller.id)


@router.get("/events/{sport_event_id}/registrations", summary="The registrations, with answers (its organizer)")
async def roster(
    sport_event_id: EntityId,
    caller: CallerDep,
    arena: ArenaDep,
    status: Literal["registered", "waitlisted", "cancelled"] | None = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict:
    page = await arena.ref(SportEvent, sport_event_id).ask(
        SportEvent.roster, by=caller.id, status=status, after=decode_cursor(cursor), limit=limit
    )
    await record_reads(arena, caller, [r.get("user") for r in page["items"]], "event registrations",
                       sport_event_id)  # fmt: skip  # docs/privacy.md
    return {"items": page["items"], "next_cursor": encode_cursor(page["next"])}


@router.post("/events/{sport_event_id}/registrations/{registration_id}/paid",
             summary="Record a paid tier's payment as received (its organizer)")  # fmt: skip
async def mark_paid(sport_event_id: EntityId, registration_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(SportEvent, sport_event_id).ask(
        SportEvent.mark_paid, by=caller.id, registration_id=registration_id
    )


@router.post("/events/{sport_event_id}/check-in", summary="Check an athlete in by their ticket's code (its "
             "organizer); once: a replay says when")  # fmt: skip
async def check_in(sport_event_id: EntityId, body: CheckIn, caller: CallerDep, arena: ArenaDep) -> dict:
    try:
        event_id, registration_id = read_ticket(arena.settings.event_secret(), body.token)
    except BadToken as error:
        raise Problem(422, f"the ticket is not accepted: {error}") from None
    event = arena.ref(SportEvent, sport_event_id)
    if event_id != sport_event_id:
        await event.ask(SportEvent.roster, by=caller.id, limit=1)  # 404 / 403 before telling anything
        raise Problem(422, "the ticket is for another event")
    return await event.ask(SportEvent.check_in, by=caller.id, registration_id=registration_id)


# -- everyone signed in ----------------------------------------------------------------------------------------


@router.get("/events", summary="The event calendar: near a point, by sport and dates, soonest first")
async def search_events(
    caller: CallerDep,
    arena: ArenaDep,
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float, Query(gt=0, le=MAX_RADIUS_KM)] = 50,
    sport: Sport | None = None,
    start_from: Annotated[datetime | None, Query(alias="from", description="events starting at or after")] = None,
    start_to: Annotated[datetime | None, Query(alias="to", description="events starting at or before")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> dict:
    if (lat is None) != (lon is None):
        raise Problem(422, "near a point needs both lat and lon")
    bounds = []
    for moment in (start_from, start_to):
        if moment is not None and moment.tzinfo is None:
            raise Problem(422, "from and to are instants with their offset (2027-07-03T09:00:00Z)")
        bounds.append(None if moment is None else moment.timestamp())
    body = {"near": None if lat is None else [lat, lon], "radius_km": radius_km, "sport": sport,
            "start_from": bounds[0], "start_to": bounds[1], "after": decode_cursor(cursor), "limit": limit + 1}  # fmt: skip
    found = await arena.cluster.deliver(
        [(SportEventDirectory.kind, f"se{n}", "search", body, None) for n in range(DIRECTORY_SHARDS)]
    )
    for answer in found:
        if isinstance(answer, EngineError):
            raise answer
    cards = sorted((card for shard in found for card in shard), key=lambda c: (c["start"], c["id"]))
    items = cards[:limit]
    more = len(cards) > limit
    return {"items": items, "next_cursor": encode_cursor([items[-1]["start"], items[-1]["id"]]) if more else None}


@router.get("/events/{sport_event_id}", summary="One event, its tiers and questions, and my registration")
async def get_event(sport_event_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(SportEvent, sport_event_id).ask(SportEvent.view, viewer=caller.id)


@router.post("/events/{sport_event_id}/registrations", status_code=201, summary="Register (a tier, the questions "
             "answered); past the capacity, the waitlist")  # fmt: skip
async def register(sport_event_id: EntityId, body: Registration, caller: CallerDep, arena: ArenaDep) -> dict:
    event = arena.ref(SportEvent, sport_event_id)
    view = await event.ask(SportEvent.view, viewer=caller.id)
    if body.tier not in {tier["id"] for tier in view["tiers"]}:
        raise Problem(422, f"no tier {body.tier!r}; one of {', '.join(t['id'] for t in view['tiers'])}")
    try:
        check_answers(view["questions"], body.answers)
    except Rejected as error:
        raise Problem(422, error.message) from None
    if await arena.ref(SportEventEntries, caller.id).ask(SportEventEntries.active_count) >= ENTRIES_MOST:
        raise Problem(409, f"you are registered to {ENTRIES_MOST} events, as many as one athlete may")
    registration = await event.ask(SportEvent.register, user_id=caller.id, tier=body.tier, answers=body.answers)
    return {**registration, "ticket": _ticket(arena, registration)}


def _ticket(arena, registration: dict) -> str | None:
    if registration["status"] != "registered":
        return None
    return make_ticket(arena.settings.event_secret(), registration["event_id"], registration["id"])


@router.get("/events/{sport_event_id}/registrations/me", summary="My registration, with my ticket's code")
async def my_registration(sport_event_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    registration = await arena.ref(SportEvent, sport_event_id).ask(SportEvent.mine, user_id=caller.id)
    return {**registration, "ticket": _ticket(arena, registration)}


@router.get("/events/{sport_event_id}/registrations/me/qr.svg", summary="My ticket's code drawn as a QR code (SVG), "
            "for the organizer's scanner", response_class=Response)  # fmt: skip
async def my_ticket_qr(sport_event_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    registration = await arena.ref(SportEvent, sport_event_id).ask(SportEvent.mine, user_id=caller.id)
    ticket = _ticket(arena, registration)
    if ticket is None:
        raise Problem(404, "a waitlisted registration has no ticket yet")
    return Response(_ticket_svg(ticket), media_type="image/svg+xml", headers={"Cache-Control": "private, no-store"})


def _ticket_svg(ticket: str) -> bytes:
    """The ticket as a QR code a venue's scanner reads back as the very string check-in accepts: error
    correction M (not boosted, so the code is the same each time), the standard quiet zone of 4 modules."""
    drawn = io.BytesIO()
    code = segno.make(ticket, error="m", boost_error=False, micro=False)
    code.save(drawn, kind="svg", xmldecl=False, scale=5, border=4, dark="#000", light="#fff",
              title="Check-in code", nl=False)  # fmt: skip
    return drawn.getvalue()


@router.delete("/events/{sport_event_id}/registrations/me", summary="Cancel my registration; a paid one's refund "
               "is recorded")  # fmt: skip
async def withdraw(sport_event_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(SportEvent, sport_event_id).ask(SportEvent.withdraw, user_id=caller.id)


@router.get("/events/{sport_event_id}/partners", summary="Partner offers near the event (lodging, travel), each "
            "with a signed link")  # fmt: skip
async def partners(sport_event_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    card = await arena.ref(SportEvent, sport_event_id).ask(SportEvent.card)
    venue = card["venue"]
    offers = await arena.ref(PartnerOffers, "all").ask(
        PartnerOffers.near, venue=None if venue is None else [venue["lat"], venue["lon"]]
    )
    now = time.time()
    secret = arena.settings.click_secret()
    items = []
    for offer in offers:
        parts = urlsplit(offer["url"])
        click = make_click(secret, caller.id, f"partner-{offer['id']}", now)
        query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), (CLICK_PARAM, click)])
        items.append({**offer, "link": urlunsplit(parts._replace(query=query)),
                      "attribution": f"Offer by {offer['partner']}"})  # fmt: skip
    return {"items": items}


@router.put("/admin/partner-offers", summary="Replace the partner offers shown on event pages (admins)")
async def put_offers(body: Offers, caller: CallerDep, arena: ArenaDep) -> dict:
    if "admin" not in caller.roles:
        raise Problem(403, "only an admin uploads partner offers")
    offers = [offer.model_dump(mode="json") for offer in body.offers]
    return await arena.ref(PartnerOffers, "all").ask(PartnerOffers.replace, offers=offers)


# -- the athlete's own -----------------------------------------------------------------------------------------


@router.get("/me/registrations", summary="My registrations to events, soonest first")
async def my_registrations(
    caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Annotated[int, Query(ge=1, le=50)] = 20
) -> dict:
    page = await arena.ref(SportEventEntries, caller.id).ask(
        SportEventEntries.listed, after=decode_cursor(cursor), limit=limit
    )
    return {"items": page["items"], "next_cursor": encode_cursor(page["next"])}


def _feed_url(request: Request, token: str) -> str:
    return str(request.url_for("ical_feed").include_query_params(token=token))


@router.get("/me/calendar-token", summary="The secret link of my iCalendar feed")
async def calendar_token(request: Request, caller: CallerDep, arena: ArenaDep) -> dict:
    version = await arena.ref(SportEventEntries, caller.id).ask(SportEventEntries.token)
    token = make_calendar_token(arena.settings.event_secret(), caller.id, version)
    return {"token": token, "url": _feed_url(request, token)}


@router.post("/me/calendar-token", summary="A new secret link for my iCalendar feed: the old one stops working")
async def rotate_calendar_token(request: Request, caller: CallerDep, arena: ArenaDep) -> dict:
    version = await arena.ref(SportEventEntries, caller.id).ask(SportEventEntries.rotate_token)
    token = make_calendar_token(arena.settings.event_secret(), caller.id, version)
    return {"token": token, "url": _feed_url(request, token)}


_STATUS = {"registered": "CONFIRMED", "waitlisted": "TENTATIVE", "cancelled": "CANCELLED"}


@router.get("/me/calendar.ics", name="ical_feed", summary="My events as an iCalendar feed (no sign-in: the secret "
            "token of GET /me/calendar-token)", response_class=Response)  # fmt: skip
async def ical_feed(
    request: Request, arena: ArenaDep, token: Annotated[str, Query(min_length=1, max_length=TOKEN_LENGTH)]
) -> Response:
    try:
        user_id, version = read_calendar_token(arena.settings.event_secret(), token)
    except BadToken as error:
        raise Problem(401, f"the calendar token is not accepted: {error}") from None
    entries = arena.ref(SportEventEntries, user_id)
    if await entries.ask(SportEventEntries.token) != version:
        raise Problem(401, "the calendar token is not accepted: it was replaced by a new one")
    kept, group = await asyncio.gather(
        entries.ask(SportEventEntries.calendar),
        arena.ref(EventCalendar, user_id).ask(EventCalendar.upcoming, limit=100),
    )
    base = str(request.base_url).rstrip("/")
    events = []
    for card in kept:
        venue = card["venue"]
        registration = card["registration"]
        bib = f" (bib {registration['bib']})" if registration["bib"] else ""
        events.append({
            "uid": f"{card['id']}@arena", "start": card["start"], "end": card["end"], "summary": card["title"] + bib,
            "location": "Online" if venue is None else venue["address"], "url": f"{base}/events/{card['id']}",
            "description": f"{card['sport']}, {registration['status']}",
            "status": "CANCELLED" if card["status"] == "cancelled" else _STATUS[registration["status"]],
        })  # fmt: skip
    for card in group["items"]:
        events.append({
            "uid": f"group-event-{card['id']}@arena", "start": card["start"], "end": None, "summary": card["title"],
            "location": card["meeting_point"]["label"], "url": f"{base}/groups/{card['group_id']}",
            "description": card["sport"], "status": "CONFIRMED" if card["rsvp"] == "going" else "TENTATIVE",
        })  # fmt: skip
    text = calendar("Arena events", events, time.time())
    return Response(text, media_type="text/calendar; charset=utf-8", headers={"Cache-Control": "private, no-store"})
