"""The security audit log: one entity per UTC day, append-only, bounded.

What happened (sign-ins, failures against real accounts, lockouts, revocations,
role changes, organizer decisions), who did it, to whom, from which address. Never
a password, a token or a hash: the API writes only what ``serve.audit`` lets through.
"""

from __future__ import annotations

from typing import Any

from actors.paging import page
from engine.entity import Entity, query, update

__all__ = ["AuditDay", "AUDIT_DAY_LIMIT"]

AUDIT_DAY_LIMIT = 50_000  # entries kept per day; past it an attack flood is counted, not stored


class AuditDay(Entity):
    kind = "audit"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.entries: list[dict] = []  # oldest first
        self.dropped: dict[str, int] = {}

    @update
    def record(
        self,
        entry_id: str,
        event: str,
        actor: str | None = None,
        subject: str | None = None,
        address: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        if len(self.entries) >= AUDIT_DAY_LIMIT:
            self.dropped[event] = self.dropped.get(event, 0) + 1
            return
        self.entries.append(
            {
                "id": entry_id,
                "at": self.now,
                "event": event,
                "actor": actor,
                "subject": subject,
                "address": address,
                "details": details or {},
            }
        )

    @query
    def read(self, before: list | None = None, limit: int = 50, event: str | None = None) -> dict:
        """Newest first, optionally one event type (or a prefix ending in ``.``)."""
        chosen = self.entries[::-1]
        if event:
            match = (lambda e: e.startswith(event)) if event.endswith(".") else (lambda e: e == event)
            chosen = [e for e in chosen if match(e["event"])]
        return {**page(chosen, before, limit), "dropped": self.dropped}
