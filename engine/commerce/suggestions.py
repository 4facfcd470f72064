"""Replacement suggestions by content rules: same kind of gear, for the same sport, at a similar price."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PRICE_BAND", "suggest"]

PRICE_BAND = (0.7, 1.5)  # a replacement costs 70% to 150% of what the worn item did, when that is known


def suggest(products: Iterable[dict], gear: dict, limit: int = 3) -> list[dict]:
    """Products in stock of the gear's type (and part), for one of its sports, nearest its price first.

    ``gear`` has ``type``, ``component``, ``sports`` and ``price`` (minor units, or None).
    """
    price = gear.get("price")
    wanted_sports = set(gear.get("sports") or ())
    chosen = []
    for product in products:
        if product["availability"] not in ("in_stock", "preorder"):
            continue
        if product["gear_type"] != gear["type"] or product["component"] != gear.get("component"):
            continue
        if wanted_sports and product["sports"] and not wanted_sports & set(product["sports"]):
            continue
        if price and not PRICE_BAND[0] * price <= product["price"] <= PRICE_BAND[1] * price:
            continue
        chosen.append(product)
    chosen.sort(key=lambda p: (abs(p["price"] - price) if price else 0, p["brand"] != gear.get("brand"), p["id"]))
    return chosen[:limit]
