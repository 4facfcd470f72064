"""The brand's shop: catalogue sync from its product feed, products, signed links, the order webhook,
promotions and their codes (docs/commerce.md)."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from fastapi import APIRouter, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from actors.account import Account
from actors.catalogue import Catalogue
from actors.gear import CATALOGUE_ID
from actors.orders import ShopOrder
from actors.promo import OFFERS, PromoDirectory, Promotion, split_code
from actors.workout import SPORTS
from engine.commerce.feed import MAX_FEED_BYTES, FeedError, fingerprint, parse_feed, parse_price
from engine.commerce.signatures import BadSignature, make_click, read_click
from engine.commerce.wear import GEAR_TYPES
from engine.errors import NotFound
from serve.auth import Caller
from serve.context import Arena, ArenaDep, CallerDep
from serve.entitlements import check
from serve.problems import Problem
from serve.webhooks import SIGNATURE_HEADER, signed_body

__all__ = ["router", "WEBHOOK_PATH", "WEBHOOK_MAX_BYTES", "SIGNATURE_HEADER"]

router = APIRouter(tags=["shop"])

WEBHOOK_PATH = "/webhooks/shop/orders"
WEBHOOK_MAX_BYTES = 256 * 1024
CLICK_PARAM = "arena_click"
ProductId = Annotated[str, Path(min_length=1, max_length=50, pattern=r"^[A-Za-z0-9._-]+$")]
PromotionId = Annotated[str, Path(min_length=3, max_length=20, pattern=r"^[A-Z0-9]+$")]


def _admin(caller: Caller, what: str) -> None:
    if not caller.has("admin"):
        raise Problem(403, f"only an admin may {what}")


# -- the catalogue ------------------------------------------------------------


async def _fetch_feed(url: str) -> bytes:
    try:
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
            async with http.stream("GET", url) as answer:
                if answer.status_code != 200:
                    raise Problem(502, f"the shop's feed answered HTTP {answer.status_code}")
                data = bytearray()
                async for chunk in answer.aiter_bytes():
                    data += chunk
                    if len(data) > MAX_FEED_BYTES:
                        raise Problem(502, f"the shop's feed is over {MAX_FEED_BYTES:,} bytes")
                return bytes(data)
    except httpx.HTTPError as error:
        raise Problem(502, f"the shop's feed could not be fetched: {type(error).__name__}") from None


@router.post("/shop/catalogue/sync", summary="Read the brand's product feed now: new, changed, removed, rejected")
async def sync_catalogue(caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "sync the catalogue")
    url = arena.settings.shop_feed_url
    if not url:
        raise Problem(409, "no product feed is configured (ARENA_SHOP_FEED_URL)")
    data = await _fetch_feed(url)
    try:
        feed = await asyncio.to_thread(parse_feed, data, SPORTS)
    except FeedError as error:
        raise Problem(422, f"the feed cannot be read: {error}") from None
    ref = arena.ref(Catalogue, CATALOGUE_ID)
    known = await ref.ask(Catalogue.fingerprints)
    prints = {p["id"]: fingerprint(p) for p in feed.products}
    upserts = [p for p in feed.products if known["prints"].get(p["id"]) != prints[p["id"]]]
    removed = sorted(set(known["prints"]) - set(prints))
    added = sum(1 for p in upserts if p["id"] not in known["prints"])
    report = {"rows": feed.rows, "new": added, "changed": len(upserts) - added, "removed": len(removed),
              "unchanged": len(feed.products) - len(upserts), "rejected_count": feed.rejected_count,
              "rejected": feed.rejected}  # fmt: skip
    return await ref.ask(Catalogue.apply_sync, base=known["version"], upserts=upserts,
                         prints={p["id"]: prints[p["id"]] for p in upserts}, removed=removed,
                         report=report)  # fmt: skip


@router.get("/shop/catalogue/reports", summary="The last syncs' reports, newest first (admins)")
async def sync_reports(caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "read the catalogue's reports")
    return {"items": await arena.ref(Catalogue, CATALOGUE_ID).ask(Catalogue.sync_reports)}


@router.get("/shop/products", summary="The catalogue, by id, filtered by gear type and sport")
async def products(
    caller: CallerDep,
    arena: ArenaDep,
    gear_type: Annotated[Literal[GEAR_TYPES] | None, Query()] = None,  # type: ignore[valid-type]
    sport: Annotated[Literal[SPORTS] | None, Query()] = None,  # type: ignore[valid-type]
    after: Annotated[str | None, Query(max_length=50, pattern=r"^[A-Za-z0-9._-]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> dict:
    ref = arena.ref(Catalogue, CATALOGUE_ID)
    return await ref.ask(Catalogue.browse, gear_type=gear_type, sport=sport, limit=limit, after=after)


@router.get("/shop/products/{product_id}", summary="One product")
async def product(product_id: ProductId, caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(Catalogue, CATALOGUE_ID).ask(Catalogue.product, product_id=product_id)


@router.get("/shop/products/{product_id}/link", summary="The product's page in the shop, with a signed click id")
async def product_link(product_id: ProductId, caller: CallerDep, arena: ArenaDep) -> dict:
    item = await arena.ref(Catalogue, CATALOGUE_ID).ask(Catalogue.product, product_id=product_id)
    now = time.time()
    click = make_click(arena.settings.click_secret(), caller.id, product_id, now)
    parts = urlsplit(item["link"])
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), (CLICK_PARAM, click)])
    return {"url": urlunsplit(parts._replace(query=query)), "click_id": click,
            "expires_at": now + arena.settings.shop_click_ttl}  # fmt: skip


# -- the order webhook ----------------------------------------------------------


class OrderLine(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a platform adds fields as it pleases

    product_id: Annotated[str, Field(min_length=1, max_length=50)]
    title: Annotated[str, Field(max_length=150)] = ""
    quantity: Annotated[int, Field(ge=1, le=1_000)]
    price: Annotated[str, Field(max_length=16, pattern=r"^\d{1,9}(\.\d{1,2})?$", description="unit price, '89.90'")]


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=64)]
    status: Literal["pending", "paid", "cancelled", "refunded"]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=100)]
    click_id: Annotated[str | None, Field(max_length=512)] = None


_LINE_SCHEMA = {
    "type": "object",
    "required": ["product_id", "quantity", "price"],
    "properties": {
        "product_id": {"type": "string", "maxLength": 50},
        "title": {"type": "string", "maxLength": 150},
        "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
        "price": {"type": "string", "pattern": r"^\d{1,9}(\.\d{1,2})?$"},
    },
}
_WEBHOOK_BODY = {  # the route reads the raw body (its signature is over the bytes): the schema is told by hand
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["id", "status", "currency", "lines"],
                    "properties": {
                        "id": {"type": "string", "maxLength": 64},
                        "status": {"type": "string", "enum": ["pending", "paid", "cancelled", "refunded"]},
                        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                        "lines": {"type": "array", "items": _LINE_SCHEMA, "maxItems": 100},
                        "click_id": {"type": "string", "maxLength": 512},
                    },
                }
            }
        },
    }
}


@router.post(
    WEBHOOK_PATH,
    summary="The shop's order webhook: HMAC-SHA256 signed (Arena-Signature: t=...,v1=...), idempotent by order id",
    openapi_extra=_WEBHOOK_BODY,
)
async def order_webhook(request: Request, arena: ArenaDep) -> dict:
    order = await signed_body(request, arena.settings.shop_webhook_secrets(), "ARENA_SHOP_WEBHOOK_SECRET", OrderIn,
                              "order")  # fmt: skip
    if order.status != "paid":
        return {"order_id": order.id, "recorded": False, "reason": f"an order that is {order.status} changes nothing"}
    user_id = await _attributed(arena, order.click_id)
    catalogue = arena.ref(Catalogue, CATALOGUE_ID)
    lines, total = [], 0
    for line in order.lines:
        price, _ = parse_price(f"{line.price} {order.currency}") or (0, order.currency)
        total += price * line.quantity
        try:
            known = await catalogue.ask(Catalogue.product, product_id=line.product_id)
        except NotFound:
            known = {"title": line.title, "brand": None, "gear_type": None, "component": None, "sports": []}
        lines.append({"product_id": line.product_id, "title": known["title"] or line.title, "brand": known["brand"],
                      "quantity": line.quantity, "price": price, "gear_type": known["gear_type"],
                      "component": known["component"], "sports": known["sports"]})  # fmt: skip
    entity_id = hashlib.sha256(order.id.encode()).hexdigest()[:32]
    summary = {"id": order.id, "lines": lines, "total": total, "currency": order.currency}
    answer = await arena.ref(ShopOrder, entity_id).ask(ShopOrder.record, order=summary, user_id=user_id)
    return {**answer, "recorded": not answer["duplicate"]}


async def _attributed(arena: Arena, click: str | None) -> str | None:
    """The athlete whose click id this is, if it is Arena's, fresh, and theirs still exists."""
    if not click:
        return None
    try:
        user_id, _, _ = read_click(arena.settings.click_secret(), click, time.time(), arena.settings.shop_click_ttl)
    except BadSignature:
        return None
    return user_id if await arena.ref(Account, user_id).ask(Account.exists) else None


