"""Opaque cursors for keyset pagination: base64url of the last item's key."""

from __future__ import annotations

import base64
import json

from serve.problems import Problem

__all__ = ["encode_cursor", "decode_cursor"]

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
