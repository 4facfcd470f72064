"""Outbound webhooks: a partner's endpoint with its durable queue, and the directory of endpoints.

A ``WebhookEndpoint`` keeps what an admin configured (URL, the event types it wants, its signing
secrets) and the deliveries owed to it: a queue in event order, the dead letters, and a log of the
last attempts. The relay's ``webhooks`` stream (``serve/outbound.py``) enqueues each partner event
here once it is in the outbox, and the delivery worker takes the head of the queue, POSTs it and
reports back; entities do no I/O, so the worker decides when to try again (``retry_at``) and when
an event is dead (``retry_at`` null). Bounded: ``QUEUE_MAX`` queued, ``DEAD_MAX`` dead letters (the
oldest go first, counted in ``dropped``), ``LOG_MAX`` log lines. docs/commerce.md, "Outbound webhooks".
"""

from __future__ import annotations

from typing import Any

from actors.erasing import pseudonymise
from engine.entity import Entity, query, update
from engine.erasure import mentions
from engine.errors import NotFound, Rejected

__all__ = [
    "DEAD_MAX",
    "DIRECTORY",
    "ENDPOINTS_MAX",
    "LOG_MAX",
    "PARTNER_EVENTS",
    "QUEUE_MAX",
    "WebhookDirectory",
    "WebhookEndpoint",
]

# The event types a partner may subscribe to, and the fields of each that it gets: facts the partner is
# a party to (its shop's orders, its promotions, the billing provider's subscriptions, an organizer's
# registrations) or that name nobody. Internal routing fields (shards, directories, catalogues) never go.
PARTNER_EVENTS: dict[str, tuple[str, ...]] = {
    "shop.purchased": ("order_id", "user_id", "lines", "total", "currency"),
    "promo.redeemed": ("promotion_id", "user_id", "code", "discount"),
    "subscription.changed": ("user_id", "state", "plan", "tier"),
    "sport_event.registration": ("event_id", "user_id", "registration", "promoted"),
    "race.settled": ("race_id", "status", "athletes"),
}

QUEUE_MAX = 1_000  # deliveries waiting per endpoint; past it, new events become dead letters ("queue full")
DEAD_MAX = 1_000  # dead letters kept per endpoint; past it, the oldest are dropped (``dropped``)
LOG_MAX = 100  # attempts kept in an endpoint's delivery log
ENDPOINTS_MAX = 100
DIRECTORY = "all"  # the one directory entity's id


