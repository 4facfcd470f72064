"""One segment: its definition, the efforts on it, and its leaderboards.

Efforts arrive as ``segment.effort`` (the segment shard matched a workout's track) and leave as
``segment.effort_removed`` (the workout was deleted). An effort from a private, followers-only or
flagged workout counts for its athlete and is shown to nobody else.

Bounded: each athlete's ``BEST_PER_ATHLETE`` fastest efforts, for ``ATHLETES_MOST`` athletes (past
that, a new athlete's effort takes the place of the slowest athlete's best, if faster); efforts of
the last ``LEGEND_DAYS`` days for the Local Legend, ``RECENT_MOST`` at most; the ids of
``GONE_MOST`` deleted workouts, so an effort that arrives after its workout's deletion is dropped.
Each effort keeps its athlete's sex and age group (when they gave them): the boards by sex and age group
filter the same efforts, so they keep nothing more.

An effort is known by its workout and start: one told twice (by live matching and by the segment's
backfill, or by a backfill run again) counts once. The backfill (``serve/segment_backfill.py``) reports
here chunk by chunk, each chunk once per run, and the segment tells the efforts found as live matching does.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from actors.athlete import AGE_GROUPS, SEXES
from actors.erasing import pseudonymise
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
        self.backfill: dict[str, Any] | None = None  # its latest backfill's progress; "done": chunks reported

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

    def erase_user(self, user_id: str, stand_in: str) -> bool:
        """Their efforts leave every board (the boards are ranked when read, the athletes counted from
        ``best``); a segment they created stays, the road's, with no creator."""
        self.best.pop(user_id, None)
        self.recent = [effort for effort in self.recent if effort["owner"] != user_id]
        if self.definition is not None and self.definition["creator"] == user_id:
            self.definition = {**self.definition, "creator": ""}
        return pseudonymise(self, user_id, stand_in)

    @query
    def info(self) -> dict:
        definition = self._require()
        return {
            **{k: v for k, v in definition.items() if k not in ("lat", "lon", "shard")},
            "points": [[a, o] for a, o in zip(definition["lat"], definition["lon"])],
            "athletes": len(self.best),
            "backfill": self.backfill_state(),
        }

    @query
    def backfill_state(self) -> dict | None:
        """``{"run", "state", "workouts", "checked", "efforts", "chunks", "chunks_done", "started", "finished",
        "error"}``: ``state`` is ``listing``, ``running``, ``done`` or ``failed``."""
        self._require()
        if self.backfill is None:
            return None
        return {**{k: v for k, v in self.backfill.items() if k != "done"}, "chunks_done": len(self.backfill["done"])}

    @update
    def start_backfill(self) -> dict:
        """A new run, which supersedes any before it (their reports are ignored): what its tasks need to match."""
        definition = self._require()
        run = (self.backfill or {}).get("run", 0) + 1
        self.backfill = {"run": run, "state": "listing", "workouts": None, "checked": 0, "efforts": 0, "chunks": None,
                         "done": [], "started": self.now, "finished": None, "error": None}  # fmt: skip
        return {"run": run, **{k: definition[k] for k in ("lat", "lon", "shard")}}

    def _run(self, run: int) -> dict | None:
        return self.backfill if self.backfill is not None and self.backfill["run"] == run else None

    @update
    def backfill_planned(self, run: int, workouts: int, chunks: int) -> None:
        job = self._run(run)
        if job is not None and job["state"] == "listing":
            job.update(state="running" if chunks else "done", workouts=workouts, chunks=chunks)
            job["finished"] = None if chunks else self.now

    @update
    def backfill_checked(self, run: int, chunk: int, checked: int, efforts: list) -> None:
        """One chunk's workouts checked, and the efforts found on this segment, told as ``segment.effort``. A chunk
        reported again (a task Ray ran again after its worker died) changes nothing."""
        job = self._run(run)
        if job is None or job["state"] != "running" or chunk in job["done"]:
            return
        if not 0 <= chunk < job["chunks"] or any(fields.get("segment_id") != self.id for fields in efforts):
            raise Rejected("this report is not of this segment's backfill")
        for fields in efforts:
            self.emit(SEGMENT_EFFORT, **{"sex": None, "age_group": None, **fields})
        job["done"].append(chunk)
        job["checked"] += checked
        job["efforts"] += len(efforts)
        if len(job["done"]) == job["chunks"]:
            job.update(state="done", finished=self.now)

    @update
    def backfill_failed(self, run: int, error: str) -> None:
        job = self._run(run)
        if job is not None and job["state"] in ("listing", "running"):
            job.update(state="failed", finished=self.now, error=error[:500])

    def _held(self, owner: str, workout_id: str, start: float) -> bool:
        """Whether this effort is already counted (in the athlete's best, or among the recent ones)."""
        mine = self.best.get(owner, [])
        recent = (e for e in self.recent if e["owner"] == owner)
        return any(e["workout_id"] == workout_id and e["start"] == start for e in (*mine, *recent))

    @react(SEGMENT_EFFORT, to=To.field("segment_id"))
    def on_effort(self, event: Event) -> None:
        fields = event.fields
        if fields["workout_id"] in self.gone or self._held(fields["owner"], fields["workout_id"], fields["start"]):
            return
        effort = {
            "workout_id": fields["workout_id"],
            "start": fields["start"],
            "elapsed_s": fields["elapsed_s"],
            "shown": fields["visibility"] == "public" and not fields["flagged"],
            **{k: fields[k] for k in ("sex", "age_group") if fields.get(k) is not None},  # null: overall boards only
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
        sex: str | None = None,
        age_group: str | None = None,
    ) -> dict:
        """Rows of ``{"rank", "athlete", "elapsed_s", "start", "workout_id"}`` (``legend``: ``efforts``), and the
        viewer's own row. ``year`` counts efforts from ``since``; ``friends`` the athletes in ``friends``;
        ``legend`` the most efforts since ``since`` (the last 90 days). ``sex`` and ``age_group`` keep, on any
        board, the efforts whose athlete had that sex and age group when the workout was recorded."""
        self._require()
        if board not in BOARDS:
            raise Rejected(f"a board is one of {', '.join(BOARDS)}")
        if sex is not None and sex not in SEXES:
            raise Rejected(f"sex is one of {', '.join(SEXES)}")
        if age_group is not None and age_group not in AGE_GROUPS:
            raise Rejected(f"an age group is one of {', '.join(AGE_GROUPS)}")
        limit = max(1, min(int(limit), 100))

        def shown(athlete: str, effort: dict) -> bool:
            return (
                (effort["shown"] or athlete == viewer)
                and (sex is None or effort.get("sex") == sex)
                and (age_group is None or effort.get("age_group") == age_group)
            )

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
        me = next((r for r in rows if r["athlete"] == viewer), None)
        return {"board": board, "sex": sex, "age_group": age_group, "rows": rows[:limit], "me": me}
