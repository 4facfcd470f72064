"""Revoked access tokens: one token (by id), one session (every token of a sign-in), or a
user's every token issued before an instant (password change). Entries expire with the
longest-lived access token they could concern."""

from __future__ import annotations

import hashlib
from typing import Protocol

__all__ = ["Revocations", "user_key"]


def user_key(user_id: str) -> str:
    """What a user's revocation is kept under: a digest, not the id, so an erased person's last revocation
    (their tokens die at the erasure) names nobody while it waits out the tokens' lifetime."""
    return "user:" + hashlib.sha256(user_id.encode()).hexdigest()[:32]


class Revocations(Protocol):
    async def revoke_token(self, jti: str, ttl: float) -> None: ...

    async def revoke_session(self, sid: str, ttl: float) -> None: ...

    async def revoke_user(self, user_id: str, before: float, ttl: float) -> None: ...

    async def is_revoked(self, jti: str, sid: str, user_id: str, issued_at: float) -> bool: ...

    async def aclose(self) -> None: ...