class WebhookEndpoint(Entity):
    kind = "webhook_endpoint"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.state = "none"  # none, active, paused, deleted
        self.url = ""
        self.types: list[str] = []
        self.description = ""
        self.secrets: list[list] = []  # [secret, valid until (unix s) or None], the newest first
        self.created_at = 0.0
        self.created_by = ""
        self.queue: list[dict] = []  # id, type, version, at, data, user, position, attempts, next_at
        self.last_position = 0  # the outbox position of the last event taken: a batch sent again is skipped
        self.dead: list[dict] = []  # a queued delivery plus error, failed_at
        self.log: list[dict] = []  # event, at, attempt, status, latency_ms, error, user (the event's)
        self.delivered = 0
        self.dropped = 0

    def _live(self) -> None:
        if self.state in ("none", "deleted"):
            raise NotFound("no such webhook endpoint")

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Deliveries, dead letters and log lines about the person go (they are not sent any more); an
        admin who created the endpoint (or a description naming them) gets the stand-in. The endpoint stays."""
        self.queue = [item for item in self.queue if not mentions(item, user_id)]
        self.dead = [item for item in self.dead if not mentions(item, user_id)]
        self.log = [line for line in self.log if not mentions(line, user_id)]
        return pseudonymise(self, user_id, stand_in)

    # -- configuration ---------------------------------------------------------

    @update
    def create(self, url: str, types: list[str], secret: str, description: str, created_by: str) -> dict:
        if self.state != "none":
            raise Rejected("this webhook endpoint exists already")
        unknown = sorted(set(types) - PARTNER_EVENTS.keys())
        if unknown or not types:
            raise Rejected(f"not events a partner may receive: {unknown or 'none given'}")
        self.state, self.url, self.types, self.description = "active", url, sorted(set(types)), description
        self.secrets = [[secret, None]]
        self.created_at, self.created_by = self.now, created_by
        return self.info()

    @update
    def pause(self) -> dict:
        """Deliveries stop; events still queue (up to ``QUEUE_MAX``) until ``resume``."""
        self._live()
        self.state = "paused"
        return self.info()

    @update
    def resume(self) -> dict:
        self._live()
        self.state = "active"
        for item in self.queue[:1]:
            item["next_at"] = 0.0  # what waited for a retry goes at once
        return self.info()

    @update
    def delete(self) -> None:
        """Nothing more is queued or sent; what was queued, dead and logged goes with the secrets."""
        self._live()
        self.state = "deleted"
        self.secrets, self.queue, self.dead, self.log = [], [], [], []

    @update
    def rotate(self, secret: str, keep_old_s: float) -> dict:
        """``secret`` signs from now on; the older ones keep signing too for ``keep_old_s`` seconds, so a
        receiver can switch keys without missing a delivery (each key adds a ``v1=`` to the header)."""
        self._live()
        until = self.now + keep_old_s
        kept = [[key, until if valid is None else min(valid, until)] for key, valid in self._valid()]
        self.secrets = [[secret, None], *[pair for pair in kept if pair[1] > self.now]]
        return self.info()

    def _valid(self) -> list[list]:
        return [pair for pair in self.secrets if pair[1] is None or pair[1] > self.now]

    @query
    def info(self) -> dict:
        self._live()
        head = self.queue[0] if self.queue else None
        return {
            "id": self.id,
            "url": self.url,
            "events": self.types,
            "description": self.description,
            "state": self.state,
            "created_at": self.created_at,
            "queued": len(self.queue),
            "dead_letters": len(self.dead),
            "dropped": self.dropped,
            "delivered": self.delivered,
            "next_attempt_at": None if head is None else head["next_at"],
            "secrets": [{"valid_until": valid} for _, valid in self._valid()],
        }

    # -- the queue -------------------------------------------------------------

    @update
    def enqueue(self, events: list[dict]) -> int:
        """Partner events in outbox order (``serve/outbound.py``); how many were queued. An event from
        before the endpoint existed, of a type it does not want, or already taken is skipped."""
        if self.state not in ("active", "paused"):
            return 0
        queued = 0
        for event in events:
            if event["position"] <= self.last_position:
                continue
            self.last_position = event["position"]
            if event["type"] not in self.types or event["at"] < self.created_at:
                continue
            item = {**event, "attempts": 0, "next_at": 0.0}
            if len(self.queue) >= QUEUE_MAX:
                self._bury(item, "queue full: the endpoint is down or paused too long")
                continue
            self.queue.append(item)
            queued += 1
        return queued

    def _bury(self, item: dict, error: str) -> None:
        self.dead.append({**item, "error": error, "failed_at": self.now})
        if len(self.dead) > DEAD_MAX:
            self.dropped += len(self.dead) - DEAD_MAX
            del self.dead[:-DEAD_MAX]

    @query
    def due(self, now: float, limit: int) -> dict:
        """What the worker sends next, in order: up to ``limit`` from the head once the head is due
        (nothing while paused). ``wait``: seconds until the head is due (null: nothing queued)."""
        if self.state in ("none", "deleted"):
            return {"gone": True, "items": [], "wait": None}
        if self.state == "paused" or not self.queue:
            return {"gone": False, "items": [], "wait": None}
        wait = self.queue[0]["next_at"] - now
        if wait > 0:
            return {"gone": False, "items": [], "wait": wait}
        keys = [key for key, valid in self.secrets if valid is None or valid > now]
        return {"gone": False, "url": self.url, "secrets": keys, "items": self.queue[:limit], "wait": 0.0}

    @update
    def report(self, results: list[dict]) -> int:
        """The worker's attempts, in the order it made them: ``id``, ``ok``, ``status`` (null: no
        answer), ``latency_ms``, ``error``, ``retry_at`` (when a failure is tried again; null: it is
        dead). An attempt at an event no longer queued (replayed, erased, deleted) only logs."""
        settled = 0
        for result in results:
            index = next((i for i, item in enumerate(self.queue) if item["id"] == result["id"]), None)
            attempt = 1 if index is None else self.queue[index]["attempts"] + 1
            user = None if index is None else self.queue[index]["user"]  # kept for erasure, never shown
            self.log.append({"event": result["id"], "at": self.now, "attempt": attempt, "status": result["status"],
                             "latency_ms": result["latency_ms"], "error": result["error"], "user": user})  # fmt: skip
            if index is None:
                continue
            item = self.queue[index]
            if result["ok"]:
                del self.queue[index]
                self.delivered += 1
                settled += 1
            elif result["retry_at"] is None:
                del self.queue[index]
                item["attempts"] = attempt
                self._bury(item, result["error"] or f"HTTP {result['status']}")
                settled += 1
            else:
                item["attempts"], item["next_at"] = attempt, float(result["retry_at"])
        del self.log[:-LOG_MAX]
        return settled

    @query
    def dead_letters(self, limit: int = 100) -> list[dict]:
        self._live()
        return [_shown(item) for item in self.dead[-limit:]][::-1]

    @query
    def deliveries(self, limit: int = 100) -> list[dict]:
        self._live()
        return [{k: v for k, v in line.items() if k != "user"} for line in self.log[-limit:][::-1]]

    @update
    def replay(self, event_id: str | None = None) -> int:
        """Dead letters back into the queue (one by its event id, or all), after what is queued already,
        each with its attempts counted afresh; how many went back (as many as the queue has room for)."""
        self._live()
        chosen = [item for item in self.dead if event_id is None or item["id"] == event_id]
        if event_id is not None and not chosen:
            raise NotFound(f"no dead letter of event {event_id!r}")
        room = max(QUEUE_MAX - len(self.queue), 0)
        back = chosen[:room]
        ids = {item["id"] for item in back}
        self.dead = [item for item in self.dead if item["id"] not in ids]
        for item in back:
            self.queue.append({k: v for k, v in item.items() if k not in ("error", "failed_at")}
                              | {"attempts": 0, "next_at": 0.0})  # fmt: skip
        return len(back)


def _shown(item: dict) -> dict[str, Any]:
    return {"event": item["id"], "type": item["type"], "at": item["at"], "attempts": item["attempts"],
            "error": item["error"], "failed_at": item["failed_at"]}  # fmt: skip


class WebhookDirectory(Entity):
    """The endpoints and the event types each wants: what the stream asks before it enqueues a batch."""

    kind = "webhook_directory"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.endpoints: dict[str, list[str]] = {}

    @update
    def add(self, endpoint_id: str, types: list[str]) -> None:
        if endpoint_id not in self.endpoints and len(self.endpoints) >= ENDPOINTS_MAX:
            raise Rejected(f"at most {ENDPOINTS_MAX} webhook endpoints")
        self.endpoints[endpoint_id] = sorted(types)

    @update
    def remove(self, endpoint_id: str) -> None:
        self.endpoints.pop(endpoint_id, None)

    @query
    def listing(self) -> dict[str, list[str]]:
        return self.endpoints
