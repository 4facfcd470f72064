"""A group's weekly leaderboard, as each member shard keeps its part of it: per week, per member,
per sport, the distance, moving time, elevation gain and number of workouts.

Weeks run Monday 00:00 to Monday 00:00 UTC. A shard keeps the current week and the
``KEEP_WEEKS`` before it; a workout that starts earlier than that, or more than a day ahead of
the message that brings it, counts on no board. The group's board is the merge of its shards'
top rows (``merge``): each member is in exactly one shard, so the merge is exact.
"""

from __future__ import annotations

import heapq
from typing import Any

__all__ = ["METRICS", "WEEK_S", "KEEP_WEEKS", "week_of", "add", "take", "forget", "top", "row", "merge"]

WEEK_S = 7 * 86_400
KEEP_WEEKS = 4
_MONDAY = 4 * 86_400  # 1970-01-05, the first Monday after the epoch (a Thursday)
METRICS = ("distance_m", "moving_s", "elevation_m", "workouts")

Weeks = dict[str, dict[str, dict[str, list[float]]]]  # week start -> member -> sport -> totals
ALL = "*"  # a member's totals over every sport, kept beside the sports' so a board of all sports sorts once


def week_of(t: float) -> int:
    """The unix time of the Monday 00:00 UTC that starts the week holding ``t``."""
    return int(t - (t - _MONDAY) % WEEK_S)


def add(weeks: Weeks, now: float, member: str, start: float, sport: str, totals: tuple[float, float, float]) -> bool:
    """Count one workout; False when its week is no longer (or not yet) kept."""
    current = week_of(now)
    if not current - KEEP_WEEKS * WEEK_S <= start <= now + 86_400:
        return False
    for stale in [w for w in weeks if int(w) < current - KEEP_WEEKS * WEEK_S]:
        del weeks[stale]
    sports = weeks.setdefault(str(week_of(start)), {}).setdefault(member, {})
    for name in (sport, ALL):
        kept = sports.setdefault(name, [0.0, 0.0, 0.0, 0])
        kept[0] += totals[0]
        kept[1] += totals[1]
        kept[2] += totals[2]
        kept[3] += 1
    return True


def take(weeks: Weeks, member: str, week: int, sport: str, totals: tuple[float, float, float]) -> None:
    """Take back one workout ``add`` counted in ``week`` (it was edited or deleted); nothing if that week is gone."""
    sports = weeks.get(str(week), {}).get(member)
    if sports is None:
        return
    for name in (sport, ALL):
        kept = sports.get(name)
        if kept is None:
            continue
        kept[0] -= totals[0]
        kept[1] -= totals[1]
        kept[2] -= totals[2]
        kept[3] -= 1
        if kept[3] <= 0:
            del sports[name]
    if not sports:
        del weeks[str(week)][member]


def forget(weeks: Weeks, member: str) -> None:
    """A member who leaves leaves every board."""
    for members in weeks.values():
        members.pop(member, None)


def _row(member: str, totals: list[float]) -> dict[str, Any]:
    return {
        "user_id": member,
        "distance_m": round(totals[0], 1),
        "moving_s": round(totals[1], 1),
        "elevation_m": round(totals[2], 1),
        "workouts": int(totals[3]),
    }


def _key(metric: str):
    return lambda r: (-r[metric], r["user_id"])


def top(weeks: Weeks, week: int, sport: str | None, metric: str, limit: int) -> list[dict]:
    """The week's best ``limit`` by ``metric`` (in one sport, or all): a partial sort of the members."""
    at, name = METRICS.index(metric), sport or ALL
    members = weeks.get(str(week), {})
    ranked = heapq.nsmallest(limit, ((-t[at], m) for m, sports in members.items() if (t := sports.get(name))))
    return [_row(m, members[m][name]) for _, m in ranked]


def row(weeks: Weeks, week: int, sport: str | None, member: str) -> dict | None:
    totals = weeks.get(str(week), {}).get(member, {}).get(sport or ALL)
    return None if totals is None else _row(member, totals)


def merge(parts: list[list[dict]], metric: str, limit: int) -> list[dict]:
    """The group's top ``limit`` from its shards' own tops, ranked (1, 2, 3...)."""
    rows = sorted((r for part in parts for r in part), key=_key(metric))[:limit]
    return [{"rank": n, **r} for n, r in enumerate(rows, 1)]
