"""Premium: the plans, my subscription, and the billing provider's signed webhook that drives it
(docs/commerce.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from actors.account import Account
from actors.subscription import EVENT_TYPES, PLANS, Subscription
from serve.context import ArenaDep, CallerDep
from serve.webhooks import SIGNATURE_HEADER, signed_body

__all__ = ["router", "WEBHOOK_PATH", "WEBHOOK_MAX_BYTES", "SIGNATURE_HEADER"]

router = APIRouter(tags=["premium"])

WEBHOOK_PATH = "/webhooks/billing"
WEBHOOK_MAX_BYTES = 64 * 1024


@router.get("/plans", summary="The premium plans and the entitlements each unlocks")
async def plans(caller: CallerDep) -> dict:
    return {"items": [{"plan": name, "entitlements": list(granted)} for name, granted in PLANS.items()]}


@router.get("/me/subscription", summary="My subscription: state, plan, entitlements, its transitions")
async def my_subscription(caller: CallerDep, arena: ArenaDep) -> dict:
    return await arena.ref(Subscription, caller.id).ask(Subscription.status)


class BillingData(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a provider adds fields as it pleases

    user_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
    plan: Literal[tuple(PLANS)]  # type: ignore[valid-type]
    period_end: Annotated[int, Field(ge=0, le=10**11, description="unix seconds the paid period ends")]


class BillingEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, Field(min_length=1, max_length=100)]
    type: Literal[EVENT_TYPES]  # type: ignore[valid-type]
    created: Annotated[int, Field(ge=0, le=10**11, description="the provider's unix time of the event")]
    sequence: Annotated[int, Field(ge=0, le=2**53)] = 0  # orders events of one second
    data: BillingData


_WEBHOOK_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["id", "type", "created", "data"],
    "properties": {
        "id": {"type": "string", "maxLength": 100},
        "type": {"type": "string", "enum": list(EVENT_TYPES)},
        "created": {"type": "integer"},
        "sequence": {"type": "integer"},
        "data": {"type": "object", "required": ["user_id", "plan", "period_end"], "properties": {
            "user_id": {"type": "string", "maxLength": 64}, "plan": {"type": "string", "enum": list(PLANS)},
            "period_end": {"type": "integer"}}},
    }}}}}}  # fmt: skip


@router.post(
    WEBHOOK_PATH,
    summary="The billing provider's subscription webhook: signed (Arena-Signature: t=...,v1=...), idempotent by "
    "event id, in any order",
    openapi_extra=_WEBHOOK_BODY,
)
async def billing_webhook(request: Request, arena: ArenaDep) -> dict:
    event = await signed_body(request, arena.settings.billing_webhook_secrets(), "ARENA_BILLING_WEBHOOK_SECRET",
                              BillingEvent, "billing event")  # fmt: skip
    user_id = event.data.user_id
    if not await arena.ref(Account, user_id).ask(Account.exists):  # retrying would not help: said, not kept
        return {"event_id": event.id, "recorded": False, "reason": "no such account"}
    answer = await arena.ref(Subscription, user_id).ask(
        Subscription.apply, event_id=event.id, type=event.type, created=event.created, sequence=event.sequence,
        plan=event.data.plan, period_end=float(event.data.period_end), grace_s=arena.settings.billing_grace_s,
    )  # fmt: skip
    return {"event_id": event.id, "recorded": answer["applied"], **answer}
