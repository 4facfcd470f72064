"""The one policy for premium features: a route that needs an entitlement declares
``dependencies=[requires("advanced_training")]`` and never checks a plan by hand.

The check asks the caller's ``Subscription`` entity (its state as the last webhook left it), so an
entitlement follows a webhook as soon as that webhook's turn is journaled (docs/commerce.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from actors.subscription import ENTITLEMENTS, Subscription, plan_for
from serve.context import ArenaDep, CallerDep
from serve.problems import Problem

__all__ = ["requires"]


def requires(entitlement: str) -> Any:
    """A FastAPI dependency: 403, naming the plan that unlocks it, for a caller without ``entitlement``."""
    if entitlement not in ENTITLEMENTS:
        raise ValueError(f"unknown entitlement {entitlement!r}; one of {', '.join(ENTITLEMENTS)}")
    plan = plan_for(entitlement)

    async def entitled(caller: CallerDep, arena: ArenaDep) -> None:
        held = await arena.ref(Subscription, caller.id).ask(Subscription.entitlements)
        if entitlement not in held:
            raise Problem(403, f"this needs {entitlement}: subscribe to the {plan} plan to unlock it",
                          entitlement=entitlement, plan=plan)  # fmt: skip

    return Depends(entitled)
