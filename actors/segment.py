"""One segment: its definition, the efforts on it, and its leaderboards.

Efforts arrive as ``segment.effort`` (the segment shard matched a workout's track) and leave as
``segment.effort_removed`` (the workout was deleted). An effort from a private, followers-only or
flagged workout counts for its athlete and is shown to nobody else.

Bounded: each athlete's ``BEST_PER_ATHLETE`` fastest efforts, for ``ATHLETES_MOST`` athletes (past
that, a new athlete's effort takes the place of the slowest athlete's best, if faster); efforts of
the last ``LEGEND_DAYS`` days for the Local Legend, ``RECENT_MOST`` at most; the ids of
``GONE_MOST`` deleted workouts, so an effort that arrives after its workout's deletion is dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from actors.events import SEGMENT_EFFORT, SEGMENT_EFFORT_REMOVED
from engine.entity import Entity, query, update
from engine.errors import NotFound, Rejected
from engine.events import Event, To, react

__all__ = ["Segment", "BOARDS", "BEST_PER_ATHLETE", "ATHLETES_MOST", "LEGEND_DAYS", "NAME_LENGTH"]

BOARDS = ("overall", "year", "friends", "legend")
BEST_PER_ATHLETE = 5
ATHLETES_MOST = 50_000
LEGEND_DAYS = 90
RECENT_MOST = 20_000
GONE_MOST = 2_000
NAME_LENGTH = 100


class Segment(Entity):
    kind = "segment"

    def __init__(self, entity_id: str) -> None:
        super().__init__(entity_id)
        self.definition: dict[str, Any] | None = None
        self.best: dict[str, list[dict]] = {}  # athlete -> their fastest efforts, fastest first
        self.recent: list[dict] = []  # every effort of the last LEGEND_DAYS days, oldest first
        self.gone: list[str] = []  # deleted workouts, oldest first

    def _require(self) -> dict:
        if self.definition is None:
            raise NotFound("no such segment")
        return self.definition

    @update
    def define(self, creator: str, name: str, sport: str, lat: list, lon: list, length_m: float, shard: str) -> dict:
        if self.definition is not None:
            raise Rejected("this segment already exists")
        self.definition = {
            "id": self.id,
            "creator": creator,
            "name": name,
            "sport": sport,
            "lat": lat,
            "lon": lon,
            "length_m": length_m,
            "shard": shard,
            "created": self.now,
        }
        return self.info()

    @query
    def info(self) -> dict:
        definition = self._require()
        return {
            **{k: v for k, v in definition.items() if k not in ("lat", "lon", "shard")},
            "points": [[a, o] for a, o in zip(definition["lat"], definition["lon"])],
            "athletes": len(self.best),
        }

    @react(SEGMENT_EFFORT, to=To.field("segment_id"))
    def on_effort(self, event: Event) -> None:
        fields = event.fields
        if fields["workout_id"] in self.gone:
            return
        effort = {
            "workout_id": fields["workout_id"],
            "start": fields["start"],
            "elapsed_s": fields["elapsed_s"],
            "shown": fields["visibility"] == "public" and not fields["flagged"],
        }
        owner = fields["owner"]
        if owner not in self.best and len(self.best) >= ATHLETES_MOST:
            slowest = max(self.best, key=lambda a: self.best[a][0]["elapsed_s"])
            if self.best[slowest][0]["elapsed_s"] <= effort["elapsed_s"]:
                return
            del self.best[slowest]
        mine = self.best.setdefault(owner, [])
        mine.append(effort)
        mine.sort(key=lambda e: (e["elapsed_s"], e["start"]))
        del mine[BEST_PER_ATHLETE:]
        horizon = self.now - LEGEND_DAYS * 86_400
        self.recent = [e for e in self.recent if e["start"] >= horizon]
        if effort["start"] >= horizon:
            self.recent.append({**effort, "owner": owner})
            self.recent.sort(key=lambda e: e["start"])
            del self.recent[:-RECENT_MOST]

    @react(SEGMENT_EFFORT_REMOVED, to=To.field("segment_id"))
    def on_effort_removed(self, event: Event) -> None:
        workout_id, owner = event.fields["workout_id"], event.fields["owner"]
        self.gone = [*self.gone, workout_id][-GONE_MOST:]
        mine = [e for e in self.best.get(owner, []) if e["workout_id"] != workout_id]
        if mine:
            self.best[owner] = mine
        else:
            self.best.pop(owner, None)
        self.recent = [e for e in self.recent if e["workout_id"] != workout_id]

    @query
    def leaderboard(
        self,
        board: str = "overall",
        viewer: str | None = None,
        friends: list | None = None,
        since: float | None = None,
        limit: int = 50,
    ) -> dict:
        """Rows of ``{"rank", "athlete", "elapsed_s", "start", "workout_id"}`` (``legend``: ``efforts``), and the
        viewer's own row. ``year`` counts efforts from ``since``; ``friends`` the athletes in ``friends``;
        ``legend`` the most efforts since ``since`` (the last 90 days)."""
        self._require()
        if board not in BOARDS:
            raise Rejected(f"a board is one of {', '.join(BOARDS)}")
        limit = max(1, min(int(limit), 100))

        def shown(athlete: str, effort: dict) -> bool:
            return effort["shown"] or athlete == viewer

        if board == "legend":
            counts = Counter(
                e["owner"] for e in self.recent if shown(e["owner"], e) and (since is None or e["start"] >= since)
            )
            ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            rows = [{"rank": n + 1, "athlete": a, "efforts": c} for n, (a, c) in enumerate(ranked)]
        else:
            pool = set(friends or ()) | ({viewer} if viewer else set()) if board == "friends" else None
            bests = []
            for athlete, efforts in self.best.items():
                if pool is not None and athlete not in pool:
                    continue
                candidates = [
                    e
                    for e in efforts
                    if shown(athlete, e) and (board != "year" or since is None or e["start"] >= since)
                ]
                if board == "year":
                    candidates += [
                        e
                        for e in self.recent
                        if e["owner"] == athlete and shown(athlete, e) and since is not None and e["start"] >= since
                    ]
                if candidates:
                    best = min(candidates, key=lambda e: (e["elapsed_s"], e["start"]))
                    bests.append((athlete, best))
            bests.sort(key=lambda item: (item[1]["elapsed_s"], item[1]["start"], item[0]))
            rows = [
                {
                    "rank": n + 1,
                    "athlete": athlete,
                    "elapsed_s": e["elapsed_s"],
                    "start": e["start"],
                    "workout_id": e["workout_id"],
                }
                for n, (athlete, e) in enumerate(bests)
            ]
        return {"board": board, "rows": rows[:limit], "me": next((r for r in rows if r["athlete"] == viewer), None)}
