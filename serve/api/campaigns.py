"""Campaigns (news and offers, admins), marketing consent and its one-click opt-out (docs/commerce.md)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, NaiveDatetime

from actors.account import Account
from actors.campaign import SHARDS, Campaign
from actors.campaign_audience import CampaignAudience
from actors.sport_event import SportEvent
from actors.subscription import PLANS
from actors.workout import SPORTS
from engine.commerce.signatures import BadSignature, make_click, read_click
from engine.errors import NotFound
from serve.auth import Caller
from serve.consents import current
from serve.context import Arena, ArenaDep, CallerDep, new_id
from serve.problems import Problem

__all__ = ["router", "opt_out_token"]

router = APIRouter(tags=["campaigns"])

CampaignId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
_OPT_OUT = "marketing-opt-out"  # what the token's signed payload names, beside the user
_OPT_OUT_TTL = 400 * 86_400  # a link in an old message still works for a year and more
Name = Annotated[str, Field(min_length=1, max_length=80)]


def _admin(caller: Caller, what: str) -> None:
    if not caller.has("admin"):
        raise Problem(403, f"only an admin may {what}")


def opt_out_token(arena: Arena, user_id: str) -> str:
    return make_click(arena.settings.opt_out_secret(), user_id, _OPT_OUT, time.time())


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")

    regions: Annotated[list[Name], Field(max_length=50)] = []
    sports: Annotated[list[Literal[SPORTS]], Field(max_length=20)] = []  # type: ignore[valid-type]
    min_level: Annotated[int, Field(ge=0, le=1_000)] = 0
    groups: Annotated[
        list[Annotated[str, Field(max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]], Field(max_length=50)
    ] = []
    tiers: Annotated[list[Literal[("free", *PLANS)]], Field(max_length=3)] = []  # type: ignore[valid-type]


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["news", "offer"]
    title: Annotated[str, Field(min_length=1, max_length=120)]
    body: Annotated[str, Field(max_length=1_000)] = ""
    link: Annotated[str | None, Field(max_length=500, pattern=r"^(/|https://)[^\s]*$")] = None
    send_at: NaiveDatetime = Field(description="local wall time in each recipient's time zone: 2025-05-01T09:00")
    target: Target = Target()


@router.post("/campaigns", status_code=201, summary="Schedule a campaign in each recipient's local time (admins)")
async def create_campaign(body: CampaignIn, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "create a campaign")
    if not 2000 <= body.send_at.year <= 2100:
        raise Problem(422, "send_at is out of range")
    message = {"kind": body.kind, "title": body.title, "body": body.body, "link": body.link, "url": "/offers"}
    spec = {"message": message, "target": body.target.model_dump(), "created_by": caller.id,
            "send_at": body.send_at.replace(second=0, microsecond=0).isoformat(timespec="minutes")}  # fmt: skip
    return await arena.ref(Campaign, new_id()).ask(Campaign.create, spec=spec)


class EventPromotionIn(BaseModel):
    """An organizer's event promoted to the consenting athletes of the regions around its venue."""

    model_config = ConfigDict(extra="forbid")

    regions: Annotated[list[Name], Field(min_length=1, max_length=50, description="the athletes' profile regions")]
    send_at: NaiveDatetime = Field(description="local wall time in each recipient's time zone")
    title: Annotated[str | None, Field(min_length=1, max_length=120)] = None
    same_sport: bool = Field(True, description="only athletes who do the event's sport (their profile's sports)")


