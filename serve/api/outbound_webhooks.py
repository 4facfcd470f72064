"""Partners and CRMs (admins): outbound webhook endpoints, their dead letters and delivery log, and the
segment export of consenting users (docs/commerce.md, "Outbound webhooks" and "Segment export")."""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from actors.campaign import SHARDS
from actors.campaign_audience import CampaignAudience, matches
from actors.webhook import DIRECTORY, PARTNER_EVENTS, WebhookDirectory, WebhookEndpoint
from engine.host import rebuild
from engine.ray_host import load_store_opener
from serve.access_log import record_reads
from serve.api.campaigns import Target
from serve.audit import audit
from serve.auth import Caller
from serve.context import Arena, ArenaDep, CallerDep, EntityId, new_id
from serve.kinds import OPEN_STORE
from serve.outbound import URL_MAX, check_url
from serve.problems import Problem

__all__ = ["EXPORT_MAX_ROWS", "router"]

router = APIRouter(tags=["partners"])

EXPORT_MAX_ROWS = 100_000  # users one export lists at most: a CRM syncs a segment, it does not copy the base
EXPORT_COLUMNS = ("user_id", "region", "sports", "tier", "level")
_exporting: set[int] = set()  # the export running on this replica (one at a time: each reads 64 shards)
_SECRET_KEEP_MAX = 7 * 86_400


def _admin(caller: Caller, what: str) -> None:
    if not caller.has("admin"):
        raise Problem(403, f"only an admin may {what}")


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=URL_MAX)]
    events: Annotated[list[Literal[tuple(PARTNER_EVENTS)]], Field(min_length=1, max_length=len(PARTNER_EVENTS))]  # type: ignore[valid-type]
    description: Annotated[str, Field(max_length=200)] = ""


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_old_s: Annotated[int, Field(ge=0, le=_SECRET_KEEP_MAX)] = 86_400


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: Annotated[str | None, Field(min_length=1, max_length=300)] = None


@router.get("/admin/webhooks/event-types", summary="The events a partner endpoint may receive, and their fields")
async def event_types(caller: CallerDep) -> dict:
    _admin(caller, "manage webhooks")
    return {"events": {name: list(fields) for name, fields in PARTNER_EVENTS.items()}}


@router.post("/admin/webhooks", status_code=201, summary="Add a partner's webhook endpoint; its secret is shown once")
async def create_endpoint(body: EndpointIn, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "manage webhooks")
    try:
        url = check_url(body.url, arena.settings.webhooks_allow_private)
    except ValueError as error:
        raise Problem(422, f"the endpoint's URL is refused: {error}") from None
    endpoint_id, secret = new_id(), _new_secret()
    await arena.ref(WebhookDirectory, DIRECTORY).ask(WebhookDirectory.add, endpoint_id=endpoint_id, types=body.events)
    info = await arena.ref(WebhookEndpoint, endpoint_id).ask(
        WebhookEndpoint.create, url=url, types=body.events, secret=secret, description=body.description,
        created_by=caller.id,
    )  # fmt: skip
    await audit(arena, "webhook.created", actor=caller.id, endpoint=endpoint_id, url=url, events=",".join(body.events))
    return {**info, "secret": secret}


@router.get("/admin/webhooks", summary="The partner webhook endpoints")
async def list_endpoints(caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "manage webhooks")
    listing = await arena.ref(WebhookDirectory, DIRECTORY).ask(WebhookDirectory.listing)
    answers = await arena.cluster.deliver([(WebhookEndpoint.kind, e, "info", None, None) for e in sorted(listing)])
    return {"items": [a for a in answers if isinstance(a, dict)]}


@router.get("/admin/webhooks/{endpoint_id}", summary="One webhook endpoint: its state, queue and secrets' validity")
async def get_endpoint(endpoint_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "manage webhooks")
    return await arena.ref(WebhookEndpoint, endpoint_id).ask(WebhookEndpoint.info)


@router.post("/admin/webhooks/{endpoint_id}/pause", summary="Pause deliveries: events queue until resumed")
async def pause(endpoint_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "manage webhooks")
    return await arena.ref(WebhookEndpoint, endpoint_id).ask(WebhookEndpoint.pause)


@router.post("/admin/webhooks/{endpoint_id}/resume", summary="Resume deliveries, in order, from the queue's head")
async def resume(endpoint_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "manage webhooks")
    return await arena.ref(WebhookEndpoint, endpoint_id).ask(WebhookEndpoint.resume)


