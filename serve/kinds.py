"""The entity kinds Arena hosts, by import path (hosts import them in their own process)."""

from __future__ import annotations

__all__ = ["KINDS"]

KINDS: tuple[str, ...] = (
    "actors.account:Account",
    "actors.email:EmailClaim",
    "actors.workout:Workout",
    "actors.feed:Feed",
    "actors.inbox:Inbox",
    "actors.race:Race",
    "actors.race:RaceRef",
    "actors.race:RaceIndex",
    "actors.race:RaceEntries",
    "actors.device:Device",
    "actors.device:DeviceOwner",
    "actors.audit:AuditDay",
    "actors.revocation:RevocationList",
)
