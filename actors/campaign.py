"""A marketing campaign (news or an offer): its message, its targeting, its local send time.

The campaign holds no recipients: ``campaign.scheduled`` reaches every audience shard
(``actors/campaign_audience.py``), and each schedules and delivers its own slice of users, so a
campaign to a million costs this entity nothing more than one to ten.
"""

from __future__ import annotations

import zlib

from actors.erasing import pseudonymise
from actors.events import CAMPAIGN_SCHEDULED
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected

__all__ = ["Campaign", "SHARDS", "audience_shard"]

SHARDS = 64  # the audience's slices, by a hash of the user id (docs/commerce.md)


def audience_shard(user_id: str) -> str:
    return f"a{zlib.crc32(user_id.encode()) % SHARDS:02d}"


class Campaign(Entity):
    kind = "campaign"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.spec: dict | None = None  # message, target, send_at, created_by, created_at
        self.cancelled = False

    def _require(self) -> dict:
        if self.spec is None:
            raise NotFound("no such campaign")
        return self.spec

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """A campaign they created (an admin) stays, created by the stand-in."""
        return pseudonymise(self, user_id, stand_in)

    @update
    def create(self, spec: dict) -> dict:
        if self.spec is not None:
            raise Rejected("this campaign exists already")
        self.spec = {**spec, "created_at": self.now}
        self.emit(CAMPAIGN_SCHEDULED, campaign_id=self.id, spec=self.spec)
        return self.card()

    @update
    def cancel(self) -> dict:
        self._require()
        self.cancelled = True
        return self.card()

    @query
    def card(self) -> dict:
        return {"id": self.id, **self._require(), "cancelled": self.cancelled}

    @query
    def shards(self) -> list[str]:
        """Every audience shard: ``campaign.scheduled`` goes to each."""
        return [f"a{i:02d}" for i in range(SHARDS)] if self.spec is not None else []
