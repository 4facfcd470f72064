"""The brand's partner offers shown on event pages (``all``): lodging and travel from an admin-uploaded
list, each with the partner's name for attribution and an optional place and reach, so an event
page shows the offers near its venue (and those with no place everywhere). Arena takes no
booking: the page links out through a signed link (docs/sport-events.md, "Partners").

Bounded: ``OFFERS_MOST`` offers; an upload replaces the whole list.
"""

from __future__ import annotations

from actors.places import distance_km
from engine.entity import Entity, query, update
from engine.errors import Rejected

__all__ = ["PartnerOffers", "OFFERS_MOST", "SHOWN_MOST"]

OFFERS_MOST = 500
SHOWN_MOST = 20


class PartnerOffers(Entity):
    kind = "partner_offers"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.offers: list[dict] = []
        self.updated_at: float | None = None

    @update
    def replace(self, offers: list[dict]) -> dict:
        """The whole list (the API's model checks each offer's fields); ids are unique."""
        if len(offers) > OFFERS_MOST:
            raise Rejected(f"at most {OFFERS_MOST} offers")
        if len({offer["id"] for offer in offers}) != len(offers):
            raise Rejected("each offer has its own id")
        self.offers, self.updated_at = offers, self.now
        return {"offers": len(offers), "updated_at": self.updated_at}

    @query
    def find(self, offer_id: str) -> dict | None:
        return next((offer for offer in self.offers if offer["id"] == offer_id), None)

    @query
    def near(self, venue: list[float] | None) -> list[dict]:
        """The offers for an event at ``venue`` (online: those with no place), nearest first."""
        shown = []
        for offer in self.offers:
            if offer["lat"] is None:
                shown.append((float("inf"), offer))
            elif venue is not None:
                away = distance_km(venue, (offer["lat"], offer["lon"]))
                if away <= offer["radius_km"]:
                    shown.append((away, offer))
        shown.sort(key=lambda pair: (pair[0], pair[1]["id"]))
        return [offer for _, offer in shown[:SHOWN_MOST]]
