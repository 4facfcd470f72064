"""Implicit interactions from the lake's event rows: who joined, followed, cheered or did what with whom.

``build`` takes rows as the lake keeps them (one mapping per event, the lake's column names:
``user_id``, ``at``, the event's fields flattened one level) per event type, and makes the
training set: (user, item, instant, weight) pairs over one item space of four kinds, each item
named ``kind:id``; side features (region, sports) of users and items, for cold start; the groups
that must never be recommended (hidden or deleted, from their last ``group.listed``).

Anything malformed in a row (an id that is not a short string, an instant that is not one) drops
that row alone; ``Interactions.skipped`` counts them.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

__all__ = ["KINDS", "Interactions", "build", "item_key", "NEIGHBOURS"]

KINDS = ("user", "group", "challenge", "race")
# Co-participation links each athlete to this many neighbours on each side (by place in a race, by
# arrival at a group event), so a race of 50,000 makes 300,000 pairs, not a billion.
NEIGHBOURS = 3
_WEIGHTS = {"group": 1.0, "challenge": 1.0, "race": 1.0, "together": 1.0, "raced_with": 0.5, "follow": 1.0,
            "comment": 0.7, "kudos": 0.5}
_MAX_ID = 128


def item_key(kind: str, entity_id: str) -> str:
    return f"{kind}:{entity_id}"


@dataclass
class Interactions:
    users: list[str]
    items: list[str]
    user: np.ndarray  # int32, per pair
    item: np.ndarray  # int32, per pair
    at: np.ndarray  # float64 unix seconds, per pair
    weight: np.ndarray  # float32, per pair
    user_features: dict[str, list[str]] = field(default_factory=dict)
    item_features: dict[str, list[str]] = field(default_factory=dict)
    never: set[str] = field(default_factory=set)  # items never recommended (hidden or deleted groups)
    ends: dict[str, float] = field(default_factory=dict)  # challenge item → when it is over
    skipped: int = 0

    @property
    def item_kinds(self) -> np.ndarray:
        return np.array([KINDS.index(i.split(":", 1)[0]) for i in self.items], dtype=np.int8)

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, keep: np.ndarray) -> Interactions:
        """The same users, items and features with only the pairs ``keep`` selects."""
        return Interactions(self.users, self.items, self.user[keep], self.item[keep], self.at[keep], self.weight[keep],
                            self.user_features, self.item_features, self.never, self.ends, self.skipped)  # fmt: skip


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _MAX_ID else None


def _instant(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _sports(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = [value]
    if isinstance(value, list | tuple):
        return [s for s in value if _id(s)][:4]
    return []


class _Builder:
    def __init__(self) -> None:
        self.pairs: list[tuple[str, str, float, float]] = []
        self.skipped = 0
        self.user_sports: dict[str, Counter] = defaultdict(Counter)
        self.user_region: dict[str, str] = {}
        self.item_features: dict[str, list[str]] = {}

    def add(self, user: Any, item_kind: str, item: Any, at: Any, weight: float) -> None:
        user, item, instant = _id(user), _id(item), _instant(at)
        if user is None or item is None or instant is None:
            self.skipped += 1
            return
        if item_kind == "user" and item == user:
            return
        self.pairs.append((user, item_key(item_kind, item), instant, weight))


def _social(b: _Builder, tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> None:
    """Who follows, comments on and gives kudos to whom: user → user pairs. A follow counts from its last
    ``follow.started`` unless a later ``follow.ended`` undid it (unfollowed, or blocked)."""
    follows: dict[tuple[str, str], float] = {}
    changes = [(row, True) for row in tables.get("follow.started", ())]
    changes += [(row, False) for row in tables.get("follow.ended", ())]
    changes.sort(key=lambda change: _instant(change[0].get("at")) or 0.0)
    for row, started in changes:
        user, other, at = _id(row.get("user_id")), _id(row.get("followee_id")), _instant(row.get("at"))
        if user is None or other is None or at is None:
            b.skipped += 1
        elif started:
            follows[(user, other)] = at
        else:
            follows.pop((user, other), None)
    for (user, other), at in follows.items():
        b.add(user, "user", other, at, _WEIGHTS["follow"])
    for table, weight in (("comment.posted", _WEIGHTS["comment"]), ("kudos.given", _WEIGHTS["kudos"])):
        for row in tables.get(table, ()):
            b.add(row.get("user_id"), "user", row.get("owner"), row.get("at"), weight)


def build(tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> Interactions:
    """The training set from the lake's rows of each event type (types missing: no rows)."""
    b = _Builder()
    for row in tables.get("workout.recorded", ()):
        user = _id(row.get("user_id"))
        if user is None:
            continue
        if _id(row.get("region")):
            b.user_region[user] = row["region"]
        if _id(row.get("summary_sport")):
            b.user_sports[user][row["summary_sport"]] += 1
    for row in tables.get("group.joined", ()):
        b.add(row.get("user_id"), "group", row.get("group_id"), row.get("at"), _WEIGHTS["group"])
    ends: dict[str, float] = {}
    for row in tables.get("challenge.joined", ()):
        b.add(row.get("user_id"), "challenge", row.get("challenge_id"), row.get("at"), _WEIGHTS["challenge"])
        end, challenge = _instant(row.get("ends")), _id(row.get("challenge_id"))
        if end is not None and challenge is not None:
            ends[item_key("challenge", challenge)] = end
    races: dict[str, list[tuple[float, str, float]]] = defaultdict(list)
    for row in tables.get("race.result", ()):
        b.add(row.get("user_id"), "race", row.get("race_id"), row.get("at"), _WEIGHTS["race"])
        race, user, at, place = (
            _id(row.get("race_id")),
            _id(row.get("user_id")),
            _instant(row.get("at")),
            row.get("result_place"),
        )
        if race and user and at is not None:
            races[race].append(
                (place if isinstance(place, int | float) and math.isfinite(place) else math.inf, user, at)
            )
            if _id(row.get("summary_sport")):
                b.item_features[item_key("race", race)] = ["kind:race", f"sport:{row['summary_sport']}"]
    events: dict[str, list[tuple[float, str, float]]] = defaultdict(list)
    for row in tables.get("group_event.attended", ()):
        event, user, at = _id(row.get("event_id")), _id(row.get("user_id")), _instant(row.get("at"))
        if event and user and at is not None:
            events[event].append((at, user, at))
        else:
            b.skipped += 1
    for groups, weight in ((races, _WEIGHTS["raced_with"]), (events, _WEIGHTS["together"])):
        for members in groups.values():
            members.sort()
            for n, (_, user, at) in enumerate(members):
                for _, other, other_at in members[max(0, n - NEIGHBOURS) : n + NEIGHBOURS + 1]:
                    b.add(user, "user", other, max(at, other_at), weight)
    _social(b, tables)
    never: set[str] = set()
    listed = sorted(tables.get("group.listed", ()), key=lambda r: _instant(r.get("at")) or 0.0)
    for row in listed:
        group = _id(row.get("group_id"))
        if group is None:
            continue
        key = item_key("group", group)
        if row.get("listing_visibility") is None:  # a null listing: hidden or deleted
            never.add(key)
            continue
        never.discard(key)
        features = ["kind:group", *(f"sport:{s}" for s in _sports(row.get("listing_sports")))]
        if _id(row.get("listing_region")):
            features.append(f"region:{row['listing_region']}")
        b.item_features[key] = features
    return _index(b, never, ends)