# -- promotions -------------------------------------------------------------------


class Discount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    percent: Annotated[int, Field(ge=1, le=100)] | None = None
    amount: Annotated[int, Field(ge=1, le=10_000_000, description="minor units")] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None

    @model_validator(mode="after")
    def _one(self) -> Discount:
        if (self.percent is None) == (self.amount is None):
            raise ValueError("a discount is a percent or an amount, one of them")
        if (self.amount is None) != (self.currency is None):
            raise ValueError("an amount comes with its currency, a percent without")
        return self


class PromotionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=r"^[A-Z0-9]{3,20}$", description="the code's prefix: SPRING24")]
    title: Annotated[str, Field(min_length=1, max_length=120)]
    description: Annotated[str, Field(max_length=2_000)] = ""
    discount: Discount
    starts: AwareDatetime | None = None
    expires: AwareDatetime
    mode: Literal["codes", "shared"]
    codes: Annotated[int, Field(ge=1, le=10_000, description="single-use codes to make")] | None = None
    per_user: Annotated[int, Field(ge=1, le=1_000)] = 1
    total: Annotated[int, Field(ge=1, le=100_000, description="a shared code's redemptions in all")] | None = None
    exclusive: bool = Field(False, description="for members whose plan has exclusive_discounts (premium_plus)")

    @model_validator(mode="after")
    def _mode(self) -> PromotionIn:
        if self.mode == "codes" and (self.codes is None or self.total is not None):
            raise ValueError("single-use codes: say how many (codes), not a total")
        if self.mode == "shared" and (self.total is None or self.codes is not None):
            raise ValueError("a shared code: say its total, not a number of codes")
        if self.starts is not None and self.starts >= self.expires:
            raise ValueError("a promotion expires after it starts")
        return self


