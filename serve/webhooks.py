"""Signed webhooks from the brand's platforms (the shop's orders, the billing provider's subscription
events): the raw body's signature checked before anything is parsed, then the body read as its
model. ``docs/commerce.md`` has the contract (``Arena-Signature: t=...,v1=...``, 5 minutes' tolerance)."""

from __future__ import annotations

import time
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from engine.commerce.signatures import BadSignature, verify_webhook
from serve.problems import Problem

__all__ = ["SIGNATURE_HEADER", "signed_body"]

SIGNATURE_HEADER = "Arena-Signature"

M = TypeVar("M", bound=BaseModel)


async def signed_body(request: Request, keys: list[str], setting: str, model: type[M], what: str) -> M:
    """The webhook's body as ``model`` once one of ``keys`` signed it: 401 when none is configured (the
    ``setting`` that names them) or the signature is not accepted, 422 for a body that is not ``what``."""
    body = await request.body()
    if not keys:
        raise Problem(401, f"no webhook secret is configured ({setting}): every delivery is refused")
    try:
        verify_webhook(keys, request.headers.get(SIGNATURE_HEADER), body, time.time())
    except BadSignature as error:
        raise Problem(401, f"the webhook's signature is not accepted: {error}") from None
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
        raise Problem(422, f"the {what} is not valid", errors=errors) from None
