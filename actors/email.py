"""The email index: one entity per normalised address, holding whose it is."""

from __future__ import annotations

from engine.entity import Entity, query, update
from engine.errors import Rejected

__all__ = ["EmailClaim"]


class EmailClaim(Entity):
    kind = "email"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.user_id: str | None = None

    @update
    def claim(self, user_id: str, replace: str | None = None) -> str:
        """Take the address for ``user_id``; ``replace`` names an owner that never finished signing up."""
        if self.user_id not in (None, user_id, replace):
            raise Rejected("this email address is already registered")
        self.user_id = user_id
        return user_id

    @query
    def owner(self) -> str | None:
        return self.user_id

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """The address is the person's: it goes whole, and may be registered again."""
        return True
