"""The one policy for premium features: a route that needs an entitlement declares
``dependencies=[requires("advanced_training")]`` and never checks a plan by hand.

The check asks the caller's ``Subscription`` entity (its state as the last webhook left it), so an
entitlement follows a webhook as soon as that webhook's turn is journaled (docs/commerce.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from actors.subscription import ENTITLEMENTS, Subscription, plan_for
from serve.context import Arena, ArenaDep, CallerDep
from serve.problems import Problem

__all__ = ["check", "requires"]


def requires(entitlement: str) -> Any:
    """A FastAPI dependency: 403, naming the plan that unlocks it, for a caller without ``entitlement``."""
    _known(entitlement)

    async def entitled(caller: CallerDep, arena: ArenaDep) -> None:
        await check(arena, caller.id, entitlement)

    return Depends(entitled)


async def check(arena: Arena, user_id: str, entitlement: str) -> None:
    """The same policy where what is asked decides whether it needs an entitlement (an exclusive promotion)."""
    _known(entitlement)
    if entitlement not in await arena.ref(Subscription, user_id).ask(Subscription.entitlements):
        plan = plan_for(entitlement)
        raise Problem(403, f"this needs {entitlement}: subscribe to the {plan} plan to unlock it",
                      entitlement=entitlement, plan=plan)  # fmt: skip


def _known(entitlement: str) -> None:
    if entitlement not in ENTITLEMENTS:
        raise ValueError(f"unknown entitlement {entitlement!r}; one of {', '.join(ENTITLEMENTS)}")
