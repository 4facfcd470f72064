"""Recording the reads of other people's data through admins' and organizers' tools (``actors/access_log.py``).

A tool that shows other people's personal data calls ``record_reads`` with whose data it is about to
answer with, before it answers: each of them (an existing account other than the reader) gets one
entry in their access log, durable before the reader sees anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from actors.access_log import AccessLog
from actors.account import Account
from engine.errors import EngineError
from serve.auth import Caller
from serve.context import Arena

__all__ = ["record_reads"]


async def record_reads(arena: Arena, reader: Caller, subjects: Iterable[object], what: str, where: str) -> None:
    """Log that ``reader`` read ``what`` (``where``: the race, event, group or day) of each subject."""
    ids = sorted({s for s in subjects if isinstance(s, str) and s and s != reader.id})
    if not ids:
        return
    known = await arena.cluster.deliver([(Account.kind, s, "exists", None, None) for s in ids])
    people = [s for s, exists in zip(ids, known) if exists is True]
    role = "admin" if "admin" in reader.roles else "organizer" if "organizer" in reader.roles else "member"
    entry = {"at": time.time(), "by": reader.id, "role": role, "what": what, "where": where}
    answers = await arena.cluster.deliver([(AccessLog.kind, s, "record", {"entry": entry}, None) for s in people])
    failed = [a for a in answers if isinstance(a, EngineError)]
    if failed:  # the read is not answered unless it is logged
        raise failed[0]
