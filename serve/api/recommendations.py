"""People, groups, challenges and races to join: the Recommender deployment's candidates, then the rules.

The model proposes (``serve/recommender.py``, through its deployment handle); these routes decide
what may be shown. Each candidate is checked against the entities as they are now, whatever the
model learned: never the caller, nobody they follow or asked to follow, nobody who blocked them or
whom they blocked, no private profile; no group that is hidden or deleted, or that they are in; no
challenge they are in, that is over, or that is not open to everyone; only races open for entries.
The model is asked for more than ``limit`` so that the rules leave enough (docs/models.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from actors.account import Account
from actors.catalogue import Catalogue
from actors.challenge import Challenge
from actors.challenge_entries import ChallengeEntries
from actors.co_purchase import INDEX_ID, CoPurchase
from actors.gear import CATALOGUE_ID, Gear
from actors.group import Group
from actors.race import Race, RaceIndex
from actors.training import Training
from actors.user_groups import UserGroups
from engine.errors import NotFound
from engine.recommend import products as rules
from serve.context import Arena, ArenaDep, CallerDep
from serve.problems import Problem

__all__ = ["router", "OVERFETCH"]

router = APIRouter(tags=["recommendations"])
log = logging.getLogger(__name__)

Which = Literal["people", "groups", "challenges", "races"]
_KIND = {"people": "user", "groups": "group", "challenges": "challenge", "races": "race"}
OVERFETCH = 3  # the model is asked for limit × this (+ what is excluded): the rules drop some
_OPEN_RACES = 200  # races to join are among the newest this many races of the index


async def _or_none(answer: Awaitable[Any]) -> Any:
    try:
        return await answer
    except NotFound:
        return None


@router.get("/me/recommendations/products", summary="Products and gear for me, each with why: wear, volume, "
            "what others bought with mine")  # fmt: skip
async def products(caller: CallerDep, arena: ArenaDep, limit: Annotated[int, Query(ge=1, le=30)] = 10) -> dict:
    catalogue, index = arena.ref(Catalogue, CATALOGUE_ID), arena.ref(CoPurchase, INDEX_ID)
    gear, weekly, bought, me = await asyncio.gather(
        arena.ref(Gear, caller.id).ask(Gear.listing), arena.ref(Training, caller.id).ask(Training.weekly_distance),
        index.ask(CoPurchase.bought, user_id=caller.id), arena.ref(Account, caller.id).ask(Account.me),
    )  # fmt: skip
    items = gear["items"]
    owned = {i["product_id"] for i in items if i.get("product_id") and not i["retired"]} | set(bought)
    worn = rules.worn(items)
    needs = rules.needs(items, weekly)
    sports = [s for s in (me["profile"].get("sports") or [])[:3] if isinstance(s, str)]
    replacements, pages = await asyncio.gather(
        asyncio.gather(*(catalogue.ask(Catalogue.suggestions, limit=6, gear={k: item[k] for k in
                         ("type", "component", "sports", "price", "brand")}) for item, _ in worn)),
        asyncio.gather(*[catalogue.ask(Catalogue.browse, gear_type=n.gear_type, sport=n.sport, limit=50) for n in needs],
                       *[catalogue.ask(Catalogue.browse, sport=s, limit=20) for s in sports]),
    )  # fmt: skip
    picks = [rules.Pick("wear", p, why, item["used_m"] / item["life_m"]) for (item, why), chosen
             in zip(worn, replacements, strict=True) for p in chosen]  # fmt: skip
    for need, page in zip(needs, pages, strict=False):
        fitting = [p for p in page["items"] if p["component"] == need.component]
        fitting.sort(key=lambda p: (abs(p["price"] - need.price) if need.price else p["price"], p["id"]))
        picks += [rules.Pick("volume", p, need.why, 1 - n / 100) for n, p in enumerate(fitting)]
    for sport, page in zip(sports, pages[len(needs) :], strict=True):
        picks += [rules.Pick("sport", p, f"for {sport}, one of your sports") for p in page["items"]]
    mine = sorted({i["product_id"] for i in items if i.get("product_id")} | set(bought))
    together = await index.ask(CoPurchase.together, products=mine, limit=20) if mine else []
    named = sorted({t["id"] for t in together} | {t["with"] for t in together})
    cards = dict(zip(named, await asyncio.gather(*(_or_none(catalogue.ask(Catalogue.product, product_id=p))
                                                   for p in named)), strict=True))  # fmt: skip
    for entry in together:
        card, with_card = cards[entry["id"]], cards[entry["with"]]
        if card is not None:
            n = entry["athletes"]
            why = (f"bought by {n} athlete{'s' if n > 1 else ''} who also bought "
                   f"{with_card['title'] if with_card else 'what you bought'}")  # fmt: skip
            picks.append(rules.Pick("co_purchase", card, why, n / (n + 1)))
    return {"items": rules.rank(picks, owned, limit)}


@router.get("/me/recommendations/{which}", summary="People, groups, challenges or races to join, best first")
async def recommendations(
    which: Which,
    request: Request,
    caller: CallerDep,
    arena: ArenaDep,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> dict:
    handle = getattr(request.app.state, "recommender", None)
    if handle is None:  # an app without the deployment (in-process, tests): no model, so nothing to propose
        return {"items": [], "model": None, "cold_start": True}
    me = await arena.ref(Account, caller.id).ask(Account.me)
    profile = me["profile"]
    features = [f"sport:{s}" for s in (profile.get("sports") or [])[:2] if isinstance(s, str)]
    if isinstance(profile.get("region"), str):
        features.append(f"region:{profile['region']}")
    kind = _KIND[which]
    exclude, candidates = await _known(arena, caller.id, kind)
    ask = {"user": caller.id, "kind": kind, "k": limit * OVERFETCH, "exclude": sorted(exclude),
           "features": features, "candidates": candidates}  # fmt: skip
    try:
        answer = await handle.recommend.remote(ask)
    except Exception as error:  # the deployment is restarting or gone: retryable, never a 500
        log.warning("the recommender did not answer: %s", error)
        raise Problem(503, "recommendations are unavailable for a moment", headers={"Retry-After": "2"}) from None
    shown = await _allowed(arena, caller.id, kind, answer["items"])
    return {"items": shown[:limit], "model": answer["version"], "cold_start": answer["cold_start"]}


async def _known(arena: Arena, me: str, kind: str) -> tuple[set[str], list | None]:
    """What the caller already has of ``kind`` (never proposed), and for races the open ones to rank."""
    if kind == "user":
        return {me, *await arena.ref(Account, me).ask(Account.ids, which="following")}, None
    if kind == "group":
        return set(await arena.ref(UserGroups, me).ask(UserGroups.group_ids)), None
    if kind == "challenge":
        page = await arena.ref(ChallengeEntries, me).ask(ChallengeEntries.entries_page, limit=100)
        return {e["challenge_id"] for e in page["items"]}, None
    races = await arena.ref(RaceIndex, "all").ask(RaceIndex.recent, limit=_OPEN_RACES)
    infos = await asyncio.gather(*(_or_none(arena.races.ref(r["id"]).ask(Race.info)) for r in races
                                   if r["status"] == "open"))  # fmt: skip
    return set(), [[i["id"], ["kind:race", f"sport:{i.get('sport')}"]] for i in infos if i and i["status"] == "open"]


async def _allowed(arena: Arena, me: str, kind: str, items: list) -> list[dict]:
    checks = [_check(arena, me, kind, item_id) for item_id, _ in items]
    cards = await asyncio.gather(*checks)
    return [{**card, "score": round(score, 4)} for (_, score), card in zip(items, cards, strict=True) if card]


async def _check(arena: Arena, me: str, kind: str, item_id: str) -> dict | None:
    """The candidate's card if the rules let the caller see it proposed, else None."""
    if kind == "user":
        theirs, mine = await asyncio.gather(
            _or_none(arena.ref(Account, item_id).ask(Account.view, viewer=me)),  # NotFound: gone, or blocked me
            _or_none(arena.ref(Account, me).ask(Account.relation, viewer=item_id)),
        )
        if theirs is None or mine is None or mine["blocked"] or theirs["private"]:
            return None
        if theirs["relation"]["following"] or theirs["relation"]["requested"]:
            return None
        return {"id": item_id, "display_name": theirs["display_name"]}
    if kind == "group":
        group = await _or_none(arena.ref(Group, item_id).ask(Group.view, viewer=me))
        if group is None or group["visibility"] == "hidden":
            return None
        return {"id": item_id, **{k: group.get(k) for k in ("name", "sports", "city", "visibility", "members")}}
    if kind == "challenge":
        card = await _or_none(arena.ref(Challenge, item_id).ask(Challenge.view))
        if card is None or card["scope"] != "everyone" or card["closes"] < time.time():
            return None
        return {"id": item_id, **{k: card.get(k) for k in ("title", "sports", "first_day", "last_day")}}
    info = await _or_none(arena.races.ref(item_id).ask(Race.info))
    if info is None or info["status"] != "open":
        return None
    return {"id": item_id, **{k: info.get(k) for k in ("name", "sport", "kind", "target_m")}}
