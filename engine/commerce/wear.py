"""Gear types and when each is worn out: documented defaults an athlete may override per item."""

from __future__ import annotations

__all__ = ["GEAR_TYPES", "COMPONENTS", "DEFAULT_LIFE_M", "WARN_AT", "life_m", "worn_ratio"]

GEAR_TYPES = ("shoes", "bike", "component", "other")
COMPONENTS = ("chain", "tyres", "cassette", "brake_pads", "other")

# Metres of use before an item should be replaced (docs/commerce.md): running shoes 800 km, a chain
# 3,000 km, tyres 5,000 km; a bike frame 50,000 km. None: no threshold unless the athlete sets one.
DEFAULT_LIFE_M: dict[str, int | None] = {
    "shoes": 800_000,
    "bike": 50_000_000,
    "component.chain": 3_000_000,
    "component.tyres": 5_000_000,
    "component.cassette": 10_000_000,
    "component.brake_pads": 2_000_000,
    "component.other": None,
    "other": None,
}
WARN_AT = 0.9  # the warning goes out once an item passes 90% of its life


def life_m(gear_type: str, component: str | None, override: int | None) -> int | None:
    """The item's life in metres: the athlete's own figure, else the default of its type."""
    if override is not None:
        return override
    key = f"component.{component or 'other'}" if gear_type == "component" else gear_type
    return DEFAULT_LIFE_M.get(key)


def worn_ratio(used_m: float, life: int | None) -> float | None:
    return None if not life else used_m / life
