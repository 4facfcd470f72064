"""Views: the board as plain values (leaderboards, totals, official results) for spectators and APIs.

Every value is what msgpack carries: numpy scalars become Python numbers, NaN and
±inf become None. Spectators see an athlete's state (``STATES``): their status, or
provisional while a fair-play flag is open.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.race import ranking
from engine.race.columns import ATHLETE_STATUSES, DSQ, FINISHED, FLAG_BIT, RACING, WITHDRAWN
from engine.race.fair_play import RULES

if TYPE_CHECKING:
    from engine.race.board import RaceBoard

__all__ = ["STATES", "distances", "leaderboard", "plain", "results", "states", "totals"]

STATES = (*ATHLETE_STATUSES, "provisional")  # what spectators see: a status, or provisional while flagged
PROVISIONAL = STATES.index("provisional")


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value msgpack carries; NaN and ±inf become None."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def states(board: RaceBoard, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Each athlete's code in ``STATES``: a status, or provisional (flagged, still racing or finished)."""
    rows = board._rows(np.asarray(indices, np.int64))
    status = board._col["status"][rows]
    provisional = (board._col["flags"][rows] != 0) & ((status == RACING) | (status == FINISHED))
    return np.where(provisional, PROVISIONAL, status).astype(np.uint8)


def distances(board: RaceBoard, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Current distance of each athlete in ``indices``, as an array (for packed views)."""
    return board._col["distance"][board._rows(np.asarray(indices, np.int64))]


def leaderboard(board: RaceBoard, n: int = 100, category: int | None = None) -> dict:
    """The top ``n`` (DSQ and withdrawn athletes left out) and the race totals, as plain values."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a number of places, not {n!r}")
    order = ranking.rank(board, category)
    ranked = order[board._col["status"][order] < WITHDRAWN]
    top = ranked[:n]
    ahead = np.concatenate(([-1], top[:-1])) if len(top) else top
    leader = int(ranked[0]) if len(ranked) else None
    return {
        "kind": board.kind,
        "sport": board.sport,
        "category": category,
        "entries": _entries(board, top, leader, ahead),
        "totals": totals(board),
    }


def _entries(board: RaceBoard, who: np.ndarray, leader: int | None, ahead: np.ndarray) -> list[dict]:
    """Leaderboard rows of ``who`` (ranked from 1), with their gaps to ``leader`` and to the athlete ``ahead``."""
    c = board._col
    scored, when = ranking.scored(board)
    start = c["start_t"][: board.size]
    finish = ranking.finish_elapsed(board)

    def gaps(behind: np.ndarray, front: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        metres = scored[front] - scored[behind]
        seconds = np.full(len(behind), np.nan)
        if board.kind in ("distance", "course"):
            line = c["cp"][behind].astype(np.int64) - 1
            both = (line >= 0) & (c["cp"][front] > line)
            safe = np.maximum(line, 0)
            seconds = np.where(
                both,
                (c["splits"][behind, safe] - start[behind]) - (c["splits"][front, safe] - start[front]),
                np.nan,
            )
        return metres, seconds

    has_ahead = ahead >= 0
    gap_m, gap_s = gaps(who, np.full(len(who), leader if leader is not None else 0))
    ahead_m, ahead_s = gaps(who, np.where(has_ahead, ahead, who))
    elapsed = when[who] - start[who]
    moving = (scored[who] > 0) & (elapsed > 0)
    projected_s = projected_m = np.full(len(who), np.nan)
    if board.kind in ("distance", "course"):
        pace = np.where(moving, elapsed * board.target / np.where(moving, scored[who], 1.0), np.nan)
        projected_s = np.where(finish[who] < np.inf, finish[who], pace)
    elif board.kind == "time":
        projected_m = np.where(moving, scored[who] * board.duration / np.where(moving, elapsed, 1.0), np.nan)
    statuses = [STATES[code] for code in states(board, who).tolist()]
    columns = {
        "participant": who,
        "category": c["category"][who],
        "distance_m": scored[who],
        "gap_m": gap_m,
        "gap_s": gap_s,
        "gap_ahead_m": np.where(has_ahead, ahead_m, np.nan),
        "gap_ahead_s": np.where(has_ahead, ahead_s, np.nan),
        "finish_s": finish[who],
        "projected_finish_s": projected_s,
        "projected_distance_m": projected_m,
    }
    lists = {k: v.tolist() for k, v in columns.items()}
    return [
        {"rank": 1 + i, **{k: plain(v[i]) for k, v in lists.items()}, "status": statuses[i]} for i in range(len(who))
    ]


def totals(board: RaceBoard) -> dict:
    n, c = board.size, board._col
    status = c["status"][:n]
    counts = np.bincount(status, minlength=len(ATHLETE_STATUSES)).tolist()
    provisional = int(np.count_nonzero((c["flags"][:n] != 0) & ((status == RACING) | (status == FINISHED))))
    out = {
        "participants": n,
        **dict(zip(ATHLETE_STATUSES, counts)),
        "provisional": provisional,
        "flagged": len({f["participant"] for f in board._flags if f["decision"] is None}),
        "samples": board.counts["accepted"],
    }
    if board.kind == "collective":
        out.update(
            distance_m=board._total,
            target_m=board.target_m,
            progress=min(board._total / board.target, 1.0),
            reached_t=board._reached_t,
        )
    else:
        out["distance_m"] = float(c["distance"][:n][status != DSQ].sum())
    return out


def results(board: RaceBoard) -> list[dict]:
    """Official results in rank order; a place only for finishers. Statuses include dns, dnf and dsq."""
    order = ranking.rank(board)
    c = board._col
    scored, _ = ranking.scored(board)
    finish = ranking.finish_elapsed(board)
    status = c["status"][order]
    places = np.cumsum(status == FINISHED)
    splits = c["splits"][order] - c["start_t"][order][:, None] if board.kind == "course" else None
    rows = []
    for i, who in enumerate(order.tolist()):
        flags = int(c["flags"][who])
        row = {
            "place": int(places[i]) if status[i] == FINISHED else None,
            "participant": who,
            "category": int(c["category"][who]),
            "status": ATHLETE_STATUSES[status[i]],
            "provisional": bool(flags) and status[i] in (RACING, FINISHED),
            "distance_m": float(scored[who]),
            "finish_s": plain(finish[who]),
            "flags": [rule for rule in RULES if flags & FLAG_BIT[rule]],
        }
        if splits is not None:
            row["splits_s"] = [plain(x) for x in splits[i].tolist()]
        rows.append(row)
    return rows
