"""Groups (clubs): create and discover them, join and leave, manage members, post, read the feed
and the weekly leaderboard (docs/groups.md).

Who may do what is decided from two small reads made together in one batched call: the group's
terms (its rules and the caller's role if owner or admin) and the caller's standing in their
member shard (member, requested, invited, banned). A hidden group is a 404 to anyone neither in
it nor invited; a private group's content is for its members.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from actors import group_board
from actors.account import Account
from actors.group import DESCRIPTION_LENGTH, GROUP_VISIBILITIES, JOIN_POLICIES, NAME_LENGTH, PLACE_LENGTH, Group
from actors.group_directory import MAX_CANDIDATES
from actors.group_feed import GroupFeed
from actors.group_members import GroupMembers
from actors.group_post import COMMENT_LENGTH, POST_LENGTH, GroupPost
from actors.group_shards import DIRECTORY_SHARDS, MEMBER_SHARDS, member_shard
from actors.places import MAX_RADIUS_KM, SHOWN
from actors.user_groups import MAX_GROUPS, UserGroups
from actors.workout import SPORTS
from engine.errors import EngineError, NotFound
from engine.refs import Ref
from serve.auth import Caller
from serve.context import Arena, ArenaDep, CallerDep, EntityId, new_id
from serve.pagination import Cursor, Limit, decode_cursor, encode_cursor, paged
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(tags=["groups"])
_SHOWN_AS = tuple(SHOWN)

Sport = Literal[SPORTS]  # type: ignore[valid-type]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_LENGTH)]
Place = Annotated[str | None, Field(max_length=PLACE_LENGTH)]
Colour = Annotated[str | None, Field(pattern=r"^#[0-9a-fA-F]{6}$", description="#RRGGBB")]
Shown = Literal[_SHOWN_AS]  # type: ignore[valid-type]
Visibility = Literal[GROUP_VISIBILITIES]  # type: ignore[valid-type]
Policy = Literal[JOIN_POLICIES]  # type: ignore[valid-type]
_SEARCH_MOST = 100  # discovery shows the best 100 matches, in pages
_BOARD_WAVE = MEMBER_SHARDS  # a board asks every shard at once
_LIST_WAVE = 16  # lists walk the shards 16 at a time


class Location(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


def _hidden_needs_invitations(visibility: str | None, join_policy: str | None) -> None:
    if visibility == "hidden" and join_policy not in (None, "invite"):
        raise ValueError("a hidden group takes members by invitation only (join_policy invite)")


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[str, Field(max_length=DESCRIPTION_LENGTH)] = ""
    sports: Annotated[list[Sport], Field(max_length=len(SPORTS))] = []
    city: Place = None
    region: Place = None
    location: Location | None = None
    location_shown: Shown = Field("city", description="how coarse the location is shown: hidden, region, city, area")
    cover_colour: Colour = None
    visibility: Visibility = "public"
    join_policy: Policy | None = Field(None, description="open, request or invite; a hidden group's is invite")

    @model_validator(mode="after")
    def _consistent(self) -> GroupIn:
        _hidden_needs_invitations(self.visibility, self.join_policy)
        return self


class GroupEdit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Annotated[str | None, Field(max_length=DESCRIPTION_LENGTH)] = None
    sports: Annotated[list[Sport] | None, Field(max_length=len(SPORTS))] = None
    city: Place = None
    region: Place = None
    location: Location | None = None
    location_shown: Shown | None = None
    cover_colour: Colour = None
    visibility: Visibility | None = None
    join_policy: Policy | None = None

    @model_validator(mode="after")
    def _consistent(self) -> GroupEdit:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        _hidden_needs_invitations(self.visibility, self.join_policy)
        for required in ("name", "sports", "description", "location_shown", "visibility", "join_policy"):
            if required in self.model_fields_set and getattr(self, required) is None:
                raise ValueError(f"{required} cannot be null")
        return self


class PostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=POST_LENGTH)]


class CommentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=COMMENT_LENGTH)]


class Someone(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: EntityId


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "member"]


class BanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str | None, Field(max_length=280)] = None


# -- who the caller is to a group ------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    group_id: str
    terms: dict
    role: str | None  # owner, admin, member, or None
    standing: str | None  # the member shard's: member, requested, invited, banned, or None

    @property
    def admin(self) -> bool:
        return self.role in ("owner", "admin")


async def _standing(arena: Arena, group_id: str, caller: Caller) -> Standing:
    terms, standing = await arena.answers(
        [
            (Group.kind, group_id, "terms", {"viewer": caller.id}, None),
            (GroupMembers.kind, member_shard(group_id, caller.id), "standing", {"user_id": caller.id}, None),
        ],
    )
    role = terms["role"] or ("member" if standing == "member" else None)
    if terms["visibility"] == "hidden" and role is None and standing != "invited":
        raise NotFound("no such group")
    return Standing(group_id, terms, role, standing)


async def _reader(arena: Arena, group_id: str, caller: Caller) -> Standing:
    """Who may read the group's content: anyone signed in for a public group (not the banned), members otherwise."""
    found = await _standing(arena, group_id, caller)
    if found.standing == "banned":
        raise Problem(403, "you are banned from this group")
    if found.role is None and found.terms["visibility"] != "public":
        raise Problem(403, "this group's content is for its members")
    return found


