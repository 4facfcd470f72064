"""HMAC-SHA256 signatures: the shop's webhooks (Stripe's ``t=...,v1=...`` scheme) and Arena's click ids."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

__all__ = ["BadSignature", "TOLERANCE_S", "make_click", "read_click", "sign_webhook", "verify_webhook"]

TOLERANCE_S = 300  # a webhook signed more than 5 minutes before (or after) now is refused: a replay
_MAX_HEADER = 1_024


class BadSignature(ValueError):
    """Why a signature or a click id is not accepted (said to the sender, never the expected value)."""


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def sign_webhook(secret: str, body: bytes, t: int) -> str:
    """The header value a sender puts on ``body`` at unix time ``t``."""
    return f"t={t},v1={_mac(secret, f'{t}.'.encode() + body).hex()}"


def verify_webhook(
    secrets: list[str], header: str | None, body: bytes, now: float, tolerance: int = TOLERANCE_S
) -> int:
    """Check ``header`` (``t=<unix>,v1=<hex>[,v1=<hex>...]``) over the raw ``body``; the signed time.

    Any of ``secrets`` may have signed it (a rotation keeps the old one for a while), and any ``v1``
    may match. Compared in constant time.
    """
    if not header:
        raise BadSignature("the signature header is missing")
    if len(header) > _MAX_HEADER:
        raise BadSignature("the signature header is too long")
    stamp: int | None = None
    signatures: list[bytes] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:  # not "²" or "١"
            stamp = int(value)
        elif name == "v1":
            try:
                signatures.append(bytes.fromhex(value))
            except ValueError:
                raise BadSignature("a v1 signature is not hexadecimal") from None
    if stamp is None or not signatures:
        raise BadSignature("the signature header is not t=<unix time>,v1=<hex>")
    if abs(now - stamp) > tolerance:
        raise BadSignature(f"the signature's time is more than {tolerance} s from now (a replay, or a clock off)")
    signed = f"{stamp}.".encode() + body
    for secret in secrets:
        expected = _mac(secret, signed)
        if any(hmac.compare_digest(expected, given) for given in signatures):
            return stamp
    raise BadSignature("no signature matches the body")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_click(secret: str, user_id: str, product_id: str, now: float) -> str:
    """A click id that names who followed a link to which product when, signed so nobody can forge one."""
    payload = _b64(json.dumps([user_id, product_id, int(now)], separators=(",", ":")).encode())
    return f"{payload}.{_b64(_mac(secret, payload.encode())[:18])}"


def read_click(secret: str, click: str, now: float, ttl: float) -> tuple[str, str, int]:
    """``(user, product, issued)`` of a click id this Arena signed that is at most ``ttl`` seconds old."""
    payload, _, mac = click.partition(".")
    if not payload or not mac or len(click) > 512:
        raise BadSignature("not a click id")
    try:
        given = _unb64(mac)
        user_id, product_id, issued = json.loads(_unb64(payload))
    except (ValueError, TypeError):
        raise BadSignature("not a click id") from None
    if not hmac.compare_digest(_mac(secret, payload.encode())[:18], given):
        raise BadSignature("the click id's signature does not match")
    if not (isinstance(user_id, str) and isinstance(product_id, str) and isinstance(issued, int)):
        raise BadSignature("not a click id")
    if not issued <= now + 60 or now - issued > ttl:
        raise BadSignature("the click id has expired")
    return user_id, product_id, issued
