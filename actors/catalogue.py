"""The brand's catalogue, kept from its product feed: products by id, and the report of each sync.

A sync is computed by the API from the feed and this entity's fingerprints, and arrives as a delta
(new or changed products, ids removed) against the version it was computed from; a sync computed
against an older version is refused, so two syncs at once cannot undo each other. Bounded by the
feed's ``MAX_PRODUCTS`` (20,000) and the last ``_REPORTS`` reports.
"""

from __future__ import annotations

from actors.events import GEAR_SUGGESTED, GEAR_WORN
from engine.commerce.feed import MAX_PRODUCTS
from engine.commerce.suggestions import suggest
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected
from engine.events import Event, To, react

__all__ = ["Catalogue"]

_REPORTS = 20
_LISTED = ("id", "title", "brand", "price", "currency", "link", "image", "availability", "gear_type", "component",
           "sports")  # fmt: skip


class Catalogue(Entity):
    kind = "catalogue"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.products: dict[str, dict] = {}
        self.prints: dict[str, str] = {}  # product id -> fingerprint of what is stored
        self.version = 0
        self.reports: list[dict] = []  # newest first

    @query
    def fingerprints(self) -> dict:
        return {"version": self.version, "prints": self.prints}

    @update
    def apply_sync(self, base: int, upserts: list[dict], prints: dict[str, str], removed: list[str],
                   report: dict) -> dict:  # fmt: skip
        if base != self.version:
            raise Rejected("the catalogue changed while this sync was computed; run it again")
        if len(self.products) + len(upserts) - len(removed) > MAX_PRODUCTS:
            raise Rejected(f"the catalogue holds {MAX_PRODUCTS:,} products at most")
        for product_id in removed:
            self.products.pop(product_id, None)
            self.prints.pop(product_id, None)
        for product in upserts:
            self.products[product["id"]] = product
            self.prints[product["id"]] = prints[product["id"]]
        self.version += 1
        report = {**report, "version": self.version, "at": self.now, "products": len(self.products)}
        self.reports.insert(0, report)
        del self.reports[_REPORTS:]
        return report

    @query
    def sync_reports(self) -> list[dict]:
        return self.reports

    @query
    def product(self, product_id: str) -> dict:
        product = self.products.get(product_id)
        if product is None:
            raise NotFound("no such product")
        return product

    @query
    def browse(self, gear_type: str | None = None, sport: str | None = None, limit: int = 50,
               after: str | None = None) -> dict:  # fmt: skip
        limit = max(1, min(int(limit), 100))
        chosen = []
        for product_id in sorted(self.products):
            if after is not None and product_id <= after:
                continue
            product = self.products[product_id]
            if gear_type is not None and product["gear_type"] != gear_type:
                continue
            if sport is not None and sport not in product["sports"]:
                continue
            chosen.append({k: product[k] for k in _LISTED})
            if len(chosen) > limit:
                break
        more = len(chosen) > limit
        return {"items": chosen[:limit], "next": chosen[limit - 1]["id"] if more else None}

    @query
    def suggestions(self, gear: dict, limit: int = 3) -> list[dict]:
        return [{k: p[k] for k in _LISTED} for p in suggest(self.products.values(), gear, limit)]

    @react(GEAR_WORN, to=To.field("catalogue"))
    def on_gear_worn(self, event: Event) -> None:
        """Choose the worn item's replacements now, so the athlete's warning carries them."""
        fields = event.fields
        gear = fields["gear"]
        chosen = self.suggestions({"type": gear["type"], "component": gear["component"], "sports": gear["sports"],
                                   "price": gear["price"], "brand": gear["brand"]})  # fmt: skip
        self.emit(GEAR_SUGGESTED, user_id=fields["user_id"], gear_id=fields["gear_id"], gear=gear,
                  suggestions=[{k: p[k] for k in ("id", "title", "brand", "price", "currency", "link")}
                               for p in chosen])  # fmt: skip