async def _member(arena: Arena, group_id: str, caller: Caller) -> Standing:
    found = await _standing(arena, group_id, caller)
    if found.role is None:
        raise Problem(403, "only the group's members may do this")
    return found


async def _admin(arena: Arena, group_id: str, caller: Caller) -> Standing:
    found = await _standing(arena, group_id, caller)
    if not found.admin:
        raise Problem(403, "only the group's owner or admins may do this")
    return found


async def _owner(arena: Arena, group_id: str, caller: Caller) -> Standing:
    found = await _standing(arena, group_id, caller)
    if found.role != "owner":
        raise Problem(403, "only the group's owner may do this")
    return found


def _shard(arena: Arena, group_id: str, user_id: str) -> Ref[GroupMembers]:
    """The member shard that holds ``user_id``'s standing in the group."""
    return arena.ref(GroupMembers, member_shard(group_id, user_id))


async def _must_be_member(arena: Arena, group_id: str, user_id: str) -> None:
    if await _shard(arena, group_id, user_id).ask(GroupMembers.standing, user_id=user_id) != "member":
        raise Problem(404, "this athlete is not a member of the group")


async def _room_for_one_more(arena: Arena, user_id: str) -> None:
    if await arena.ref(UserGroups, user_id).ask(UserGroups.count) >= MAX_GROUPS:
        raise Problem(409, f"you are in {MAX_GROUPS} groups, as many as one athlete may be in")


# -- the group -------------------------------------------------------------------------


@router.post("/groups", status_code=201, summary="Create a group; you are its owner")
async def create_group(body: GroupIn, caller: CallerDep, arena: ArenaDep) -> dict:
    await _room_for_one_more(arena, caller.id)
    group_id = new_id()
    profile = body.model_dump(include={"name", "description", "sports", "city", "region", "cover_colour"})
    view = await arena.ref(Group, group_id).ask(
        Group.create,
        owner=caller.id,
        profile=profile,
        visibility=body.visibility,
        join_policy=body.join_policy or ("invite" if body.visibility == "hidden" else "open"),
        location=body.location.model_dump() if body.location else None,
        location_shown=body.location_shown,
    )
    await _shard(arena, group_id, caller.id).ask(GroupMembers.found, user_id=caller.id)
    return {**view, "me": {"role": "owner", "standing": "member"}}


