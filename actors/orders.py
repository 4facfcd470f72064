"""One order of the brand's shop as its webhook told it: recorded once, whatever the shop retries.

The entity's id is a digest of the shop's order id, so every delivery of one order reaches the same
entity, which records the first and answers every later one as a duplicate: the purchase's effects
(``shop.purchased``: the gear joins the athlete's equipment) happen once.
"""

from __future__ import annotations

from actors.erasing import pseudonymise
from actors.events import SHOP_PURCHASED
from engine.entity import Entity, query, update
from engine.errors import NotFound

__all__ = ["ShopOrder"]


class ShopOrder(Entity):
    kind = "shop_order"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.order: dict | None = None
        self.deliveries = 0  # how many times the shop sent it

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Kept for the books (an order is an accounting record; the shop holds no address or name here):
        the buyer becomes the stand-in, the lines and total stay."""
        return pseudonymise(self, user_id, stand_in)

    @update
    def record(self, order: dict, user_id: str | None) -> dict:
        """``order``: id, lines, total, currency, signed_at. ``user_id``: the athlete the click id names."""
        self.deliveries += 1
        if self.order is not None:
            return {"order_id": self.order["id"], "duplicate": True, "attributed": self.order["user_id"] is not None}
        self.order = {**order, "user_id": user_id, "received": self.now}
        if user_id is not None:
            self.emit(SHOP_PURCHASED, order_id=order["id"], user_id=user_id, lines=order["lines"],
                      total=order["total"], currency=order["currency"], catalogue="shop")  # fmt: skip
        return {"order_id": order["id"], "duplicate": False, "attributed": user_id is not None}

    @query
    def status(self) -> dict:
        if self.order is None:
            raise NotFound("no such order")
        return {**self.order, "deliveries": self.deliveries}
