"""What the kinds share when they forget a person (``Entity.erase_user``, docs/privacy.md)."""

from __future__ import annotations

from collections.abc import Callable

from engine.entity import Entity
from engine.erasure import mentions, replace_all

__all__ = ["ERASED_NAME", "pseudonymise", "relist", "without_in_feed"]

ERASED_NAME = "Deleted athlete"  # shown where a record must stay whole (a race's standings)


def pseudonymise(entity: Entity, user_id: str, stand_in: str) -> bool:
    """Write ``stand_in`` for ``user_id`` wherever the entity's state names them, keeping every record
    whole (a card's creator, a redemption); False: the entity stays. For snapshots without raw bytes."""
    entity.restore(replace_all(entity.snapshot(), user_id, stand_in))
    return False


def without_in_feed(items: list[dict], user_id: str) -> list[dict]:
    """A feed's cards without the person's own, and without them among those who did a group event
    together (``group_event.together`` on another athlete's card): that card stays, one fewer."""
    kept = []
    for item in items:
        if item.get("owner") == user_id:
            continue
        together = item.get("together")
        if isinstance(together, dict) and isinstance(together.get("athletes"), list):
            athletes = [a for a in together["athletes"] if not (isinstance(a, dict) and a.get("user_id") == user_id)]
            gone = len(together["athletes"]) - len(athletes)
            count = together.get("count")
            count = max(0, count - gone) if isinstance(count, int) else count
            item = {**item, "together": {**together, "athletes": athletes, "count": count}}
        kept.append(item)
    return kept


def relist(
    entries: dict[str, dict],
    drop: Callable[[str], None],
    put: Callable[[str, dict], None],
    user_id: str,
    stand_in: str,
    gone: Callable[[dict], bool] = lambda card: False,
) -> None:
    """A directory's cards that name the person: dropped when ``gone`` (the thing went with them), else
    put back under the stand-in; through the directory's own ``drop``/``put``, which keep its indexes."""
    for entry_id, card in [(e, c) for e, c in entries.items() if mentions(e, user_id) or mentions(c, user_id)]:
        drop(entry_id)
        if not gone(card) and not mentions(entry_id, user_id):
            put(entry_id, replace_all(card, user_id, stand_in))
