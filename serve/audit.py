"""Writing the security audit log (``actors.audit``): one call per security event.

Events are named ``area.what`` (``auth.login``, ``auth.login_failed``, ``race.disqualify``).
Details are checked here so nothing secret reaches the log: keys that name a secret are
refused outright, values are short scalars. Writing is durable (journaled) but never
fails the request that caused it: a lost audit entry is logged as an error instead.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from actors.audit import AuditDay

__all__ = ["audit", "audit_day"]

log = logging.getLogger("arena.audit")

_SECRET_WORDS = ("password", "token", "secret", "hash", "credential")
_MAX_VALUE = 200


def audit_day(at: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if at is None else at))


def _clean(details: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if any(word in key.lower() for word in _SECRET_WORDS):
            raise ValueError(f"audit details must not carry secrets: {key!r}")
        if value is None or isinstance(value, bool | int | float):
            clean[key] = value
        elif isinstance(value, list | tuple):
            clean[key] = [str(v)[:_MAX_VALUE] for v in value[:20]]
        else:
            clean[key] = str(value)[:_MAX_VALUE]
    return clean


async def audit(
    arena: Any,
    event: str,
    *,
    actor: str | None = None,
    subject: str | None = None,
    address: str | None = None,
    **details: Any,
) -> None:
    """Record one security event in today's audit entity (and the structured log)."""
    clean = _clean(details)
    log.info("audit %s actor=%s subject=%s address=%s %s", event, actor, subject, address, clean)
    try:
        await arena.ref(AuditDay, audit_day()).ask(
            AuditDay.record,
            entry_id=uuid.uuid4().hex,
            event=event,
            actor=actor,
            subject=subject,
            address=address,
            details=clean,
        )
    except Exception as error:  # the action itself stands; the log line above keeps the event
        log.error("audit entry %s not stored: %s", event, error)
