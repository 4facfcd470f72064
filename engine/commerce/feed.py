"""The brand's catalogue as a Google Merchant Center product feed, in its tab-separated form.

One header row names the attributes (Google's names: ``id``, ``title``, ``link``, ``price``...), then
one product per row. Each row is checked on its own: a bad row is reported with its line and reasons
and the rest of the feed still counts. Arena's own meaning travels in two custom labels:
``custom_label_0`` the gear type (``shoes``, ``bike``, ``component:chain``, ``other``) and
``custom_label_1`` the sports it is for (comma-separated: ``run,hike``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from engine.commerce.wear import COMPONENTS, GEAR_TYPES

__all__ = [
    "AVAILABILITY",
    "FeedError",
    "MAX_FEED_BYTES",
    "MAX_PRODUCTS",
    "ParsedFeed",
    "fingerprint",
    "parse_feed",
    "parse_price",
]

MAX_FEED_BYTES = 20 * 1024 * 1024
MAX_PRODUCTS = 20_000  # one catalogue entity holds this many (docs/commerce.md)
MAX_REJECTS_REPORTED = 1_000
AVAILABILITY = ("in_stock", "out_of_stock", "preorder", "backorder")
_REQUIRED = ("id", "title", "link", "price", "availability", "brand")
_LIMITS = {"id": 50, "title": 150, "description": 5_000, "brand": 70, "product_type": 750, "mpn": 70,
           "image_link": 2_000, "link": 2_000, "custom_label_0": 100, "custom_label_1": 100}  # fmt: skip
_PRICE = re.compile(r"^(\d{1,9})(?:\.(\d{1,2}))? ([A-Z]{3})$")
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?(/[^\s]*)?$")
_ID = re.compile(r"^[A-Za-z0-9._-]{1,50}$")  # addressable in a URL path as it is


class FeedError(ValueError):
    """The feed as a whole cannot be read (no header, not text, too large)."""


@dataclass
class ParsedFeed:
    products: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {"line", "id", "reasons"}, the first 1,000
    rejected_count: int = 0
    rows: int = 0


def parse_price(text: str) -> tuple[int, str] | None:
    """``"89.90 EUR"`` as ``(8990, "EUR")``: minor units and the ISO 4217 code; None when not a price."""
    found = _PRICE.match(text.strip())
    if found is None:
        return None
    whole, cents, currency = found.groups()
    return int(whole) * 100 + int((cents or "0").ljust(2, "0")), currency


def _gtin_ok(gtin: str) -> bool:
    if not gtin.isdigit() or len(gtin) not in (8, 12, 13, 14):
        return False
    digits = [int(c) for c in gtin]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits[:-1])))
    return (10 - total % 10) % 10 == digits[-1]


def _gear(label: str) -> tuple[str | None, str | None, str | None]:
    """``custom_label_0`` as (gear type, component, why not)."""
    if not label:
        return None, None, None
    gear_type, _, component = label.strip().lower().partition(":")
    if gear_type not in GEAR_TYPES:
        return None, None, f"custom_label_0 (gear type) {label!r} is not one of {', '.join(GEAR_TYPES)}"
    if gear_type == "component":
        component = component or "other"
        if component not in COMPONENTS:
            return None, None, f"custom_label_0: component {component!r} is not one of {', '.join(COMPONENTS)}"
        return gear_type, component, None
    return gear_type, None, None if not component else f"custom_label_0: only a component has a part ({label!r})"


def _row(values: dict[str, str], sports: tuple[str, ...]) -> tuple[dict | None, list[str]]:
    reasons = [f"{name} is missing" for name in _REQUIRED if not values.get(name)]
    for name, limit in _LIMITS.items():
        if len(values.get(name, "")) > limit:
            reasons.append(f"{name} is longer than {limit} characters")
    if values.get("id") and not _ID.match(values["id"]):
        reasons.append("id has characters other than letters, digits, dot, dash and underscore")
    if values.get("link") and not _URL.match(values["link"]):
        reasons.append("link is not an http(s) URL")
    if values.get("image_link") and not _URL.match(values["image_link"]):
        reasons.append("image_link is not an http(s) URL")
    price = parse_price(values.get("price", "")) if values.get("price") else None
    if values.get("price") and (price is None or price[0] <= 0):
        reasons.append(f"price {values['price']!r} is not a positive amount with its currency, like '89.90 EUR'")
    availability = values.get("availability", "").strip().lower().replace(" ", "_")
    if values.get("availability") and availability not in AVAILABILITY:
        reasons.append(f"availability {values['availability']!r} is not one of {', '.join(AVAILABILITY)}")
    gtin, mpn = values.get("gtin", ""), values.get("mpn", "")
    if gtin and not _gtin_ok(gtin):
        reasons.append(f"gtin {gtin!r} is not a GTIN-8/12/13/14 with a right check digit")
    if not gtin and not mpn and values.get("identifier_exists", "").lower() not in ("no", "false"):
        reasons.append("neither gtin nor mpn (say identifier_exists=no for a product that has none)")
    gear_type, component, why = _gear(values.get("custom_label_0", ""))
    if why:
        reasons.append(why)
    wanted = [s.strip().lower() for s in values.get("custom_label_1", "").split(",") if s.strip()]
    unknown = [s for s in wanted if s not in sports]
    if unknown:
        reasons.append(f"custom_label_1 (sports): {', '.join(unknown)} not one of {', '.join(sports)}")
    if reasons:
        return None, reasons
    assert price is not None
    return {
        "id": values["id"],
        "title": values["title"],
        "link": values["link"],
        "image": values.get("image_link") or None,
        "price": price[0],
        "currency": price[1],
        "availability": availability,
        "brand": values["brand"],
        "gtin": gtin or None,
        "mpn": mpn or None,
        "product_type": values.get("product_type") or None,
        "gear_type": gear_type,
        "component": component,
        "sports": sorted(set(wanted)),
    }, []


def parse_feed(data: bytes, sports: tuple[str, ...]) -> ParsedFeed:
    """Read a TSV product feed: every valid product, and every rejected row with its reasons."""
    if len(data) > MAX_FEED_BYTES:
        raise FeedError(f"the feed is over {MAX_FEED_BYTES:,} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FeedError("the feed is not UTF-8 text") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise FeedError("the feed has no header row")
    header = [name.strip().lower() for name in lines[0].split("\t")]
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise FeedError(f"the header lacks {', '.join(missing)} (a tab-separated Google Merchant feed?)")
    if len(set(header)) != len(header):
        raise FeedError("the header names a column twice")
    feed = ParsedFeed()
    seen: set[str] = set()
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        feed.rows += 1
        cells = line.split("\t")
        values = dict(zip(header, (cell.strip() for cell in cells), strict=False))
        if len(cells) != len(header):
            product, reasons = None, [f"{len(cells)} cells where the header has {len(header)}"]
        else:
            product, reasons = _row(values, sports)
        if product is not None and product["id"] in seen:
            product, reasons = None, ["this id came earlier in the feed"]
        if product is not None and len(feed.products) >= MAX_PRODUCTS:
            product, reasons = None, [f"the catalogue holds {MAX_PRODUCTS:,} products at most"]
        if product is None:
            feed.rejected_count += 1
            if len(feed.rejected) < MAX_REJECTS_REPORTED:
                feed.rejected.append({"line": number, "id": values.get("id", "")[:50] or None, "reasons": reasons})
            continue
        seen.add(product["id"])
        feed.products.append(product)
    return feed


def fingerprint(product: dict) -> str:
    """What tells a changed product from an unchanged one between two syncs."""
    return hashlib.sha256(json.dumps(product, sort_keys=True).encode()).hexdigest()[:24]
