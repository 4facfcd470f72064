"""Challenges: create and browse them, join and leave, read the live boards (docs/challenges.md).

Who sees a challenge: anyone signed in for ``everyone``; a group's members for a group's challenge;
the creator's friends (who follow the creator or whom the creator follows) for ``friends``; and
always its participants and platform admins. Anyone else gets a 404, as if it did not exist.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from actors.account import Account
from actors.challenge import (
    DESCRIPTION_LENGTH,
    SCOPES,
    TITLE_LENGTH,
    Challenge,
    ChallengeDirectory,
    participant_shard,
    participant_shards,
)
from actors.challenge_board import ChallengeBoard
from actors.challenge_entries import MAX_ENTRIES, ChallengeEntries
from actors.challenge_participants import MAX_JOIN_WORKOUTS, ChallengeParticipants
from actors.group import Group
from actors.group_members import GroupMembers
from actors.group_shards import MEMBER_SHARDS, member_shard
from actors.route import link
from actors.workout import SPORTS
from engine.challenges.goals import ADDITIVE, EFFORTS, GOAL_TYPES
from engine.errors import EngineError, NotFound
from serve.api.routes import RouteId, shared_route
from serve.auth import Caller
from serve.context import Arena, ArenaDep, CallerDep, EntityId, new_id
from serve.pagination import Cursor, Limit, decode_cursor, encode_cursor, paged
from serve.problems import Problem
from serve.race_privacy import named_as_seen

__all__ = ["router"]

router = APIRouter(tags=["challenges"])

Sport = Literal[SPORTS]  # type: ignore[valid-type]
GoalType = Literal[GOAL_TYPES]  # type: ignore[valid-type]
Effort = Literal[EFFORTS]  # type: ignore[valid-type]
Scope = Literal[SCOPES]  # type: ignore[valid-type]
GroupId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_LENGTH)]
MAX_PERIOD_DAYS = 366
MAX_GOAL = {"distance_m": 100_000_000.0, "moving_s": 31_622_400.0, "elevation_m": 10_000_000.0,
            "activities": 10_000.0, "streak_days": float(MAX_PERIOD_DAYS), "single_effort": 86_400.0}  # fmt: skip
_FRIENDS_MOST = 1_000  # a friends board ranks the caller and the first 1,000 people they follow
_BROWSE_ROUNDS = 5  # browsing skips challenges the caller may not see, reading at most 5 pages for one


class ChallengeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Annotated[str, Field(max_length=DESCRIPTION_LENGTH)] = ""
    goal_type: GoalType
    goal: Annotated[float, Field(gt=0, description="metres, seconds, activities or days; a single effort: seconds")]
    effort: Effort | None = Field(None, description="a single effort's distance: 1k, 5k, 10k, half, marathon")
    sports: Annotated[list[Sport], Field(max_length=len(SPORTS))] = []
    first_day: dt.date
    last_day: dt.date
    scope: Scope = "everyone"
    group_id: GroupId | None = None
    team: bool = Field(False, description="group against group: a team's progress is its members' sum")
    route_id: RouteId | None = Field(
        None, description="a public route to show with it (linked_route), of one of its sports; it counts nothing"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ChallengeIn:
        if not dt.date(2000, 1, 1) <= self.first_day <= self.last_day <= dt.date(2099, 12, 31):
            raise ValueError("the period runs from first_day to last_day, on or after it, between 2000 and 2099")
        if (self.last_day - self.first_day).days >= MAX_PERIOD_DAYS:
            raise ValueError(f"a challenge lasts at most {MAX_PERIOD_DAYS} days")
        if self.goal > MAX_GOAL[self.goal_type]:
            raise ValueError(f"a {self.goal_type} goal is at most {MAX_GOAL[self.goal_type]:,.0f}")
        if (self.goal_type == "single_effort") != (self.effort is not None):
            raise ValueError("a single_effort goal, and only one, names its effort (its distance)")
        if (self.scope == "group") != (self.group_id is not None):
            raise ValueError("a group's challenge (scope group), and only one, names its group_id")
        if self.team and (self.scope != "everyone" or self.goal_type not in ADDITIVE):
            raise ValueError(f"a team challenge is open to everyone and sums one of {', '.join(ADDITIVE)}")
        if self.goal_type == "streak_days" and self.goal > (self.last_day - self.first_day).days + 1:
            raise ValueError("a streak cannot be longer than the period")
        return self


class JoinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    team: GroupId | None = Field(None, description="a team challenge: the group you compete for (you are a member)")


# -- who sees what ---------------------------------------------------------------------------


async def _member_of(arena: Arena, group_id: str, user_id: str) -> bool:
    standing = await arena.ref(GroupMembers, member_shard(group_id, user_id)).ask(
        GroupMembers.standing, user_id=user_id
    )
    return standing == "member"


async def _in_scope(arena: Arena, card: dict, caller: Caller) -> bool:
    if card["scope"] == "everyone" or caller.has("admin") or card["creator"] == caller.id:
        return True
    if card["scope"] == "group":
        return await _member_of(arena, card["group_id"], caller.id)
    relation = await arena.ref(Account, card["creator"]).ask(Account.relation, viewer=caller.id)
    return not relation["blocked"] and (relation["following"] or relation["followed_by"])


async def _shown(arena: Arena, challenge_id: str, caller: Caller) -> tuple[dict, dict | None]:
    """The challenge's card and the caller's standing in it; 404 for those who may not see it."""
    card, standing = await arena.answers(
        [
            (Challenge.kind, challenge_id, "view", None, None),
            (
                ChallengeParticipants.kind,
                participant_shard(challenge_id, caller.id),
                "standing",
                {"user_id": caller.id},
                None,
            ),
        ],  # fmt: skip
    )
    if standing is None and not await _in_scope(arena, card, caller):
        raise NotFound("no such challenge")
    return card, standing


def _progress(card: dict, score: float | None) -> float | None:
    if score is None:
        return None
    return -score if card["goal_type"] == "single_effort" else score


def _row(card: dict, row: dict, rank: int | None = None) -> dict:
    progress = _progress(card, row.get("score"))
    if progress is None:
        completed = False
    else:
        completed = progress <= card["goal"] if card["goal_type"] == "single_effort" else progress >= card["goal"]
    return {
        "rank": rank if rank is not None else row.get("rank"),
        "user_id": row["user_id"],
        "progress": progress,
        "completed": completed,
        "at": row.get("at"),
        "team": row.get("team"),
    }


async def _named(arena: Arena, rows: list[dict], viewer: str) -> list[dict]:
    """Each athlete as the viewer may see them: a private profile the viewer does not follow shows as
    "Private athlete" with a stand-in id, as in races (``serve/race_privacy.py``)."""
    return await named_as_seen(arena, rows, viewer)


# -- the challenge ------------------------------------------------------------------------------


@router.post("/challenges", status_code=201, summary="Create a challenge (organizers; a group's: its admins)")
async def create_challenge(body: ChallengeIn, caller: CallerDep, arena: ArenaDep) -> dict:
    if body.scope == "group":
        assert body.group_id is not None
        terms = await arena.ref(Group, body.group_id).ask(Group.terms, viewer=caller.id)
        admin = terms["role"] in ("owner", "admin")
        if not admin and not caller.has("admin"):
            if terms["visibility"] == "hidden" and not await _member_of(arena, body.group_id, caller.id):
                raise NotFound("no such group")
            raise Problem(403, "only the group's owner or admins create its challenges")
    elif not caller.has("organizer"):
        raise Problem(403, "only organizers (and a group's admins, for their group) create challenges")
    challenge_id = new_id()
    card = body.model_dump(mode="json", exclude={"route_id"})
    if body.route_id is not None:
        card["linked_route"] = link(await shared_route(arena, body.route_id, caller))
    made = await arena.ref(Challenge, challenge_id).ask(Challenge.create, by=caller.id, card=card)
    await arena.ref(ChallengeBoard, challenge_id).ask(ChallengeBoard.open, goal_type=body.goal_type, goal=body.goal)
    await arena.ref(ChallengeDirectory, "all").ask(ChallengeDirectory.add, card=made)
    return {**made, "participants": 0, "me": None}


@router.get("/challenges", summary="Browse the challenges the caller may see, newest first")
async def browse(
    caller: CallerDep,
    arena: ArenaDep,
    sport: Sport | None = None,
    scope: Scope | None = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> dict:
    before = decode_cursor(cursor)
    shown: list[dict] = []
    following: list | None = None
    for _ in range(_BROWSE_ROUNDS):
        page = await arena.ref(ChallengeDirectory, "all").ask(
            ChallengeDirectory.browse, before=before, limit=limit, sport=sport, scope=scope
        )
        for card in page["items"]:
            if len(shown) < limit and await _in_scope(arena, card, caller):
                shown.append(card)
                following = [card["at"], card["id"]]
        before = page["next"]
        if len(shown) >= limit or before is None:
            break
    more = before is not None
    return {"items": shown, "next_cursor": encode_cursor(following if more else None)}


@router.get("/challenges/{challenge_id}", summary="A challenge, its participant count and the caller's progress")
async def get_challenge(challenge_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    card, standing = await _shown(arena, challenge_id, caller)
    board = await arena.ref(ChallengeBoard, challenge_id).ask(ChallengeBoard.top, limit=1)
    me = None
    if standing is not None:
        around = await arena.ref(ChallengeBoard, challenge_id).ask(
            ChallengeBoard.around, user_id=caller.id, score=standing["score"], at=standing["at"], count=1
        )
        me = {**standing, "rank": around["rank"]}
    return {**card, "participants": board["participants"], "me": me}


@router.post("/challenges/{challenge_id}/join", summary="Join; the period's earlier workouts count too")
async def join(challenge_id: EntityId, caller: CallerDep, arena: ArenaDep, body: JoinIn | None = None) -> dict:
    card, standing = await _shown(arena, challenge_id, caller)
    if standing is not None:
        return standing
    team = body.team if body else None
    if card["team"] and team is None:
        raise Problem(422, "a team challenge: say which of your groups you compete for (team)")
    if not card["team"] and team is not None:
        raise Problem(422, "this challenge has no teams")
    if team is not None and not await _member_of(arena, team, caller.id):
        raise Problem(403, "you compete only for a group you are a member of")
    if time.time() > card["closes"]:
        raise Problem(409, "this challenge is over")
    if await arena.ref(ChallengeEntries, caller.id).ask(ChallengeEntries.count) >= MAX_ENTRIES:
        raise Problem(409, f"you are in {MAX_ENTRIES} challenges, as many as one athlete may be in")
    me = await arena.ref(Account, caller.id).ask(Account.me)
    workouts = await arena.ref(Account, caller.id).ask(Account.all_workouts)
    earlier = [
        w for w in workouts if isinstance(w.get("start"), int | float) and card["opens"] <= w["start"] <= card["closes"]
    ]
    terms = await arena.ref(Challenge, challenge_id).ask(Challenge.terms)
    return await arena.ref(ChallengeParticipants, participant_shard(challenge_id, caller.id)).ask(
        ChallengeParticipants.join,
        user_id=caller.id,
        terms=terms,
        title=card["title"],
        zone=me["profile"].get("time_zone"),
        team=team,
        name=me["profile"].get("display_name"),
        workouts=earlier[:MAX_JOIN_WORKOUTS],
    )


@router.post("/challenges/{challenge_id}/leave", summary="Leave: your progress leaves the boards")
async def leave(challenge_id: EntityId, caller: CallerDep, arena: ArenaDep) -> dict:
    await _shown(arena, challenge_id, caller)
    shard = arena.ref(ChallengeParticipants, participant_shard(challenge_id, caller.id))
    await shard.ask(ChallengeParticipants.leave, user_id=caller.id)
    return {"status": "left"}


@router.get("/me/challenges", summary="The challenges I am in, newest joined first, with my progress")
async def my_challenges(caller: CallerDep, arena: ArenaDep, cursor: Cursor = None, limit: Limit = 20) -> dict:
    page = await paged(arena.ref(ChallengeEntries, caller.id), ChallengeEntries.entries_page, cursor, limit)
    envelopes: list[tuple] = []
    for item in page["items"]:
        envelopes += [
            (Challenge.kind, item["challenge_id"], "view", None, None),
            (ChallengeParticipants.kind, item["shard"], "standing", {"user_id": caller.id}, None),
        ]
    answers = await arena.cluster.deliver(envelopes)
    items = []
    for n, item in enumerate(page["items"]):
        card, standing = answers[2 * n], answers[2 * n + 1]
        if isinstance(card, EngineError) or isinstance(standing, EngineError) or standing is None:
            continue
        items.append({**card, "me": standing, "joined_at": item["since"]})
    return {"items": items, "next_cursor": page["next_cursor"]}


# -- the boards ---------------------------------------------------------------------------------


def _merged(parts: list[list[dict]], limit: int) -> list[dict]:
    rows = sorted((r for part in parts for r in part), key=lambda r: (-r["score"], r["at"], r["user_id"]))
    return rows[:limit]


async def _top(arena: Arena, card: dict, limit: int) -> tuple[list[dict], int]:
    board = await arena.ref(ChallengeBoard, card["id"]).ask(ChallengeBoard.top, limit=limit)
    if board["complete"]:
        return [_row(card, r) for r in board["rows"]], board["participants"]
    # The index's exact list was emptied by corrections below what is asked: the shards know everyone.
    parts = await arena.answers(
        [(ChallengeParticipants.kind, s, "top", {"limit": limit}, None) for s in participant_shards(card["id"])]
    )
    return [_row(card, r, n) for n, r in enumerate(_merged(parts, limit), 1)], board["participants"]


async def _around(arena: Arena, card: dict, me: dict, caller: Caller) -> list[dict]:
    around = await arena.ref(ChallengeBoard, card["id"]).ask(
        ChallengeBoard.around, user_id=caller.id, score=me["score"], at=me["at"], count=5
    )
    if around["rows"] is not None:
        return [_row(card, r) for r in around["rows"]]
    if me["score"] is None:
        return [_row(card, me, around["rank"])]
    body = {"score": me["score"], "at": me["at"], "user_id": caller.id, "count": 5}
    parts = await arena.answers(
        [(ChallengeParticipants.kind, s, "near", body, None) for s in participant_shards(card["id"])]
    )
    ahead = sorted((r for p in parts for r in p["ahead"]), key=lambda r: (-r["score"], r["at"], r["user_id"]))[-5:]
    behind = _merged([p["behind"] for p in parts], 5)
    return await _ranked(arena, card, [*ahead, me, *behind])


async def _ranked(arena: Arena, card: dict, rows: list[dict]) -> list[dict]:
    """Rows with their ranks on the whole board (the index's), best first."""
    rows = sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["at"], r["user_id"]))
    ranks = await arena.ref(ChallengeBoard, card["id"]).ask(
        ChallengeBoard.ranks, entries=[[r["user_id"], r["score"], r["at"]] for r in rows]
    )
    return [_row(card, r, rank) for r, rank in zip(rows, ranks)]


