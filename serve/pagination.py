"""Opaque cursors for keyset pagination: base64url of the last item's key.

A cursor comes back from the client, so it is read as hostile input: exactly
``[time, id]``, the time a finite number of unix seconds under 10^12 either way,
the id of the entity id alphabet. Anything else is a 400 before an entity is asked.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Annotated, Concatenate, ParamSpec, TypeVar

from fastapi import Query

from engine.entity import Entity
from engine.refs import Ref
from serve.problems import Problem

__all__ = ["Cursor", "Limit", "encode_cursor", "decode_cursor", "paged"]

Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=100)]

E = TypeVar("E", bound=Entity)
P = ParamSpec("P")

_MAX_CURSOR = 512
_BOUND = 1e12  # unix seconds, past any date Python shows (year 9999 ends near 2.5e11), in msgpack's int64
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,160}")  # entity ids, and race results' "<race>-<athlete>"


def encode_cursor(key: list | None) -> str | None:
    if key is None:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> list | None:
    if cursor is None or cursor == "":
        return None
    key = _key(cursor) if len(cursor) <= _MAX_CURSOR else None
    if key is None:
        raise Problem(400, "the cursor is not one this API issued")
    return key


def _key(cursor: str) -> list | None:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), parse_constant=_no_constant)
    except (ValueError, UnicodeError, binascii.Error, RecursionError):
        return None
    if not (isinstance(key, list) and len(key) == 2):
        return None
    at, entity_id = key
    if isinstance(at, bool) or not isinstance(at, int | float) or not -_BOUND <= at <= _BOUND:  # NaN too
        return None
    if not isinstance(entity_id, str) or not _KEY_ID.fullmatch(entity_id):
        return None
    return key


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a cursor holds")


async def paged(
    to: Ref[E],
    handler: Callable[Concatenate[E, P], dict],
    cursor: str | None,
    limit: int,
    /,
    *args: P.args,
    **fields: P.kwargs,
) -> dict:
    """Ask an entity for one keyset page and answer it with an opaque ``next_cursor``."""
    # every paged handler takes `before` and `limit`; P cannot say so, so mypy cannot see it
    page = await to.ask(handler, *args, before=decode_cursor(cursor), limit=limit, **fields)  # type: ignore[arg-type]
    following = page.pop("next")
    return {**page, "next_cursor": encode_cursor(following)}
