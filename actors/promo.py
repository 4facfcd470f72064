"""Promotions with codes, and the list of those on offer.

A promotion's id is its code's prefix (``SPRING24``), so a code finds its promotion without an index:
single-use codes are ``SPRING24-7KQ2MX9P`` (each redeemed once), a shared code is ``SPRING24`` itself
(limited per athlete and in total). Redemptions are turns of the promotion's entity, one at a time,
so however many athletes try at once, no code goes twice and no limit is passed; a refused attempt
journals nothing. Bounded: ``MAX_CODES`` codes, ``MAX_TOTAL`` redemptions, ``MAX_OFFERS`` listed.
"""

from __future__ import annotations

import re

from actors.erasing import pseudonymise
from actors.events import PROMO_REDEEMED, PROMOTION_LISTED
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected
from engine.events import Event, To, react

__all__ = ["MAX_CODES", "MAX_TOTAL", "PROMO_ID", "PromoDirectory", "Promotion", "OFFERS", "split_code"]

MAX_CODES = 10_000
MAX_TOTAL = 100_000
MAX_OFFERS = 500
OFFERS = "offers"  # the one directory of offers
PROMO_ID = re.compile(r"^[A-Z0-9]{3,20}$")
_CODE = re.compile(r"^([A-Z0-9]{3,20})(?:-([A-Z0-9]{6,16}))?$")


def split_code(code: str) -> tuple[str, str | None] | None:
    """A code as ``(promotion id, single-use suffix or None)``; None for what is no code."""
    found = _CODE.match(code.strip().upper())
    return None if found is None else (found[1], found[2])


class Promotion(Entity):
    kind = "promotion"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.terms: dict | None = None  # title, description, discount, starts, expires, mode, per_user, total
        self.codes: dict[str, str | None] = {}  # single-use suffix -> who redeemed it
        self.used: dict[str, int] = {}  # athlete -> redemptions
        self.redeemed = 0
        self.ended = False

    def _require(self) -> dict:
        if self.terms is None:
            raise NotFound("no such promotion")
        return self.terms

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their redemptions stay counted, by the stand-in: a used code stays used, the totals stay right."""
        return pseudonymise(self, user_id, stand_in)

    @update
    def create(self, terms: dict, codes: list[str]) -> dict:
        if self.terms is not None:
            raise Rejected("a promotion with this code already exists")
        if terms["mode"] == "codes" and not 1 <= len(codes) <= MAX_CODES:
            raise Rejected(f"a promotion of single-use codes has 1 to {MAX_CODES:,}")
        if terms["mode"] == "shared" and (codes or not 1 <= terms["total"] <= MAX_TOTAL):
            raise Rejected(f"a shared code is redeemed 1 to {MAX_TOTAL:,} times in all")
        self.terms = terms
        self.codes = dict.fromkeys(codes)
        self._list()
        return self.card()

    @update
    def end(self) -> dict:
        self._require()
        self.ended = True
        self._list()
        return self.card()

    def _list(self) -> None:
        self.emit(PROMOTION_LISTED, promotion_id=self.id, directory=OFFERS, card=None if self.ended else self.card())

    @update
    def redeem(self, suffix: str | None, user_id: str) -> dict:
        if self.terms is None:
            raise NotFound("no such code")
        terms = self.terms
        if self.ended or self.now >= terms["expires"]:
            raise Rejected("this code has expired")
        if self.now < terms["starts"]:
            raise Rejected("this promotion has not started yet")
        if terms["mode"] == "codes":
            if suffix is None or suffix not in self.codes:
                raise NotFound("no such code")
            if self.codes[suffix] is not None:
                raise Rejected("this code was already used")
        elif suffix is not None:
            raise NotFound("no such code")
        if self.used.get(user_id, 0) >= terms["per_user"]:
            raise Rejected(f"you have used this promotion {terms['per_user']} time(s), its limit per athlete")
        if self.redeemed >= self._total():
            raise Rejected("this promotion is exhausted: every redemption is taken")
        if suffix is not None:
            self.codes[suffix] = user_id
        self.used[user_id] = self.used.get(user_id, 0) + 1
        self.redeemed += 1
        code = self.id if suffix is None else f"{self.id}-{suffix}"
        self.emit(PROMO_REDEEMED, promotion_id=self.id, user_id=user_id, code=code, discount=terms["discount"])
        return {"promotion_id": self.id, "code": code, "title": terms["title"], "discount": terms["discount"],
                "redeemed_at": self.now}  # fmt: skip

    def _total(self) -> int:
        terms = self._require()
        return len(self.codes) if terms["mode"] == "codes" else terms["total"]

    @query
    def card(self) -> dict:
        terms = self._require()
        public = {k: terms[k] for k in ("title", "description", "discount", "starts", "expires", "mode", "per_user")}
        return {"id": self.id, **public, "total": self._total(), "left": self._total() - self.redeemed,
                "ended": self.ended, "exclusive": bool(terms.get("exclusive"))}  # fmt: skip

    @query
    def mine(self, user_id: str) -> int:
        return self.used.get(user_id, 0)

    @query
    def code_list(self) -> dict:
        """Every single-use code and whether it went (the promotion's managers hand them out)."""
        self._require()
        return {"codes": [{"code": f"{self.id}-{s}", "redeemed": who is not None} for s, who in self.codes.items()],
                "redeemed": self.redeemed}  # fmt: skip


class PromoDirectory(Entity):
    kind = "promo_directory"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.offers: dict[str, dict] = {}

    @react(PROMOTION_LISTED, to=To.field("directory"))
    def on_listed(self, event: Event) -> None:
        card = event.fields["card"]
        promotion_id = event.fields["promotion_id"]
        if card is None:
            self.offers.pop(promotion_id, None)
            return
        self.offers[promotion_id] = card
        while len(self.offers) > MAX_OFFERS:  # the one ending first leaves
            del self.offers[min(self.offers, key=lambda p: self.offers[p]["expires"])]

    @query
    def current(self, at: float) -> list[dict]:
        """Offers running at ``at``, the one ending soonest first."""
        live = [o for o in self.offers.values() if o["starts"] <= at < o["expires"]]
        return sorted(live, key=lambda o: (o["expires"], o["id"]))
