"""Who read a person's data with an admin's or an organizer's tool (HIPAA's access logging; docs/privacy.md).

One entity per person, keyed by their account id: the reads of their data by someone else through a
tool that shows other people's personal data (the audit log, a race's fair-play flags, an event's
registrations, a group's requests and bans). The person sees it (``GET /me/access-log``) and it is in
their export; it goes with their account.
"""

from __future__ import annotations

from actors.erasing import pseudonymise
from actors.paging import page
from engine.entity import Entity, query, update
from engine.errors import Rejected

__all__ = ["AccessLog", "KEPT"]

KEPT = 5_000  # the newest reads kept per person; older ones go (docs/privacy.md, retention)
_FIELDS = {"at", "by", "role", "what", "where"}


class AccessLog(Entity):
    kind = "access_log"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.entries: list[dict] = []  # oldest first
        self.dropped = 0

    @update
    def record(self, entry: dict) -> None:
        if not isinstance(entry, dict) or set(entry) != _FIELDS:
            raise Rejected(f"an access is {{{', '.join(sorted(_FIELDS))}}}")
        self.entries.append({**entry, "id": f"{self.dropped + len(self.entries):09d}"})
        if len(self.entries) > KEPT:
            self.dropped += len(self.entries) - KEPT
            del self.entries[: len(self.entries) - KEPT]

    @query
    def read(self, before: list | None = None, limit: int = 50) -> dict:
        return page(self.entries[::-1], before, limit)

    @query
    def all(self) -> list[dict]:
        return self.entries

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Theirs: it goes. A reader erased: the reads stay, the reader becomes the stand-in (the person
        keeps the right to know their data was read)."""
        if user_id in self.id:
            return True
        return pseudonymise(self, user_id, stand_in)