async def _of(arena: Arena, challenge_id: str, users: list[str]) -> list[dict]:
    """The participants among ``users``, asked of their shards together."""
    by_shard: dict[str, list[str]] = {}
    for user in users:
        by_shard.setdefault(participant_shard(challenge_id, user), []).append(user)
    parts = await arena.answers(
        [(ChallengeParticipants.kind, s, "rows_of", {"users": u}, None) for s, u in by_shard.items()]
    )
    return [r for part in parts for r in part]


async def _group_board(arena: Arena, card: dict, group_id: str, caller: Caller, limit: int) -> list[dict]:
    terms, standing = await arena.answers(
        [
            (Group.kind, group_id, "terms", {"viewer": caller.id}, None),
            (GroupMembers.kind, member_shard(group_id, caller.id), "standing", {"user_id": caller.id}, None),
        ],
    )
    member = standing == "member" or terms["role"] is not None
    if terms["visibility"] == "hidden" and not member and standing != "invited":
        raise NotFound("no such group")
    if standing == "banned" or (terms["visibility"] != "public" and not member):
        raise Problem(403, "this group's board is for its members")
    if card["team"]:
        parts = await arena.answers([(ChallengeParticipants.kind, s, "top", {"limit": limit, "team": group_id}, None)
             for s in participant_shards(card["id"])],
        )  # fmt: skip
        rows = _merged(parts, limit)
    else:  # the group's members who are in the challenge: the first 100 of each member shard
        lists = await arena.answers([(GroupMembers.kind, f"{group_id}-{n:02d}", "people", {"which": "members", "limit": 100}, None)
             for n in range(MEMBER_SHARDS)],
        )  # fmt: skip
        found = await _of(arena, card["id"], [m["id"] for members in lists for m in members])
        rows = _merged([[r for r in found if r["score"] is not None]], limit)
    return [_row(card, r, n) for n, r in enumerate(rows, 1)]


