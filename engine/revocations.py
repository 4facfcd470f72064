"""Revoked access tokens: one token (by id), one session (every token of a sign-in), or a
user's every token issued before an instant (password change). Entries expire with the
longest-lived access token they could concern."""

from __future__ import annotations

from typing import Protocol

__all__ = ["Revocations"]


class Revocations(Protocol):
    async def revoke_token(self, jti: str, ttl: float) -> None: ...

    async def revoke_session(self, sid: str, ttl: float) -> None: ...

    async def revoke_user(self, user_id: str, before: float, ttl: float) -> None: ...

    async def is_revoked(self, jti: str, sid: str, user_id: str, issued_at: float) -> bool: ...

    async def aclose(self) -> None: ...
