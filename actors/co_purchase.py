"""Which products athletes bought together: the co-purchase index behind product recommendations.

Reacts to ``shop.purchased``. Each buyer's basket (what they bought through Arena, newest last)
pairs every newly bought product with the others in it, so a pair counts the athletes who bought
both, once each. A product keeps its ``MAX_NEIGHBOURS`` most frequent partners (a new pair displaces
the least counted); the index keeps the ``MAX_BUYERS`` buyers who bought last, ``MAX_BASKET`` products
each. Bounded: at most 20,000 products (the catalogue's bound) × ``MAX_NEIGHBOURS`` counts, and
``MAX_BUYERS`` × ``MAX_BASKET`` ids (docs/models.md, "Products").
"""

from __future__ import annotations

from actors.events import SHOP_PURCHASED
from engine.entity import Entity, query, update
from engine.events import Event, To, react

__all__ = ["CoPurchase", "INDEX_ID", "MAX_BASKET", "MAX_BUYERS", "MAX_NEIGHBOURS"]

INDEX_ID = "shop"
MAX_NEIGHBOURS = 20
MAX_BUYERS = 10_000
MAX_BASKET = 20
_ASKED = 200  # products one question may name: an athlete's gear is at most 200 items


class CoPurchase(Entity):
    kind = "co_purchase"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.baskets: dict[str, list[str]] = {}  # user id -> products bought, oldest first
        self.pairs: dict[str, dict[str, int]] = {}  # product -> partner -> athletes who bought both

    @react(SHOP_PURCHASED, to=To.field("catalogue"))
    def on_purchased(self, event: Event) -> None:
        user_id = event.fields["user_id"]
        basket = self.baskets.pop(user_id, [])
        self.baskets[user_id] = basket  # the newest buyer last: the oldest leave first
        for line in event.fields["lines"]:
            product = line.get("product_id")
            if not isinstance(product, str) or product in basket:
                continue  # a product bought again counts its pairs once
            for other in basket:
                self._count(product, other)
                self._count(other, product)
            basket.append(product)
        del basket[:-MAX_BASKET]
        while len(self.baskets) > MAX_BUYERS:
            del self.baskets[next(iter(self.baskets))]

    def _count(self, product: str, other: str) -> None:
        partners = self.pairs.setdefault(product, {})
        if other not in partners and len(partners) >= MAX_NEIGHBOURS:
            del partners[min(partners, key=lambda p: partners[p])]  # the least counted, the oldest of equals
        partners[other] = partners.get(other, 0) + 1

    @query
    def bought(self, user_id: str) -> list[str]:
        return list(self.baskets.get(user_id, ()))

    @query
    def together(self, products: list[str], limit: int = 20) -> list[dict]:
        """Products bought by athletes who bought one of ``products``, the most such athletes first;
        each with the product of ``products`` it was bought with most."""
        asked = set(products[:_ASKED])
        found: dict[str, dict] = {}
        for product in asked:
            for other, count in self.pairs.get(product, {}).items():
                if other in asked:
                    continue
                entry = found.setdefault(other, {"id": other, "athletes": 0, "with": product, "_best": 0})
                entry["athletes"] += count
                if count > entry["_best"]:
                    entry["with"], entry["_best"] = product, count
        ranked = sorted(found.values(), key=lambda e: (-e["athletes"], e["id"]))[: max(1, min(int(limit), 100))]
        return [{k: v for k, v in e.items() if k != "_best"} for e in ranked]

    @update
    def forget(self, user_id: str) -> None:
        """Erasure: the buyer's basket goes; the anonymous counts it made stay."""
        self.baskets.pop(user_id, None)