@router.get("/challenges/{challenge_id}/leaderboard", summary="The live board: top, around me, friends, a group, teams")
async def leaderboard(
    challenge_id: EntityId,
    caller: CallerDep,
    arena: ArenaDep,
    view: Literal["top", "around_me", "friends", "group", "teams"] = "top",
    group_id: Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    card, me = await _shown(arena, challenge_id, caller)
    if view == "group" and group_id is None:
        raise Problem(422, "a group's board needs its group_id")
    if view == "teams" and not card["team"]:
        raise Problem(422, "only a team challenge has a board of teams")
    participants = None
    teams = None
    if view == "top":
        rows, participants = await _top(arena, card, limit)
    elif view == "around_me":
        rows = [] if me is None else await _around(arena, card, me, caller)
    elif view == "friends":
        following = await arena.ref(Account, caller.id).ask(Account.ids, which="following")
        rows = await _ranked(arena, card, await _of(arena, challenge_id, [caller.id, *following[:_FRIENDS_MOST]]))
    elif view == "group":
        assert group_id is not None
        rows = await _group_board(arena, card, group_id, caller, limit)
    else:
        rows = []
        teams = await arena.ref(ChallengeBoard, challenge_id).ask(ChallengeBoard.team_board, limit=limit)
        names = await arena.cluster.deliver([(Group.kind, t["team"], "terms", {}, None) for t in teams])
        for team, terms in zip(teams, names):
            shown = not isinstance(terms, EngineError) and terms["visibility"] != "hidden"
            team["name"] = terms["name"] if shown else None
            if not shown and not await _member_of(arena, team["team"], caller.id):
                team["team"] = None  # a hidden group's id is as secret as its name, but to its own members
            team["progress"] = team.pop("score")
    mine = None
    if me is not None:
        rank = await arena.ref(ChallengeBoard, challenge_id).ask(
            ChallengeBoard.ranks, entries=[[caller.id, me["score"], me["at"]]]
        )
        mine = {**_row(card, me, rank[0]), "workouts": me["workouts"]}
    return {
        "view": view,
        "goal_type": card["goal_type"],
        "goal": card["goal"],
        "participants": participants,
        "rows": await _named(arena, rows[:limit] if view != "around_me" else rows, caller.id),
        "teams": teams,
        "me": mine,
    }
