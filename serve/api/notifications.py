"""The notification inbox and its live stream (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from actors.inbox import NOTIFICATION_TYPES, Inbox
from serve.auth import Caller
from serve.context import ArenaDep, CallerDep, authenticate
from serve.pagination import Cursor, Limit, paged
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["notifications"])

_KEEPALIVE_S = 15.0
_RECHECK_S = 5.0  # how often an open stream re-checks its token against the revocation list


def _ends(caller: Caller, notice: dict) -> bool:
    """Whether a ``session_revoked`` notice from the bus concerns this stream's token."""
    if notice.get("sid") is not None and notice["sid"] == caller.family:
        return True
    before = notice.get("before")
    return isinstance(before, int | float) and caller.issued_at <= before


def _ending(why: str) -> str:
    return f"event: end\ndata: {json.dumps({'type': 'end', 'reason': why})}\n\n"


class ReadMarks(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[Annotated[str, Field(max_length=64)]] | None, Field(max_length=500)] = None


@router.get("/notifications", summary="My notifications, newest first, with the unread count")
async def inbox(
    caller: CallerDep,
    arena: ArenaDep,
    cursor: Cursor = None,
    limit: Limit = 20,
    unread_only: bool = False,
) -> dict:
    return await paged(arena.ref(Inbox, caller.id), Inbox.browse, cursor, limit, unread_only=unread_only)


@router.post("/notifications/read", summary="Mark some (or, without ids, all) as read")
async def mark_read(body: ReadMarks, caller: CallerDep, arena: ArenaDep) -> dict:
    return {"unread": await arena.ref(Inbox, caller.id).ask(Inbox.mark_read, ids=body.ids)}


class Mutes(BaseModel):
    model_config = ConfigDict(extra="forbid")

    muted: Annotated[list[Literal[NOTIFICATION_TYPES]], Field(max_length=len(NOTIFICATION_TYPES))]  # type: ignore[valid-type]


@router.get("/notifications/mutes", summary="The notification types I muted")
async def mutes(caller: CallerDep, arena: ArenaDep) -> dict:
    return {"muted": await arena.ref(Inbox, caller.id).ask(Inbox.muted_types), "types": list(NOTIFICATION_TYPES)}


@router.put("/notifications/mutes", summary="Mute exactly these notification types (a friend's badge: friend_badge)")
async def set_mutes(body: Mutes, caller: CallerDep, arena: ArenaDep) -> dict:
    return {"muted": await arena.ref(Inbox, caller.id).ask(Inbox.set_mutes, types=list(body.muted))}


def _known(type: str) -> None:
    if type not in NOTIFICATION_TYPES:
        raise Problem(404, f"no notification type {type!r}; one of {', '.join(NOTIFICATION_TYPES)}")


@router.put("/notifications/mutes/{type}", summary="Mute a notification type")
async def mute(type: str, caller: CallerDep, arena: ArenaDep) -> dict:
    _known(type)
    return {"muted": await arena.ref(Inbox, caller.id).ask(Inbox.set_muted, type=type, muted=True)}


@router.delete("/notifications/mutes/{type}", summary="Unmute a notification type")
async def unmute(type: str, caller: CallerDep, arena: ArenaDep) -> dict:
    _known(type)
    return {"muted": await arena.ref(Inbox, caller.id).ask(Inbox.set_muted, type=type, muted=False)}


@router.get(
    "/notifications/stream",
    summary="Live notifications as Server-Sent Events",
    description=(
        "Authenticate with the Authorization header or, for EventSource, `?access_token=`. "
        "The first event, `ready`, says the stream is subscribed: every notification created "
        "after it arrives here, so read the inbox then to catch up without a gap."
    ),
    response_class=Response,
)
async def stream(
    request: Request, arena: ArenaDep, access_token: Annotated[str | None, Query(max_length=2048)] = None
) -> StreamingResponse:
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else access_token
    if not token:
        raise Problem(401, "sign in first", headers={"WWW-Authenticate": "Bearer"})
    caller = await authenticate(arena, token)

    async def events():
        # The user's bus, and the notices of their inbox (what reactions to domain events notify,
        # such as a race result, arrives there: engine.notices).
        async with (
            arena.bus.subscribe(caller.id) as subscription,
            arena.cluster.notices(Inbox, caller.id) as notices,
        ):
            # EventSource's "open" fires on the headers, before this point: a
            # client that loads the inbox on "ready" instead misses nothing.
            yield 'retry: 3000\nevent: ready\ndata: {"type":"ready"}\n\n'
            iterator = _merged(subscription, notices)
            try:
                checked = time.time()
                while not await request.is_disconnected():
                    # The stream lives as long as its token: it ends when the token expires
                    # (the client reconnects with a fresh one) or its session is revoked.
                    now = time.time()
                    if now >= caller.expires:
                        yield _ending("expired")
                        return
                    if now - checked >= _RECHECK_S:
                        checked = now
                        if await arena.revocations.is_revoked(caller.jti, caller.family, caller.id, caller.issued_at):
                            yield _ending("revoked")
                            return
                    try:
                        wait = min(_KEEPALIVE_S, _RECHECK_S, max(0.0, caller.expires - now))
                        event = await asyncio.wait_for(iterator.__anext__(), wait)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    except StopAsyncIteration:
                        return
                    if event.get("type") == "session_revoked":
                        if _ends(caller, event):
                            yield _ending("revoked")
                            return
                        continue
                    yield f"event: {event.get('type', 'message')}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"
            finally:
                iterator.close()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


class _merged:
    """One iterator over two: whichever has an event first; it ends when either ends."""

    def __init__(self, *sources: AsyncIterator[dict]) -> None:
        self._iterators = [source.__aiter__() for source in sources]
        self._next: dict[asyncio.Task, AsyncIterator[dict]] = {}

    def __aiter__(self) -> _merged:
        return self

    async def __anext__(self) -> dict:
        for iterator in self._iterators:
            if iterator not in self._next.values():
                self._next[asyncio.ensure_future(iterator.__anext__())] = iterator
        done, _ = await asyncio.wait(self._next, return_when=asyncio.FIRST_COMPLETED)
        task = next(iter(done))
        del self._next[task]
        return task.result()  # StopAsyncIteration ends the stream

    def close(self) -> None:
        for task in self._next:
            task.cancel()