@router.get("/groups/{group_id}", summary="A group's page, and where the caller stands in it")
async def get_group(group_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    found = await _standing(arena, group_id, caller)
    view = await arena.ref(Group, group_id).ask(Group.view, viewer=caller.id)
    return {**view, "me": {"role": found.role, "standing": found.standing}}


@router.patch("/groups/{group_id}", summary="Edit a group (admins; visibility and join policy: the owner)")
async def edit_group(group_id: EntityId, body: GroupEdit, caller: CallerDep, arena: ArenaDep) -> dict:
    await _admin(arena, group_id, caller)
    changes = body.model_dump(exclude_unset=True)
    return await arena.ref(Group, group_id).ask(Group.edit, by=caller.id, changes=changes)


@router.delete("/groups/{group_id}", status_code=204, summary="Delete a group (its owner)")
async def delete_group(group_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await _owner(arena, group_id, caller)
    await arena.ref(Group, group_id).ask(Group.delete, by=caller.id)
    return Response(status_code=204)


@router.get("/groups/{group_id}/history", summary="Every change to the group, newest first (admins)")
async def history(
    group_id: EntityId, caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50
) -> dict:
    await _admin(arena, group_id, caller)
    before = decode_cursor(cursor)
    body = {"before": before, "limit": limit}
    envelopes = [(Group.kind, group_id, "history_page", body, None)]
    envelopes += [(GroupMembers.kind, f"{group_id}-{n:02d}", "history_page", body, None) for n in range(MEMBER_SHARDS)]
    pages = await arena.answers(envelopes)
    items = sorted((item for p in pages for item in p["items"]), key=lambda i: (i["at"], i["id"]), reverse=True)
    more = len(items) > limit or any(p["next"] for p in pages)
    chosen = items[:limit]
    following = [chosen[-1]["at"], chosen[-1]["id"]] if more and chosen else None
    return {"items": chosen, "next_cursor": encode_cursor(following)}


# -- joining and leaving -------------------------------------------------------------------


@router.post("/groups/{group_id}/join", summary="Join (open), ask to join (by request), or accept an invitation")
async def join(group_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    found = await _standing(arena, group_id, caller)
    if found.role is not None:
        return {"status": "member"}
    await _room_for_one_more(arena, caller.id)
    status = await _shard(arena, group_id, caller.id).ask(
        GroupMembers.join, user_id=caller.id, policy=found.terms["join_policy"]
    )
    return {"status": status}


@router.post("/groups/{group_id}/leave", summary="Leave the group, or withdraw a request to join")
async def leave(group_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    found = await _standing(arena, group_id, caller)
    if found.role == "owner":
        raise Problem(409, "the owner cannot leave: transfer the group to a member first")
    return {"status": await _shard(arena, group_id, caller.id).ask(GroupMembers.leave, user_id=caller.id)}


@router.get("/me/groups", summary="The groups I belong to, newest first, with my role")
async def my_groups(caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50) -> dict:
    page = await paged(arena.ref(UserGroups, caller.id), UserGroups.groups_page, cursor, limit)
    terms = await arena.cluster.deliver(
        [(Group.kind, item["id"], "terms", {"viewer": caller.id}, None) for item in page["items"]]
    )
    items = [
        {**item, "name": t["name"], "role": t["role"] or "member", "visibility": t["visibility"]}
        for item, t in zip(page["items"], terms)
        if not isinstance(t, EngineError)  # a group deleted since
    ]
    return {**page, "items": items}


@router.get("/me/group-invitations", summary="Invitations to groups waiting for my answer")
async def my_invitations(caller: CallerDep, arena: ArenaDep) -> dict:
    invitations = await arena.ref(UserGroups, caller.id).ask(UserGroups.invitation_list)
    terms = await arena.cluster.deliver(
        [(Group.kind, i["group_id"], "terms", {"viewer": caller.id}, None) for i in invitations]
    )
    items = [{**i, "name": t["name"]} for i, t in zip(invitations, terms) if not isinstance(t, EngineError)]
    return {"items": items}


# -- members, requests, invitations, bans ------------------------------------------------------


async def _across_shards(arena: Arena, group_id: str, which: str, cursor: str | None, limit: int) -> dict:
    """One of the shards' lists, in (shard, user id) order, paged with ``[shard, last id]``."""
    key = decode_cursor(cursor)
    first, after = (0, None) if key is None else (key[0], key[1])
    if not (isinstance(first, int) and 0 <= first < MEMBER_SHARDS):
        raise Problem(400, "the cursor is not one this API issued")
    found: list[tuple[int, dict]] = []
    shard = first
    while shard < MEMBER_SHARDS and len(found) <= limit:
        wave = range(shard, min(MEMBER_SHARDS, shard + _LIST_WAVE))
        answers = await arena.answers(
            [
                (
                    GroupMembers.kind,
                    f"{group_id}-{n:02d}",
                    "people",
                    {"which": which, "after": after if n == first else None, "limit": limit + 1},
                    None,
                )
                for n in wave
            ],  # fmt: skip
        )
        found += [(n, item) for n, items in zip(wave, answers) for item in items]
        shard = wave[-1] + 1
    chosen = found[:limit]
    following = [chosen[-1][0], chosen[-1][1]["id"]] if len(found) > limit else None
    return {"items": [item for _, item in chosen], "next_cursor": encode_cursor(following)}


async def _named(arena: Arena, items: list[dict], viewer: str) -> list[dict]:
    """Each athlete's display name as the viewer may see it (none for one who blocked them)."""
    views = await arena.cluster.deliver([(Account.kind, i["id"], "view", {"viewer": viewer}, None) for i in items])
    return [{**i, "name": None if isinstance(v, EngineError) else v["display_name"]} for i, v in zip(items, views)]


@router.get("/groups/{group_id}/members", summary="The group's members, with their roles")
async def members(
    group_id: EntityId, caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50
) -> dict:
    await _reader(arena, group_id, caller)
    page = await _across_shards(arena, group_id, "members", cursor, limit)
    roles = await arena.ref(Group, group_id).ask(Group.roles)
    for item in page["items"]:
        item["role"] = (
            "owner" if item["id"] == roles["owner"] else "admin" if item["id"] in roles["admins"] else "member"
        )
    return {**page, "items": await _named(arena, page["items"], caller.id)}


async def _waiting(arena: Arena, group_id: str, caller: Caller, which: str, cursor: str | None, limit: int) -> dict:
    await _admin(arena, group_id, caller)
    page = await _across_shards(arena, group_id, which, cursor, limit)
    return {**page, "items": await _named(arena, page["items"], caller.id)}


@router.get("/groups/{group_id}/requests", summary="Requests to join, waiting for an answer (admins)")
async def requests(
    group_id: EntityId, caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50
) -> dict:
    return await _waiting(arena, group_id, caller, "requests", cursor, limit)


@router.get("/groups/{group_id}/invitations", summary="Invitations not yet answered (admins)")
async def invitations(
    group_id: EntityId, caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50
) -> dict:
    return await _waiting(arena, group_id, caller, "invited", cursor, limit)


@router.get("/groups/{group_id}/bans", summary="Who is banned (admins)")
async def bans(
    group_id: EntityId, caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50
) -> dict:
    return await _waiting(arena, group_id, caller, "banned", cursor, limit)


@router.post("/groups/{group_id}/requests/{user_id}/{answer}", summary="Accept or decline a join request (admins)")
async def answer_request(
    group_id: EntityId, user_id: EntityId, answer: Literal["accept", "decline"], caller: CallerDep, arena: ArenaDep
) -> dict:
    await _admin(arena, group_id, caller)
    status = await _shard(arena, group_id, user_id).ask(
        GroupMembers.answer, user_id=user_id, accept=answer == "accept", by=caller.id
    )
    return {"status": status}


@router.post("/groups/{group_id}/invitations", status_code=201, summary="Invite an athlete (admins)")
async def invite(group_id: EntityId, body: Someone, caller: CallerDep, arena: ArenaDep) -> dict:
    await _admin(arena, group_id, caller)
    if not await arena.ref(Account, body.user_id).ask(Account.exists):
        raise Problem(404, "no such athlete")
    status = await _shard(arena, group_id, body.user_id).ask(GroupMembers.invite, user_id=body.user_id, by=caller.id)
    return {"status": status}


@router.delete(
    "/groups/{group_id}/invitations/{user_id}",
    status_code=204,
    summary="Decline an invitation (the invitee) or withdraw it (admins)",
)
async def uninvite(group_id: EntityId, user_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    if user_id == caller.id:
        await _standing(arena, group_id, caller)
    else:
        await _admin(arena, group_id, caller)
    await _shard(arena, group_id, user_id).ask(GroupMembers.uninvite, user_id=user_id, by=caller.id)
    await arena.ref(UserGroups, user_id).ask(UserGroups.drop_invitation, group_id=group_id)
    return Response(status_code=204)


async def _manager(arena: Arena, group_id: str, caller: Caller, target: str) -> None:
    """The caller may act on ``target`` (admins on members, the owner on admins too)."""
    await _standing(arena, group_id, caller)
    if target == caller.id:
        raise Problem(422, "you cannot do this to yourself (to leave a group, POST /groups/{id}/leave)")
    await arena.ref(Group, group_id).ask(Group.may_manage, by=caller.id, target=target)


@router.delete("/groups/{group_id}/members/{user_id}", status_code=204, summary="Remove a member (admins)")
async def remove_member(group_id: EntityId, user_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await _manager(arena, group_id, caller, user_id)
    await _shard(arena, group_id, user_id).ask(GroupMembers.remove, user_id=user_id, by=caller.id)
    return Response(status_code=204)


@router.put("/groups/{group_id}/bans/{user_id}", status_code=204, summary="Ban an athlete: out, and not back (admins)")
async def ban(
    group_id: EntityId, user_id: EntityId, caller: CallerDep, arena: ArenaDep, body: BanIn | None = None
) -> Response:
    await _manager(arena, group_id, caller, user_id)
    reason = body.reason if body else None
    await _shard(arena, group_id, user_id).ask(GroupMembers.ban, user_id=user_id, by=caller.id, reason=reason)
    return Response(status_code=204)


@router.delete("/groups/{group_id}/bans/{user_id}", status_code=204, summary="Lift a ban (admins)")
async def unban(group_id: EntityId, user_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    await _admin(arena, group_id, caller)
    await _shard(arena, group_id, user_id).ask(GroupMembers.unban, user_id=user_id, by=caller.id)
    return Response(status_code=204)


@router.put("/groups/{group_id}/members/{user_id}/role", summary="Appoint an admin or make one a member (the owner)")
async def set_role(group_id: EntityId, user_id: EntityId, body: RoleIn, caller: CallerDep, arena: ArenaDep) -> dict:
    await _owner(arena, group_id, caller)
    await _must_be_member(arena, group_id, user_id)
    return await arena.ref(Group, group_id).ask(Group.set_role, by=caller.id, user_id=user_id, role=body.role)


@router.post("/groups/{group_id}/transfer", summary="Hand the group to a member (the owner; you stay an admin)")
async def transfer(group_id: EntityId, body: Someone, caller: CallerDep, arena: ArenaDep) -> dict:
    await _owner(arena, group_id, caller)
    await _must_be_member(arena, group_id, body.user_id)
    return await arena.ref(Group, group_id).ask(Group.transfer, by=caller.id, to=body.user_id)


# -- the feed and its posts -----------------------------------------------------------------


@router.get("/groups/{group_id}/feed", summary="The group's posts and its members' workouts, newest first")
async def feed(
    group_id: EntityId, caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 20
) -> dict:
    await _reader(arena, group_id, caller)
    page = await arena.ref(GroupFeed, group_id).ask(GroupFeed.read, before=decode_cursor(cursor), limit=limit)
    items = page["items"]
    # The feed holds copies made when they happened: what was deleted or made private since, or what
    # this reader may not see under the athlete's own rules, is left out.
    cards = await arena.cluster.deliver(
        [
            (GroupPost.kind, i["id"], "card", {"group_id": group_id, "viewer": caller.id}, None)
            if i["type"] == "post"
            else ("workout", i["id"], "card", None, None)
            for i in items
        ]
    )
    workouts = [
        (item, card)
        for item, card in zip(items, cards)
        if item["type"] == "workout" and not isinstance(card, EngineError) and card["visibility"] != "private"
    ]
    allowed = await arena.cluster.deliver(
        [(Account.kind, card["owner"], "may_see", {"viewer": caller.id, "visibility": card["visibility"]}, None)
         for _, card in workouts]
    )  # fmt: skip
    shown = {item["id"]: card for (item, card), ok in zip(workouts, allowed) if ok is True}
    out = []
    for item, card in zip(items, cards):
        if item["type"] == "post" and not isinstance(card, EngineError):
            out.append({**item, **card, "type": "post"})
        elif item["id"] in shown:
            card = shown[item["id"]]
            out.append(
                {**item, "title": card.get("title"), "visibility": card["visibility"],
                 "kudos": card["kudos"], "comments": card["comments"]}
            )  # fmt: skip
    return {"items": out, "next_cursor": encode_cursor(page["next"])}


@router.post("/groups/{group_id}/posts", status_code=201, summary="Post in the group's feed (members)")
async def post(group_id: EntityId, body: PostIn, caller: CallerDep, arena: ArenaDep) -> dict:
    await _member(arena, group_id, caller)
    me = await arena.ref(Account, caller.id).ask(Account.me)
    name = me["profile"].get("display_name")
    card = await arena.ref(GroupPost, new_id()).ask(
        GroupPost.create, group_id=group_id, author=caller.id, author_name=name, text=body.text
    )
    item = {"id": card["id"], "type": "post", "at": card["at"], "owner": caller.id, "owner_name": name,
            "text": card["text"][:280]}  # fmt: skip
    await arena.ref(GroupFeed, group_id).ask(GroupFeed.push, item=item)  # read-your-writes; the event adds nothing
    return card


@router.get("/groups/{group_id}/posts/{post_id}", summary="One post")
async def get_post(group_id: EntityId, post_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await _reader(arena, group_id, caller)
    return await arena.ref(GroupPost, post_id).ask(GroupPost.card, group_id=group_id, viewer=caller.id)


@router.delete("/groups/{group_id}/posts/{post_id}", status_code=204, summary="Delete a post (its author or admins)")
async def delete_post(group_id: EntityId, post_id: EntityId, caller: CallerDep, arena: ArenaDep) -> Response:
    found = await _standing(arena, group_id, caller)
    await arena.ref(GroupPost, post_id).ask(GroupPost.delete, group_id=group_id, by=caller.id, moderator=found.admin)
    await arena.ref(GroupFeed, group_id).ask(GroupFeed.drop, item_id=post_id)
    return Response(status_code=204)


@router.put("/groups/{group_id}/posts/{post_id}/kudos", summary="Give kudos to a post (members)")
async def give_kudos(group_id: EntityId, post_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await _member(arena, group_id, caller)
    return {
        "kudos": await arena.ref(GroupPost, post_id).ask(GroupPost.give_kudos, group_id=group_id, athlete=caller.id)
    }


@router.delete("/groups/{group_id}/posts/{post_id}/kudos", summary="Take kudos back")
async def take_kudos(group_id: EntityId, post_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await _standing(arena, group_id, caller)
    return {
        "kudos": await arena.ref(GroupPost, post_id).ask(GroupPost.take_kudos, group_id=group_id, athlete=caller.id)
    }


@router.get("/groups/{group_id}/posts/{post_id}/kudos", summary="Who gave kudos to a post")
async def list_kudos(
    group_id: EntityId, post_id: EntityId, caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50
) -> dict:
    await _reader(arena, group_id, caller)
    return await paged(arena.ref(GroupPost, post_id), GroupPost.kudos_list, cursor, limit, group_id=group_id)


@router.post("/groups/{group_id}/posts/{post_id}/comments", status_code=201, summary="Comment on a post (members)")
async def comment(group_id: EntityId, post_id: EntityId, body: CommentIn, caller: CallerDep, arena: ArenaDep) -> dict:
    await _member(arena, group_id, caller)
    return await arena.ref(GroupPost, post_id).ask(
        GroupPost.comment, group_id=group_id, comment_id=new_id(), author=caller.id, text=body.text
    )


@router.get("/groups/{group_id}/posts/{post_id}/comments", summary="A post's comments, newest first")
async def list_comments(
    group_id: EntityId, post_id: EntityId, caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 50
) -> dict:
    await _reader(arena, group_id, caller)
    return await paged(arena.ref(GroupPost, post_id), GroupPost.comment_list, cursor, limit, group_id=group_id)


@router.delete(
    "/groups/{group_id}/posts/{post_id}/comments/{comment_id}",
    status_code=204,
    summary="Delete a comment (its author, the post's author, or admins)",
)
async def delete_comment(
    group_id: EntityId, post_id: EntityId, comment_id: EntityId, caller: CallerDep, arena: ArenaDep
) -> Response:
    found = await _standing(arena, group_id, caller)
    await arena.ref(GroupPost, post_id).ask(
        GroupPost.remove_comment, group_id=group_id, comment_id=comment_id, by=caller.id, moderator=found.admin
    )
    return Response(status_code=204)


# -- the weekly leaderboard ------------------------------------------------------------------


@router.get("/groups/{group_id}/leaderboard", summary="The group's leaderboard of one week (Monday to Sunday, UTC)")
async def leaderboard(
    group_id: EntityId,
    caller: CallerDep,
    arena: ArenaDep,
    week: Annotated[dt.date | None, Query(description="any day of the week; this week when absent")] = None,
    by: Literal[group_board.METRICS] = "distance_m",  # type: ignore[valid-type]
    sport: Sport | None = None,
    limit: Limit = 20,
) -> dict:
    await _reader(arena, group_id, caller)
    if week is None:
        start = group_board.week_of(dt.datetime.now(dt.UTC).timestamp())
    else:
        start = group_board.week_of(dt.datetime(week.year, week.month, week.day, tzinfo=dt.UTC).timestamp())
    mine = member_shard(group_id, caller.id)
    parts = await arena.answers(
        [
            (
                GroupMembers.kind,
                shard,
                "board",
                {
                    "week": start,
                    "metric": by,
                    "sport": sport,
                    "limit": limit,
                    "me": caller.id if shard == mine else None,
                },
                None,
            )
            for shard in (f"{group_id}-{n:02d}" for n in range(_BOARD_WAVE))
        ],  # fmt: skip
    )
    rows = group_board.merge([p["rows"] for p in parts], by, limit)
    me = next((p["me"] for p in parts if p["me"] is not None), None)
    if me is not None:
        me = next((r for r in rows if r["user_id"] == caller.id), me)
    return {
        "week": dt.datetime.fromtimestamp(start, dt.UTC).date().isoformat(),
        "by": by,
        "sport": sport,
        "rows": rows,
        "me": me,
    }


# -- discovery ------------------------------------------------------------------------------


def _offset(cursor: str | None) -> int:
    key = decode_cursor(cursor)
    if key is None:
        return 0
    if not (isinstance(key[0], int) and 0 <= key[0] < _SEARCH_MOST and key[1] == "search"):
        raise Problem(400, "the cursor is not one this API issued")
    return key[0]


@router.get("/groups", summary="Find groups: by name (typos forgiven), by sport, near a point")
async def discover(
    caller: CallerDep,
    arena: ArenaDep,
    q: Annotated[str | None, Query(min_length=1, max_length=100, description="words of the name")] = None,
    sport: Sport | None = None,
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float, Query(gt=0, le=MAX_RADIUS_KM)] = 25.0,
    sort: Literal["relevance", "distance", "activity", "members"] | None = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> dict:
    if (lat is None) != (lon is None):
        raise Problem(422, "near-me search needs both lat and lon")
    near = None if lat is None or lon is None else [lat, lon]
    sort = sort or ("relevance" if q else "distance" if near else "activity")
    if sort == "relevance" and not q:
        raise Problem(422, "sorting by relevance needs a name to search (q)")
    if sort == "distance" and near is None:
        raise Problem(422, "sorting by distance needs lat and lon")
    offset = _offset(cursor)
    query = {
        "text": q,
        "sport": sport,
        "near": near,
        "radius_km": radius_km,
        "limit": min(MAX_CANDIDATES, _SEARCH_MOST),
    }
    parts = await arena.answers(
        [("group_directory", f"d{n:02d}", "search", query, None) for n in range(DIRECTORY_SHARDS)]
    )
    found = {entry["id"]: entry for part in parts for entry in part}
    first = sorted(found.values(), key=_by_match(q is not None, near is not None))[:_SEARCH_MOST]
    # The directory's cards may lag a moment: the live group gives the count and has the last word
    # on visibility (a group hidden since is never shown), its feed the activity.
    envelopes: list[tuple] = []
    for entry in first:
        envelopes += [
            (Group.kind, entry["id"], "view", {}, None),
            (GroupFeed.kind, entry["id"], "activity", None, None),
        ]
    live = await arena.cluster.deliver(envelopes)
    results = []
    for n, entry in enumerate(first):
        view, activity = live[2 * n], live[2 * n + 1]
        if isinstance(view, EngineError) or view["visibility"] == "hidden":
            continue
        results.append(
            {
                "id": entry["id"],
                **{k: view[k] for k in ("name", "description", "sports", "city", "region", "cover_colour")},
                "visibility": view["visibility"],
                "join_policy": view["join_policy"],
                "location": view["location"],
                "members": view["members"],
                "activity": activity if isinstance(activity, int) else 0,
                "score": entry["score"],
                "distance_km": entry["distance_km"],
            }
        )
    results.sort(key=_sorted_by(sort))
    chosen = results[offset : offset + limit]
    more = offset + limit < len(results)
    return {"items": chosen, "next_cursor": encode_cursor([offset + limit, "search"]) if more else None}


def _by_match(text: bool, near: bool):
    def key(entry: dict) -> tuple:
        if text:
            return (-entry["score"], -entry["members"], entry["id"])
        if near:
            return (entry["distance_km"], -entry["members"], entry["id"])
        return (-entry["members"], entry["id"])

    return key


def _sorted_by(sort: str):
    def key(result: dict) -> tuple:
        distance = result["distance_km"] if result["distance_km"] is not None else 0.0
        if sort == "relevance":
            return (-result["score"], -result["activity"], -result["members"], result["id"])
        if sort == "distance":
            return (distance, -result["activity"], result["id"])
        if sort == "activity":
            return (-result["activity"], distance, -result["members"], result["id"])
        return (-result["members"], -result["activity"], result["id"])

    return key
