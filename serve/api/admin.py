"""Administration: the security audit log (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from actors.audit import AuditDay
from serve.access_log import record_reads
from serve.audit import audit_day
from serve.context import ArenaDep, CallerDep
from serve.pagination import Cursor, Limit, paged
from serve.problems import Problem

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"])

Day = Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC day, YYYY-MM-DD (default: today)")]
Event = Annotated[
    str | None, Query(max_length=64, pattern=r"^[a-z_]+(\.[a-z_]*)?$", description="one event, or a prefix like auth.")
]


@router.get("/audit", summary="Security events of one day, newest first (admins)")
async def audit_log(
    caller: CallerDep, arena: ArenaDep, day: Day = None, event: Event = None, cursor: Cursor = None, limit: Limit = 50
) -> dict:
    if "admin" not in caller.roles:
        raise Problem(403, "only an admin may read the audit log")
    day = day or audit_day()
    page = await paged(arena.ref(AuditDay, day), AuditDay.read, cursor, limit, event=event)
    subjects = [entry.get(name) for entry in page["items"] for name in ("actor", "subject", "user_id")]
    await record_reads(arena, caller, subjects, "audit log", day)  # docs/privacy.md
    return {"day": day, **page}
