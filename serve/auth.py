"""Passwords (argon2id), access tokens (JWT) and rotating refresh tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["Passwords", "Tokens", "Caller", "RefreshToken", "InvalidToken"]


_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidToken(Exception):
    pass


class Passwords:
    """argon2id; hashing runs in a worker thread so the event loop keeps serving."""

    def __init__(self, time_cost: int = 2, memory_cost: int = 19_456, parallelism: int = 1) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
        # Checked when the account does not exist, so both answers take as long.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(password_hash or self._decoy, password) and password_hash is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)


@dataclass(frozen=True, slots=True)
class Caller:
    id: str
    roles: tuple[str, ...]
    jti: str
    family: str
    issued_at: float
    expires: float

    def has(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


@dataclass(frozen=True, slots=True)
class RefreshToken:
    user_id: str
    family: str
    secret_hash: str

    @staticmethod
    def hash(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()


class Tokens:
    def __init__(self, secret: str, *, access_ttl: float = 900, refresh_ttl: float = 30 * 86_400) -> None:
        if len(secret) < 32:
            raise ValueError("the token signing secret needs at least 32 characters")
        self._secret = secret
        # A key of its own for refresh-token MACs, derived so one secret setting serves both.
        self._refresh_key = hmac.new(secret.encode(), b"arena refresh tokens", hashlib.sha256).digest()
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def access(self, user_id: str, roles: list[str], family: str, now: float | None = None) -> tuple[str, float]:
        issued = time.time() if now is None else now
        expires = issued + self.access_ttl
        claims = {
            "sub": user_id,
            "roles": roles,
            "sid": family,
            "jti": uuid.uuid4().hex,
            "iat": issued,
            "exp": expires,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256"), expires

    def caller(self, token: str) -> Caller:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=["HS256"], options={"require": ["sub", "exp", "iat", "jti", "sid"]}
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(f"the access token is not valid: {error}") from None
        roles = claims.get("roles")
        if not isinstance(claims["sub"], str) or not isinstance(roles, list):
            raise InvalidToken("the access token is not valid: malformed claims")
        return Caller(
            claims["sub"], tuple(roles), claims["jti"], str(claims.get("sid", "")), claims["iat"], claims["exp"]
        )

    def refresh(self, user_id: str, family: str | None = None) -> tuple[str, RefreshToken]:
        """A new refresh token ``user.family.secret.mac`` and what the account stores of it.

        The MAC lets the API refuse a made-up token before it touches any account: only a
        token this deployment issued reaches the engine (and may write there).
        """
        family = family or uuid.uuid4().hex
        secret = secrets.token_urlsafe(32)
        body = f"{user_id}.{family}.{secret}"
        return f"{body}.{self._mac(body)}", RefreshToken(user_id, family, RefreshToken.hash(secret))

    def parse_refresh(self, token: str) -> RefreshToken:
        parts = token.split(".") if len(token) < 512 else []
        if len(parts) != 4 or not all(_ID.fullmatch(part) for part in parts):
            raise InvalidToken("the refresh token is not valid")
        user_id, family, secret, mac = parts
        if not hmac.compare_digest(mac, self._mac(f"{user_id}.{family}.{secret}")):
            raise InvalidToken("the refresh token is not valid")
        return RefreshToken(user_id, family, RefreshToken.hash(secret))

    def _mac(self, body: str) -> str:
        digest = hmac.new(self._refresh_key, body.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
