"""Opaque cursors for keyset pagination: base64url of the last item's key."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import Query

from serve.problems import Problem

__all__ = ["Cursor", "Limit", "encode_cursor", "decode_cursor", "paged"]

Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=100)]

_MAX_CURSOR = 512


def encode_cursor(key: list | None) -> str | None:
    if key is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list | None:
    if cursor is None or cursor == "":
        return None
    if len(cursor) > _MAX_CURSOR:
        raise Problem(400, "the cursor is not one this API issued")
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise Problem(400, "the cursor is not one this API issued") from None
    if not (isinstance(key, list) and len(key) == 2 and isinstance(key[0], int | float) and isinstance(key[1], str)):
        raise Problem(400, "the cursor is not one this API issued")
    return key


async def paged(
    arena: Any, kind: str, entity_id: str, message_type: str, cursor: str | None, limit: int, **body
) -> dict:
    """Ask an entity for one keyset page and answer it with an opaque ``next_cursor``."""
    page = await arena.ask(kind, entity_id, message_type, {"before": decode_cursor(cursor), "limit": limit, **body})
    following = page.pop("next")
    return {**page, "next_cursor": encode_cursor(following)}
