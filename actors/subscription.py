"""A user's premium subscription, driven by the billing provider's signed webhooks.

States (docs/commerce.md)::

    none ─created─▶ created ─renewed─▶ active ─payment_failed─▶ past_due ─renewed─▶ active
                                        │  ▲                       │ grace over (timer)
                                        │  └──────renewed──────────┤        ▼
                                        └─canceled─▶ canceled ─period end (timer)─▶ expired

Entitlements are held in ``active``, ``past_due`` (the grace period) and ``canceled`` (until the period
ends). Each provider event applies once (its id), and an event older than the newest applied one (by the
provider's ``(created, sequence)``) changes nothing: deliveries may come in any order. Bounded: the last
``HISTORY`` transitions and ``SEEN`` event ids.
"""

from __future__ import annotations

from actors.campaign import audience_shard
from actors.events import SUBSCRIPTION_CHANGED
from engine.entity import Entity, query, update

__all__ = ["ENTITLEMENTS", "EVENT_TYPES", "PLANS", "STATES", "Subscription", "plan_for"]

ENTITLEMENTS = ("advanced_training", "recommendations", "premium_content", "exclusive_discounts")
PLANS: dict[str, tuple[str, ...]] = {
    "premium": ("advanced_training", "recommendations", "premium_content"),
    "premium_plus": ENTITLEMENTS,
}
STATES = ("none", "created", "active", "past_due", "canceled", "expired")
EVENT_TYPES = ("subscription.created", "subscription.renewed", "subscription.payment_failed",
               "subscription.canceled", "subscription.expired")  # fmt: skip
_ENTITLED = ("active", "past_due", "canceled")
HISTORY = 50
SEEN = 200


def plan_for(entitlement: str) -> str:
    """The cheapest plan that unlocks ``entitlement``."""
    return next(name for name, granted in PLANS.items() if entitlement in granted)


class Subscription(Entity):
    kind = "subscription"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.state = "none"
        self.plan: str | None = None
        self.period_end = 0.0
        self.grace_until = 0.0
        self.order: list = [0, 0]  # the newest applied provider event's (created, sequence)
        self.seen: list[str] = []  # provider event ids applied or judged stale, oldest first
        self.history: list[dict] = []  # newest last

    @update
    def apply(self, event_id: str, type: str, created: int, sequence: int, plan: str, period_end: float,
              grace_s: float) -> dict:  # fmt: skip
        """One provider event. ``created``/``sequence``: the provider's order of its events."""
        if event_id in self.seen:
            return {"applied": False, "duplicate": True, **self.status()}
        self.seen = [*self.seen, event_id][-SEEN:]
        if [created, sequence] < self.order:
            return {"applied": False, "stale": True, **self.status()}
        self.order = [created, sequence]
        before = self.state
        if type == "subscription.created":
            if self.state in ("none", "expired"):
                self.state, self.plan, self.period_end = "created", plan, period_end
        elif type == "subscription.renewed":
            self.state, self.plan, self.period_end, self.grace_until = "active", plan, period_end, 0.0
        elif type == "subscription.payment_failed":
            if self.state in ("active", "past_due"):
                self.state = "past_due"
                self.grace_until = self.grace_until or max(created, self.period_end) + grace_s
        elif type == "subscription.canceled":
            if self.state in ("created", "active", "past_due"):
                self.state = "canceled" if self.state != "created" else "expired"
        elif type == "subscription.expired":
            self.state = "expired"
        self._settle(before, type, event_id, grace_s)
        return {"applied": True, "duplicate": False, **self.status()}

    @update
    def lapse(self) -> None:
        """The timer at the end of a period or a grace period: what is not renewed by then expires."""
        before = self.state
        if self.state in _ENTITLED and self.now >= self._ends():
            self.state = "expired"
        self._settle(before, "period_end", None, 0.0)

    def _ends(self) -> float:
        return self.grace_until if self.state == "past_due" else self.period_end

    def _settle(self, before: str, cause: str, event_id: str | None, grace_s: float) -> None:
        if self.state == "canceled" and self.period_end <= self.now:
            self.state = "expired"
        if self.state in _ENTITLED:
            self.set_timer("end", self._ends() + (grace_s if self.state == "active" else 0.0), "lapse")
        else:
            self.cancel_timer("end")
        if self.state == before:
            return
        self.history = [*self.history, {"at": self.now, "from": before, "to": self.state, "cause": cause,
                                        "event_id": event_id}][-HISTORY:]  # fmt: skip
        self.emit(SUBSCRIPTION_CHANGED, user_id=self.id, shard=audience_shard(self.id), state=self.state,
                  plan=self.plan, tier=self.tier())  # fmt: skip

    def tier(self) -> str:
        return self.plan if self.state in _ENTITLED and self.plan in PLANS else "free"

    @query
    def status(self) -> dict:
        tier = self.tier()
        return {"state": self.state, "plan": self.plan, "tier": tier, "period_end": self.period_end or None,
                "grace_until": self.grace_until or None,
                "entitlements": list(PLANS.get(tier, ())), "history": self.history}  # fmt: skip

    @query
    def entitlements(self) -> list[str]:
        return list(PLANS.get(self.tier(), ()))