@router.post(
    "/events/{sport_event_id}/promotion",
    status_code=201,
    summary="Promote an event to the consenting athletes of its regions, as a campaign (admins)",
)
async def promote_event(
    sport_event_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    body: EventPromotionIn,
    caller: CallerDep,
    arena: ArenaDep,
) -> dict:
    _admin(caller, "promote an event")
    if not 2000 <= body.send_at.year <= 2100:
        raise Problem(422, "send_at is out of range")
    try:
        event = await arena.ref(SportEvent, sport_event_id).ask(SportEvent.view)
    except NotFound:
        raise Problem(404, "no such event") from None
    if event["status"] != "scheduled" or event["started"]:
        raise Problem(409, "only an event still to come is promoted")
    when = datetime.fromtimestamp(event["start"], ZoneInfo(event["time_zone"])).strftime("%d %B %Y, %H:%M")
    place = (event.get("venue") or {}).get("address") or "online"
    message = {"kind": "news", "title": body.title or f"{event['title']}: near you", "body": f"{when} · {place}",
               "link": f"/events/{sport_event_id}", "url": f"/events/{sport_event_id}"}  # fmt: skip
    target = Target(regions=body.regions, sports=[event["sport"]] if body.same_sport else []).model_dump()
    spec = {"message": message, "target": target, "created_by": caller.id, "sport_event_id": sport_event_id,
            "send_at": body.send_at.replace(second=0, microsecond=0).isoformat(timespec="minutes")}  # fmt: skip
    return await arena.ref(Campaign, new_id()).ask(Campaign.create, spec=spec)


async def _figures(arena: Arena, campaign_id: str) -> dict:
    shards = [arena.ref(CampaignAudience, f"a{i:02d}") for i in range(SHARDS)]
    answers = await asyncio.gather(*(s.ask(CampaignAudience.figures, campaign_id=campaign_id) for s in shards))
    return {"sent": sum(a["sent"] for a in answers), "pending_deliveries": sum(a["pending"] for a in answers),
            "shards_scheduled": sum(a["known"] for a in answers)}  # fmt: skip


@router.get("/campaigns/{campaign_id}", summary="A campaign and how far its delivery is (admins)")
async def get_campaign(campaign_id: CampaignId, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "read a campaign")
    card = await arena.ref(Campaign, campaign_id).ask(Campaign.card)
    return {**card, **await _figures(arena, campaign_id)}


@router.post("/campaigns/{campaign_id}/cancel", summary="Stop a campaign's deliveries still to come (admins)")
async def cancel_campaign(campaign_id: CampaignId, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "cancel a campaign")
    card = await arena.ref(Campaign, campaign_id).ask(Campaign.cancel)
    shards = [arena.ref(CampaignAudience, f"a{i:02d}") for i in range(SHARDS)]
    await asyncio.gather(*(s.ask(CampaignAudience.cancel, campaign_id=campaign_id) for s in shards))
    return {**card, **await _figures(arena, campaign_id)}


@router.get("/me/marketing", summary="My marketing consent, when and how it changed, and my opt-out link")
async def my_marketing(caller: CallerDep, arena: ArenaDep) -> dict:
    me = await arena.ref(Account, caller.id).ask(Account.me)
    token = opt_out_token(arena, caller.id)
    return {"marketing_consent": me["marketing_consent"], "consent_log": me["consent_log"], "opt_out_token": token,
            "opt_out_url": f"/api/v1/marketing/opt-out?token={token}"}  # fmt: skip


@router.post("/marketing/opt-out", summary="One-click opt-out from marketing (RFC 8058): the signed token, no login")
async def opt_out(arena: ArenaDep, token: Annotated[str, Query(min_length=1, max_length=512)]) -> dict:
    try:
        user_id, what, _ = read_click(arena.settings.opt_out_secret(), token, time.time(), _OPT_OUT_TTL)
    except BadSignature:
        raise Problem(400, "this opt-out link is not valid") from None
    if what != _OPT_OUT:
        raise Problem(400, "this opt-out link is not valid")
    if not await arena.ref(Account, user_id).ask(Account.exists):
        raise Problem(404, "no such account")
    me = await arena.ref(Account, user_id).ask(
        Account.update_profile, marketing_consent=False, consent_via="link", consent_version=current("marketing")
    )
    return {"marketing_consent": me["marketing_consent"], "opted_out_at": me["consent_log"][-1]["at"]
            if me["consent_log"] else None}  # fmt: skip
