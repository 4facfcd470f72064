"""Ranking: the order of the field, best first, and each athlete's place.

Tie rule, in order:

1. DSQ and withdrawn athletes come last, in participant order.
2. ``distance`` and ``course``: finished before not finished, then the shorter finish
   time (from the athlete's own start).
3. ``course``, not finished: more checkpoints passed, then the earlier time at the last
   one passed.
4. The greater distance (capped at the target; in ``time`` races, the distance at the
   window's end).
5. The earlier time, from the athlete's own start, at which that distance was reached
   (for finishers, their finish time).
6. The lower participant index.

Times are compared exactly as stored; a first pass sorts on a 64-bit key (milliseconds,
millimetres) and only ties under that key are sorted again on the exact values.

``rank`` is a query; ``refresh`` ranks and keeps each athlete's place (``rank_of``) for
``place`` to look up in O(1), for whoever needs places fresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engine.race.columns import FINISHED, WITHDRAWN
from engine.race.scoring import interp

if TYPE_CHECKING:
    from engine.race.board import RaceBoard

__all__ = ["finish_elapsed", "place", "rank", "refresh", "scored"]

_MM = 2**44 - 1  # distances and times go into the coarse rank key as 44-bit milli-units


def _milli(values: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(np.floor(values * 1000.0), nan=_MM, posinf=_MM), 0, _MM).astype(np.uint64)


def scored(board: RaceBoard) -> tuple[np.ndarray, np.ndarray]:
    """Each athlete's scored distance and the unix time it was reached (inf: never)."""
    n, c = board.size, board._col
    distance, when = c["distance"][:n], c["dist_t"][:n]
    if board.kind in ("distance", "course"):
        return np.minimum(distance, board.target), when
    if board.kind == "collective":
        return distance, when
    start = c["start_t"][:n]
    end = start + board.duration
    hi_t = c["hi_t"][:n]
    lo_t = c["lo_t"][:n]
    known = lo_t > -np.inf
    at_end = interp(np.where(known, lo_t, start), np.where(known, c["lo_d"][:n], 0.0), hi_t, c["hi_d"][:n], end)
    taken = (hi_t < np.inf) & (at_end > distance)
    return np.where(taken, at_end, distance), np.where(taken, end, when)


def finish_elapsed(board: RaceBoard) -> np.ndarray:
    """Each athlete's finish time from their own start (inf: not finished)."""
    n, c = board.size, board._col
    if board.kind == "time":
        return np.where(c["status"][:n] == FINISHED, board.duration, np.inf)
    if board.kind == "collective":
        return np.full(n, np.inf)
    done = c["cp"][:n] == len(board._lines)
    return np.where(done, c["splits"][:n, -1] - c["start_t"][:n], np.inf)


def rank(board: RaceBoard, category: int | None = None) -> np.ndarray:
    """Participant indices, best first (the tie rule is in the module docstring)."""
    order = _order(board)
    if category is None:
        return order
    return order[board._col["category"][: board.size][order] == category]


def refresh(board: RaceBoard) -> np.ndarray:
    """Rank the field and keep each athlete's place for ``place``; returns the order."""
    order = _order(board)
    rank_of = np.empty(board.size, np.int64)
    rank_of[order] = np.arange(board.size)
    board.rank_of = rank_of
    return order


def place(board: RaceBoard, index: int) -> int | None:
    """1-based place overall as of the last ``refresh``; None for an athlete added since."""
    return int(board.rank_of[index]) + 1 if 0 <= index < len(board.rank_of) else None


def _order(board: RaceBoard) -> np.ndarray:
    n, c = board.size, board._col
    distance, when = scored(board)
    start = c["start_t"][:n]
    reached = np.nan_to_num(when - start, nan=np.inf)
    far = np.uint64(_MM) - _milli(distance)
    if board.kind in ("time", "collective"):
        coarse = far
        keys = [reached, -distance]
    else:
        finish = finish_elapsed(board)
        done = finish < np.inf
        reached = np.where(done, finish, reached)
        keys = [reached, -distance]
        if board.kind == "course":
            passed = c["cp"][:n].astype(np.int64)
            at_line = c["splits"][:n][np.arange(n), np.maximum(passed - 1, 0)] - start
            at_line = np.where(passed > 0, at_line, 0.0)
            rest = np.where(passed > 0, _milli(at_line), far)
            group: np.ndarray | np.uint64 = (len(board._lines) - passed + 1).astype(np.uint64)
            keys += [at_line, -passed]
        else:
            rest, group = far, np.uint64(1)
        coarse = np.where(done, _milli(finish), (group << np.uint64(44)) | rest)
        keys += [finish]
    out = c["status"][:n] >= WITHDRAWN
    coarse[out] = np.uint64(1 << 62) + np.flatnonzero(out).astype(np.uint64)
    order = np.argsort(coarse)
    ranked = coarse[order]
    tie = ranked[1:] == ranked[:-1]
    if tie.any():
        spots = np.flatnonzero(np.concatenate((tie, [False])) | np.concatenate(([False], tie)))
        tied = np.sort(order[spots])
        order[spots] = tied[np.lexsort([k[tied] for k in keys] + [coarse[tied]])]
    return order
