"""Operations: a public liveness answer, and the operator's view behind a token or loopback.

Anyone may learn whether Arena is up (``/livez``, ``/health``: a status word, nothing
else). What an attacker would map the deployment with (store, process and node ids,
metrics) is for operators only: a request with ``Authorization: Bearer
$ARENA_OPERATOR_TOKEN``, an admin's access token, or, unless turned off, a client on
this machine's loopback (as the ingress reports it, ``serve.addresses``).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from actors.segment import Segment
from serve.addresses import client_address
from serve.context import Arena, ArenaDep, EntityId, authenticate
from serve.metrics import render
from serve.problems import Problem
from serve.segment_backfill import start_backfill

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/livez", summary="This replica answers (for load balancers; touches nothing else)")
async def livez() -> dict:
    return {"status": "ok"}


@router.get("/health", summary="Whether Arena is healthy: every host alive and its store reachable")
async def health(arena: ArenaDep, response: Response) -> dict:
    healthy, _ = await _hosts(arena)
    if not healthy:
        response.status_code = 503
    return {"status": "ok" if healthy else "degraded"}


@router.get("/health/details", summary="Every host and its store (operators)")
async def health_details(request: Request, arena: ArenaDep, response: Response) -> dict:
    await _operator(request, arena)
    healthy, hosts = await _hosts(arena)
    if not healthy:
        response.status_code = 503
    return {"status": "ok" if healthy else "degraded", "store": arena.settings.store_name, "hosts": hosts}


@router.get("/metrics", response_class=Response, summary="Prometheus metrics (operators)")
async def metrics(request: Request, arena: ArenaDep) -> Response:
    await _operator(request, arena)
    hosts, dedicated, relay = await asyncio.gather(
        arena.cluster.metrics(), arena.cluster.dedicated_hosts(), _relay_status(arena)
    )
    lake = arena.settings.lake_root if arena.settings.lake else None
    body = await asyncio.to_thread(render, hosts, dedicated, relay, lake)  # the lake's footers are files to read
    return Response(body, media_type="text/plain; version=0.0.4")


Subscription = Annotated[str | None, Query(max_length=200, pattern=r"^[a-z0-9_]+\.[a-z0-9_]+$")]


@router.get("/ops/events", summary="Each consumer of the domain events: its position and lag (operators)")
async def events(request: Request, arena: ArenaDep) -> dict:
    await _operator(request, arena)
    status = await _relay_status(arena)
    if status is None:
        raise Problem(503, "the relay does not answer (it is restarting); retry shortly", headers={"Retry-After": "2"})
    return status


@router.get("/ops/events/dead-letters", summary="Events a subscription could not apply, oldest first (operators)")
async def dead_letters(
    request: Request,
    arena: ArenaDep,
    subscription: Subscription = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    await _operator(request, arena)
    return {"items": await _relay_call(arena, "dead_letters", subscription, limit)}


@router.post("/ops/events/dead-letters/replay", summary="Deliver dead letters again (operators)")
async def replay(
    request: Request,
    arena: ArenaDep,
    subscription: Subscription = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict:
    """Those that now apply are removed; the others stay, with their error."""
    await _operator(request, arena)
    return await _relay_call(arena, "replay", subscription, limit)


@router.post("/ops/segments/{segment_id}/backfill", status_code=202, summary="Backfill a segment again (operators)")
async def backfill_segment(segment_id: EntityId, request: Request, arena: ArenaDep) -> dict | None:
    """A new run of the segment's backfill (docs/segments.md), superseding any before it; efforts already
    counted are not counted again. Its state as it starts: follow it with the GET."""
    await _operator(request, arena)
    return await start_backfill(arena, segment_id)


@router.get("/ops/segments/{segment_id}/backfill", summary="A segment's backfill: its state and progress (operators)")
async def segment_backfill(segment_id: EntityId, request: Request, arena: ArenaDep) -> dict | None:
    await _operator(request, arena)
    return await arena.ref(Segment, segment_id).ask(Segment.backfill_state)


async def _relay_call(arena: Arena, method: str, *args: object) -> Any:
    try:
        return await getattr(arena.cluster.relay(), method).remote(*args)
    except Exception as error:
        raise Problem(503, f"the relay does not answer: {type(error).__name__}", headers={"Retry-After": "2"}) from None


async def _relay_status(arena: Arena) -> dict | None:
    try:
        return await asyncio.wait_for(arena.cluster.relay().status.remote(), 5.0)
    except Exception:
        return None


async def _hosts(arena: Arena) -> tuple[bool, list[dict]]:
    hosts = await arena.cluster.health()
    return all(h["alive"] and h["store"]["ok"] for h in hosts), hosts


async def _operator(request: Request, arena: Arena) -> None:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    expected = arena.settings.operator_token
    if token and expected is not None and hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
        return
    if token:
        try:
            if "admin" in (await authenticate(arena, token)).roles:
                return
        except Problem:
            pass
    if arena.settings.operator_loopback and _loopback(client_address(request)):
        return
    raise Problem(
        403,
        "operators only: send Authorization: Bearer $ARENA_OPERATOR_TOKEN (or an admin's token), or ask from this machine",
    )


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
