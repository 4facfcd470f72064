"""What an athlete did on other people's things, indexed by the athlete: their purchases and redeemed
codes, group posts, kudos and comments given. Those live in the orders, promotions, posts and workouts
they concern; this index is how the athlete's export finds them (docs/privacy.md). It goes with the
account on erasure (keyed by the user id).
"""

from __future__ import annotations

from actors.events import GROUP_POSTED, PROMO_REDEEMED, SHOP_PURCHASED
from engine.entity import Entity, query, update
from engine.events import Event, To, react

__all__ = ["MyActivity", "KEPT"]

KEPT = 10_000  # the newest of each list


def _kept(items: list[dict], item: dict) -> list[dict]:
    return [*items, item][-KEPT:]


class MyActivity(Entity):
    kind = "my_activity"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.orders: list[dict] = []
        self.redemptions: list[dict] = []
        self.posts: list[dict] = []
        self.kudos: dict[str, float] = {}  # workout id -> when given
        self.comments: list[dict] = []

    @react(SHOP_PURCHASED, to=To.field("user_id"))
    def on_purchased(self, event: Event) -> None:
        fields = event.fields
        if any(o["order_id"] == fields["order_id"] for o in self.orders):
            return
        self.orders = _kept(self.orders, {k: fields[k] for k in ("order_id", "lines", "total", "currency")}
                            | {"at": event.at})  # fmt: skip

    @react(PROMO_REDEEMED, to=To.field("user_id"))
    def on_redeemed(self, event: Event) -> None:
        fields = event.fields
        self.redemptions = _kept(self.redemptions, {k: fields[k] for k in ("promotion_id", "code", "discount")}
                                 | {"at": event.at})  # fmt: skip

    @react(GROUP_POSTED, to=To.field("author"))
    def on_posted(self, event: Event) -> None:
        fields = event.fields
        self.posts = _kept(self.posts, {k: fields[k] for k in ("group_id", "post_id", "text")} | {"at": event.at})

    @update
    def kudos_given(self, workout_id: str, given: bool) -> None:
        if given:
            self.kudos[workout_id] = self.now
            while len(self.kudos) > KEPT:
                del self.kudos[next(iter(self.kudos))]
        else:
            self.kudos.pop(workout_id, None)

    @update
    def commented(self, workout_id: str, comment_id: str, text: str) -> None:
        self.comments = _kept(self.comments, {"workout_id": workout_id, "comment_id": comment_id, "text": text,
                                              "at": self.now})  # fmt: skip

    @update
    def uncommented(self, workout_id: str, comment_id: str) -> None:
        self.comments = [c for c in self.comments if (c["workout_id"], c["comment_id"]) != (workout_id, comment_id)]

    @query
    def everything(self) -> dict:
        return {
            "orders": self.orders,
            "redemptions": self.redemptions,
            "group_posts": self.posts,
            "kudos_given": [{"workout_id": w, "at": at} for w, at in self.kudos.items()],
            "comments_given": self.comments,
        }