def _instant(value: datetime) -> float:
    try:
        return value.timestamp()
    except (OverflowError, ValueError):
        raise Problem(422, "the time is out of range") from None


@router.post("/shop/promotions", status_code=201, summary="Create a promotion with its codes (admins)")
async def create_promotion(body: PromotionIn, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "create a promotion")
    expires = _instant(body.expires)
    if expires <= time.time():
        raise Problem(422, "the promotion would expire before it starts")
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes are typed by hand
    codes: set[str] = set()
    while len(codes) < (body.codes or 0):
        codes.add("".join(secrets.choice(alphabet) for _ in range(8)))
    terms = {"title": body.title, "description": body.description, "mode": body.mode, "per_user": body.per_user,
             "discount": body.discount.model_dump(exclude_none=True), "total": body.total or 0,
             "starts": _instant(body.starts) if body.starts else time.time(), "expires": expires,
             "created_by": caller.id, "exclusive": body.exclusive}  # fmt: skip
    card = await arena.ref(Promotion, body.id).ask(Promotion.create, terms=terms, codes=sorted(codes))
    return {**card, "codes": [f"{body.id}-{c}" for c in sorted(codes)] if body.mode == "codes" else [body.id]}


@router.get("/shop/promotions/{promotion_id}", summary="A promotion with its codes and what is used (admins)")
async def get_promotion(promotion_id: PromotionId, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "read a promotion's codes")
    ref = arena.ref(Promotion, promotion_id)
    return {**await ref.ask(Promotion.card), **await ref.ask(Promotion.code_list)}


@router.post("/shop/promotions/{promotion_id}/end", summary="End a promotion now (admins)")
async def end_promotion(promotion_id: PromotionId, caller: CallerDep, arena: ArenaDep) -> dict:
    _admin(caller, "end a promotion")
    return await arena.ref(Promotion, promotion_id).ask(Promotion.end)


@router.get("/offers", summary="The promotions on offer now")
async def offers(caller: CallerDep, arena: ArenaDep) -> dict:
    items = await arena.ref(PromoDirectory, OFFERS).ask(PromoDirectory.current, at=time.time())
    return {"items": [{k: v for k, v in item.items() if k != "left"} for item in items]}


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, Field(min_length=3, max_length=40)]


@router.post("/offers/redeem", summary="Redeem a promo code: once, whoever else tries at the same time")
async def redeem(body: RedeemIn, caller: CallerDep, arena: ArenaDep) -> dict:
    parts = split_code(body.code)
    if parts is None:
        raise Problem(404, "no such code")
    promotion_id, suffix = parts
    promotion = arena.ref(Promotion, promotion_id)
    try:
        exclusive = (await promotion.ask(Promotion.card))["exclusive"]
    except NotFound:
        raise Problem(404, "no such code") from None
    if exclusive:  # an exclusive discount: the one policy (serve/entitlements.py)
        await check(arena, caller.id, "exclusive_discounts")
    return await promotion.ask(Promotion.redeem, suffix=suffix, user_id=caller.id)