@router.delete("/admin/webhooks/{endpoint_id}", status_code=204, summary="Delete an endpoint and what it has queued")
async def delete_endpoint(endpoint_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    _admin(caller, "manage webhooks")
    await arena.ref(WebhookEndpoint, endpoint_id).ask(WebhookEndpoint.delete)
    await arena.ref(WebhookDirectory, DIRECTORY).ask(WebhookDirectory.remove, endpoint_id=endpoint_id)
    await audit(arena, "webhook.deleted", actor=caller.id, endpoint=endpoint_id)
    return Response(status_code=204)


@router.post("/admin/webhooks/{endpoint_id}/secret", summary="Rotate the signing secret; the old one signs too a while")
async def rotate_secret(
    endpoint_id: EntityId, caller: CallerDep, arena: ArenaDep, body: RotateIn | None = None
) -> dict:
    _admin(caller, "manage webhooks")
    secret = _new_secret()
    keep = (body or RotateIn()).keep_old_s
    info = await arena.ref(WebhookEndpoint, endpoint_id).ask(WebhookEndpoint.rotate, secret=secret, keep_old_s=keep)
    await audit(arena, "webhook.secret_rotated", actor=caller.id, endpoint=endpoint_id, keep_old_s=keep)
    return {**info, "secret": secret}


@router.get("/admin/webhooks/{endpoint_id}/dead-letters", summary="Deliveries that ran out of attempts, newest first")
async def dead_letters(
    endpoint_id: EntityId, caller: CallerDep, arena: ArenaDep, limit: Annotated[int, Query(ge=1, le=1_000)] = 100
) -> dict:
    _admin(caller, "manage webhooks")
    return {"items": await arena.ref(WebhookEndpoint, endpoint_id).ask(WebhookEndpoint.dead_letters, limit=limit)}


@router.post("/admin/webhooks/{endpoint_id}/dead-letters/replay", summary="Queue dead letters again: one, or all")
async def replay(endpoint_id: EntityId, caller: CallerDep, arena: ArenaDep, body: ReplayIn | None = None) -> dict:
    _admin(caller, "manage webhooks")
    event_id = (body or ReplayIn()).event_id
    replayed = await arena.ref(WebhookEndpoint, endpoint_id).ask(WebhookEndpoint.replay, event_id=event_id)
    return {"replayed": replayed}


@router.get("/admin/webhooks/{endpoint_id}/deliveries", summary="The endpoint's last delivery attempts, newest first")
async def deliveries(
    endpoint_id: EntityId, caller: CallerDep, arena: ArenaDep, limit: Annotated[int, Query(ge=1, le=100)] = 100
) -> dict:
    _admin(caller, "manage webhooks")
    return {"items": await arena.ref(WebhookEndpoint, endpoint_id).ask(WebhookEndpoint.deliveries, limit=limit)}


# -- the segment export ----------------------------------------------------------------------


@router.post(
    "/admin/crm/segment",
    summary="CSV of the consenting users a campaign target matches, for a CRM (admins; one at a time)",
    response_class=StreamingResponse,
)
async def segment_export(target: Target, caller: CallerDep, arena: ArenaDep) -> StreamingResponse:
    _admin(caller, "export a segment")
    if _exporting:
        raise Problem(429, "an export is running on this replica; try again when it is done",
                      headers={"Retry-After": "30"})  # fmt: skip
    await audit(arena, "crm.segment_exported", actor=caller.id, target=str(target.model_dump()))
    return StreamingResponse(
        _csv(arena, caller, target.model_dump()),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="segment.csv"', "Cache-Control": "no-store"},
    )


async def _csv(arena: Arena, caller: Caller, target: dict) -> AsyncIterator[str]:
    """Shard by shard from the store (the shards' committed state, without waking them), each shard's rows
    in the readers' access logs before they go out; at most ``EXPORT_MAX_ROWS``."""
    running = id(target)
    _exporting.add(running)
    store = load_store_opener(OPEN_STORE)(arena.settings.database_url)
    try:
        await store.open()
        yield _line(EXPORT_COLUMNS)
        left = EXPORT_MAX_ROWS
        for number in range(SHARDS):
            shard = f"a{number:02d}"
            snapshot, entries = (await store.load(CampaignAudience.kind, [shard])).get(shard, (None, []))
            audience = rebuild(CampaignAudience, shard, snapshot, entries)[0]
            assert isinstance(audience, CampaignAudience)
            rows = sorted((u, m) for u, m in audience.members.items() if matches(m, target))[:left]
            await record_reads(arena, caller, [u for u, _ in rows], "marketing profile (CRM segment export)", "crm")
            yield "".join(_line((u, m.get("r") or "", " ".join(m.get("s") or ()), m.get("t") or "free", m.get("l", 0)))
                          for u, m in rows)  # fmt: skip
            left -= len(rows)
            if left <= 0:
                break
    finally:
        _exporting.discard(running)
        await store.close()


def _line(values: tuple) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([_cell(v) for v in values])
    return out.getvalue()


def _cell(value: object) -> str:
    """A value a spreadsheet shows as text: one a user typed that starts like a formula gets a quote first."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
