"""Following, follow requests, blocking, and the activity feed."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response

from actors.account import Account
from actors.feed import Feed
from actors.inbox import Inbox
from engine.errors import EngineError, NotFound
from serve.context import ArenaDep, CallerDep, EntityId
from serve.notify import notify
from serve.pagination import Cursor, Limit, decode_cursor, encode_cursor, paged
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["social"])


def _not_self(caller_id: str, user_id: str, what: str) -> None:
    if caller_id == user_id:
        raise Problem(422, f"you cannot {what} yourself")


@router.post("/users/{user_id}/follow", summary="Follow an athlete (a private one gets a request)")
async def follow(user_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    _not_self(caller.id, user_id, "follow")
    if (await arena.ref(Account, caller.id).ask(Account.relation, viewer=user_id))["blocked"]:
        raise Problem(409, "you blocked this athlete: unblock them first")  # no follows either way
    status = await arena.ref(Account, user_id).ask(Account.follow_requested, follower=caller.id)
    await arena.ref(Account, caller.id).ask(Account.now_following, followee=user_id, status=status)
    kind = "follower" if status == "following" else "follow_request"
    await notify(arena, user_id, kind, {"from": caller.id})
    return {"status": status}


@router.delete("/users/{user_id}/follow", status_code=204, summary="Unfollow, or withdraw a request")
async def unfollow(user_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    _not_self(caller.id, user_id, "unfollow")
    await arena.ref(Account, user_id).ask(Account.lost_follower, follower=caller.id)
    await arena.ref(Account, caller.id).ask(Account.stopped_following, followee=user_id)
    await arena.ref(Feed, caller.id).ask(Feed.drop_owner, owner=user_id)
    return Response(status_code=204)


@router.post("/me/follow-requests/{user_id}/{answer}", summary="Accept or decline a follow request")
async def answer_request(
    user_id: EntityId, answer: Literal["accept", "decline"], caller: CallerDep, arena: ArenaDep
) -> dict:
    accepted = await arena.ref(Account, caller.id).ask(
        Account.answer_request, follower=user_id, accept=answer == "accept"
    )
    await arena.ref(Account, user_id).ask(Account.request_answered, followee=caller.id, accepted=accepted)
    if accepted:
        await notify(arena, user_id, "follow_accepted", {"from": caller.id})
    return {"accepted": accepted}


@router.put("/users/{user_id}/block", status_code=204, summary="Block an athlete: no follows, no views either way")
async def block(user_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    _not_self(caller.id, user_id, "block")
    await arena.ref(Account, caller.id).ask(Account.block, other=user_id)
    try:  # the other side forgets the relation too
        await arena.ref(Account, user_id).ask(Account.lost_follower, follower=caller.id)
        await arena.ref(Account, user_id).ask(Account.stopped_following, followee=caller.id)
        await arena.ref(Feed, user_id).ask(Feed.drop_owner, owner=caller.id)
    except NotFound:
        pass
    await arena.ref(Feed, caller.id).ask(Feed.drop_owner, owner=user_id)
    return Response(status_code=204)


@router.delete("/users/{user_id}/block", status_code=204, summary="Unblock")
async def unblock(user_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await arena.ref(Account, caller.id).ask(Account.unblock, other=user_id)
    return Response(status_code=204)


@router.get("/users/{user_id}/{which}", summary="Followers or followed athletes")
async def people(
    user_id: EntityId,
    which: Literal["followers", "following"],
    caller: CallerDep,
    arena: ArenaDep,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> dict:
    view = await arena.ref(Account, user_id).ask(Account.view, viewer=caller.id)
    if view["private"] and not (view["relation"]["self"] or view["relation"]["following"]):
        raise Problem(403, "this athlete's profile is private")
    return await paged(arena.ref(Account, user_id), Account.people, cursor, limit, which=which)


@router.get("/me/follow-requests", summary="Who asked to follow me")
async def requests(caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50) -> dict:
    return await paged(arena.ref(Account, caller.id), Account.people, cursor, limit, which="requests")


@router.get(
    "/feed",
    summary="My feed: my activities and those of athletes I follow, newest first; on the first page, "
    "`promoted`: the newest campaign delivered to me this week (docs/commerce.md), or null",
)
async def feed(caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 20) -> dict:
    first = cursor is None
    page, promoted = await asyncio.gather(
        arena.ref(Feed, caller.id).ask(Feed.read, before=decode_cursor(cursor), limit=limit),
        arena.ref(Inbox, caller.id).ask(Inbox.promotion) if first else asyncio.sleep(0, None),
    )
    # Items are copies made at posting time: drop those since deleted or made private (one call per host).
    cards = await arena.cluster.deliver([("workout", item["id"], "card", None, None) for item in page["items"]])
    items = []
    for item, card in zip(page["items"], cards):
        if isinstance(card, EngineError) or (card["visibility"] == "private" and card["owner"] != caller.id):
            continue
        items.append({**item, "title": card.get("title"), "kudos": card["kudos"], "comments": card["comments"]})
    return {"items": items, "next_cursor": encode_cursor(page["next"]), "promoted": promoted}


@router.delete("/feed/promoted/{campaign_id}", status_code=204, summary="Hide a campaign's promoted card from my feed")
async def dismiss_promoted(campaign_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await arena.ref(Inbox, caller.id).ask(Inbox.dismiss_promotion, campaign_id=campaign_id)
    return Response(status_code=204)
