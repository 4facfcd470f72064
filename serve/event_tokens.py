"""Signed tokens of organizers' events (HMAC-SHA256, like the shop's click ids): the ticket an athlete's
QR code carries for check-in, and the secret of their iCalendar feed link.

A ticket is ``t.<event>.<registration>.<mac>``: it names one registration and nothing else, so a
forged, altered or other event's ticket is refused before any entity is asked. A calendar token is
``c.<user>.<version>.<mac>``: the version is kept by the athlete's ``SportEventEntries``, so rotating
it revokes every link handed out before. Neither expires; both are compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

__all__ = ["BadToken", "make_ticket", "read_ticket", "make_calendar_token", "read_calendar_token", "TOKEN_LENGTH"]

TOKEN_LENGTH = 256
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class BadToken(ValueError):
    """Why a token is refused (said to the sender)."""


def _mac(secret: str, message: str) -> str:
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode()


def _sign(secret: str, kind: str, first: str, second: str) -> str:
    return f"{kind}.{first}.{second}.{_mac(secret, f'{kind}:{first}:{second}')}"


def _read(secret: str, kind: str, token: str) -> tuple[str, str]:
    if not isinstance(token, str) or len(token) > TOKEN_LENGTH or not token.isascii():
        raise BadToken("not a token this Arena issued")
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != kind or not _ID.fullmatch(parts[1]) or not _ID.fullmatch(parts[2]):
        raise BadToken("not a token this Arena issued")
    if not hmac.compare_digest(_mac(secret, f"{kind}:{parts[1]}:{parts[2]}"), parts[3]):
        raise BadToken("the token's signature does not match")
    return parts[1], parts[2]


def make_ticket(secret: str, event_id: str, registration_id: str) -> str:
    return _sign(secret, "t", event_id, registration_id)


def read_ticket(secret: str, token: str) -> tuple[str, str]:
    """``(event id, registration id)`` of a ticket this Arena signed, or ``BadToken``."""
    return _read(secret, "t", token)


def make_calendar_token(secret: str, user_id: str, version: int) -> str:
    return _sign(secret, "c", user_id, str(version))


def read_calendar_token(secret: str, token: str) -> tuple[str, int]:
    """``(user id, version)`` of a calendar token this Arena signed, or ``BadToken``."""
    user_id, version = _read(secret, "c", token)
    if not version.isdigit() or len(version) > 9:
        raise BadToken("not a token this Arena issued")
    return user_id, int(version)
