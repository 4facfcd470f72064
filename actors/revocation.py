"""Revoked access tokens, sessions and users: the durable list every API replica follows.

Only used when Arena runs without Redis: each replica keeps a copy in memory and asks
``since(version)`` about once a second for what changed, so checking a token costs no
call. Entries die with the longest-lived access token they could concern.
"""

from __future__ import annotations

from engine.entity import Entity, query, update
from engine.errors import Rejected

__all__ = ["RevocationList"]

_PREFIXES = ("jti:", "sid:", "user:")


class RevocationList(Entity):
    kind = "revocations"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.version = 0
        self.entries: dict[str, list] = {}  # key → [until, before, version]

    @update
    def revoke(self, key: str, until: float, before: float | None = None) -> int:
        if not isinstance(key, str) or not key.startswith(_PREFIXES) or len(key) > 200:
            raise Rejected("a revocation key is jti:…, sid:… or user:…")
        self.entries = {k: v for k, v in self.entries.items() if v[0] > self.now}
        self.version += 1
        old = self.entries.get(key)
        if old is not None and before is not None and old[1] is not None:
            before = max(before, old[1])
            until = max(until, old[0])
        self.entries[key] = [until, before, self.version]
        return self.version

    @query
    def since(self, version: int = 0) -> dict:
        """What changed after ``version`` (everything still in force when the caller is older than the list)."""
        return {
            "version": self.version,
            "entries": {k: v[:2] for k, v in self.entries.items() if v[2] > version and v[0] > self.now},
        }
