"""What others see of an athlete's tracks: their privacy zones applied (docs/privacy.md).

The owner sees everything. Anyone else gets a workout's track without the part before it first
leaves the owner's zones and after it last enters one (``engine.privacy_zones.visible_range``),
and no start point that lies inside a zone.
"""

from __future__ import annotations

from collections.abc import Iterable

from actors.account import Account
from engine.errors import EngineError
from engine.privacy_zones import Zone, inside, visible_range
from serve.context import Arena

__all__ = ["zones_of", "hide_summary", "hide_workout", "shown_to"]


async def zones_of(arena: Arena, owners: Iterable[str]) -> dict[str, list[Zone]]:
    """Each owner's zones, in one batched call (an account that is gone has none)."""
    owners = list(dict.fromkeys(owners))
    answers = await arena.cluster.deliver([(Account.kind, owner, "zones", None, None) for owner in owners])
    return {
        owner: [] if isinstance(zones, EngineError) else [Zone(z["lat"], z["lon"], z["radius_m"]) for z in zones]
        for owner, zones in zip(owners, answers)
    }


def hide_summary(summary: dict, zones: list[Zone]) -> dict:
    start = summary.get("start_point")
    if zones and isinstance(start, list | tuple) and len(start) >= 2 and inside(start[0], start[1], zones):
        return {**summary, "start_point": None}
    return summary


def hide_workout(workout: dict, zones: list[Zone]) -> dict:
    """A workout's full view (card, splits, track) as others may see it."""
    if not zones:
        return workout
    shown = {k: v for k, v in hide_summary(workout, zones).items() if k != "shared"}
    track = workout.get("track")
    if track:
        fixes = [p for p in track if p[0] is not None and p[1] is not None]
        first, end = visible_range(fixes, zones)
        shown = {**shown, "track": fixes[first:end], "track_hidden": len(fixes) - (end - first)}
    return shown


async def shown_to(arena: Arena, viewer: str | None, owner: str, summaries: list[dict]) -> list[dict]:
    """``owner``'s workout summaries as ``viewer`` may see them."""
    if viewer == owner or not summaries:
        return summaries
    zones = (await zones_of(arena, [owner]))[owner]
    return [hide_summary(s, zones) for s in summaries]
