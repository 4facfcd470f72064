"""Products and gear to recommend: content rules first, then what other athletes bought together.

Pure: the API gathers the athlete's gear, weekly distance per sport and the catalogue's candidates;
these functions say what each candidate answers and rank them (docs/models.md, "Products"):

1. **wear**: an active item past ``NEAR_END`` of its life → replacements of its type, part and sport,
   priced like it (``engine/commerce/suggestions.py``);
2. **volume**: a sport done at ``VOLUME`` distance a week whose gear will not last ``WEEKS_AHEAD``
   more weeks (or that has none), and a runner of ``ROTATE_M`` a week with one pair → a second pair;
3. **co-purchase**: products bought by the athletes who bought what this athlete bought;
4. **sport**: products for one of the athlete's sports, when the rest leave room.

Rules on every candidate: in stock, not owned (an active item's product, or one bought through Arena).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.commerce.wear import life_m

__all__ = ["NEAR_END", "ROTATE_M", "VOLUME", "WEEKS_AHEAD", "Need", "Pick", "needs", "rank", "worn"]

NEAR_END = 0.8  # of an item's life: time to think of its replacement
WEEKS_AHEAD = 8  # gear that will not last this many weeks at the athlete's volume is due
ROTATE_M = 60_000  # a runner of this many metres a week wears two pairs in turn
# sport -> (gear type, part, weekly metres from which the rule applies, what one is called, and several)
VOLUME: dict[str, tuple[str, str | None, float, str, str]] = {
    "run": ("shoes", None, 10_000.0, "running shoes", "shoes"),
    "ride": ("component", "chain", 50_000.0, "a chain", "chains"),
}
_SCORE = {"wear": 3.0, "volume": 2.0, "co_purchase": 1.0, "sport": 0.5}


@dataclass(frozen=True, slots=True)
class Need:
    sport: str
    gear_type: str
    component: str | None
    why: str
    price: int | None  # what the athlete paid for such an item before, when known


@dataclass(frozen=True, slots=True)
class Pick:
    source: str  # wear, volume, co_purchase, sport
    product: Mapping
    why: str
    weight: float = 0.0  # orders picks of one source: wear ratio, athletes who bought both


def _km(metres: float) -> str:
    return f"{metres / 1000:,.0f} km"


def _active(gear: Iterable[Mapping]) -> list[Mapping]:
    return [item for item in gear if not item.get("retired")]


def worn(gear: Iterable[Mapping]) -> list[tuple[Mapping, str]]:
    """Active items past ``NEAR_END`` of their life, most worn first, each with why in words."""
    found = []
    for item in _active(gear):
        life = item.get("life_m")
        if life and item["used_m"] >= NEAR_END * life:
            name = item.get("name") or item["type"]
            why = (f"your {name} has done {_km(item['used_m'])} of its {_km(life)} "
                   f"({item['used_m'] / life:.0%}): a replacement of the same kind"
                   + (", priced like it" if item.get("price") else ""))  # fmt: skip
            found.append((item, why))
    return sorted(found, key=lambda pair: -pair[0]["used_m"] / pair[0]["life_m"])


def needs(gear: Iterable[Mapping], weekly_m: Mapping[str, float]) -> list[Need]:
    """What the athlete's volume asks for that their gear will not cover ``WEEKS_AHEAD`` weeks more."""
    active = _active(gear)
    found = []
    for sport, (gear_type, component, least, called, several) in VOLUME.items():
        week = float(weekly_m.get(sport) or 0.0)
        if week < least:
            continue
        fits = [i for i in active if i["type"] == gear_type and i.get("component") == component
                and (not i.get("sports") or sport in i["sports"])]  # fmt: skip
        left = sum(max(0.0, (i.get("life_m") or life_m(gear_type, component, None) or 0) - i["used_m"]) for i in fits)
        paid = [i["price"] for i in fits if i.get("price")]
        price = sorted(paid)[len(paid) // 2] if paid else None
        verb = "run" if sport == "run" else "ride"
        if not fits:
            why = f"you {verb} {_km(week)} a week and have no {called} in your gear"
        elif left < WEEKS_AHEAD * week:
            why = f"you {verb} {_km(week)} a week: your {several} have {_km(left)} left, about {left / week:.0f} weeks"
        elif sport == "run" and week >= ROTATE_M and len(fits) == 1:
            why = f"you run {_km(week)} a week: a second pair to wear in turn lasts both longer"
        else:
            continue
        found.append(Need(sport, gear_type, component, why, price))
    return found


def rank(picks: Iterable[Pick], owned: set[str], limit: int) -> list[dict]:
    """One entry per product, in stock and not owned: its best reason first, the others after it."""
    chosen: dict[str, dict] = {}
    for pick in picks:
        product = pick.product
        if product["availability"] != "in_stock" or product["id"] in owned:
            continue
        score = _SCORE[pick.source] + max(0.0, min(pick.weight, 0.99))
        entry = chosen.get(product["id"])
        if entry is None:
            chosen[product["id"]] = {"product": dict(product), "score": score, "source": pick.source, "why": [pick.why]}
        elif pick.why not in entry["why"]:
            if score > entry["score"]:
                entry.update(score=score, source=pick.source)
                entry["why"].insert(0, pick.why)
            else:
                entry["why"].append(pick.why)
    ranked = sorted(chosen.values(), key=lambda e: (-e["score"], e["product"]["price"], e["product"]["id"]))
    return [{**e, "score": round(e["score"], 3)} for e in ranked[:limit]]