def _user_tokens(b: _Builder, user: str) -> list[str]:
    tokens = [f"sport:{s}" for s, _ in b.user_sports[user].most_common(2)] if user in b.user_sports else []
    if user in b.user_region:
        tokens.append(f"region:{b.user_region[user]}")
    return tokens


def _index(b: _Builder, never: set[str], ends: dict[str, float]) -> Interactions:
    b.pairs.sort(key=lambda p: p[2])
    users = sorted({p[0] for p in b.pairs} | set(b.user_sports) | set(b.user_region))
    items = sorted({p[1] for p in b.pairs})
    user_at = {u: n for n, u in enumerate(users)}
    item_at = {i: n for n, i in enumerate(items)}
    user_features = {u: _user_tokens(b, u) for u in users}
    item_features = {}
    for item in items:
        kind, entity = item.split(":", 1)
        item_features[item] = b.item_features.get(item) or (
            ["kind:user", *user_features.get(entity, [])] if kind == "user" else [f"kind:{kind}"]
        )
    return Interactions(
        users=users,
        items=items,
        user=np.array([user_at[p[0]] for p in b.pairs], dtype=np.int32),
        item=np.array([item_at[p[1]] for p in b.pairs], dtype=np.int32),
        at=np.array([p[2] for p in b.pairs], dtype=np.float64),
        weight=np.array([p[3] for p in b.pairs], dtype=np.float32),
        user_features=user_features,
        item_features=item_features,
        never=never & set(items),
        ends=ends,
        skipped=b.skipped,
    )
