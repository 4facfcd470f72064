"""Scoring: how each race kind turns accepted samples into distances, lines crossed and splits.

Race kinds (``RACE_KINDS``):

- ``distance``: first to ``target_m``. The finish time is interpolated between the
  last sample before the line and the first one on or past it.
- ``course``: checkpoints at cumulative distances; the last one is the finish.
  Splits are interpolated like the finish.
- ``time``: most distance in ``duration_s`` from each athlete's own start. A sample
  past the window counts only up to the window's end, interpolated.
- ``collective``: the field's total distance toward ``target_m``; athletes are ranked
  by their contribution.

Starts: ``start_mode="mass"`` starts every clock at the gun; ``"rolling"`` opens the
start and each athlete's clock starts at their first sample inside ``start_window_s``.
``distance`` in a sample is cumulative metres since the athlete's start; samples timed
before it are tracked (order, duplicates) but neither score nor go through fair play.

Cumulative distance only moves forward, and the finish (or window-end) brackets keep
the latest sample before the line and the earliest one past it, so the same samples in
any order give the same board.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.race.columns import DNF, DNS, DSQ, FINISHED, RACING

if TYPE_CHECKING:
    from engine.race.board import RaceBoard

__all__ = ["RACE_KINDS", "MAX_CHECKPOINTS", "interp", "score", "keep_last_distance"]

RACE_KINDS = ("distance", "time", "course", "collective")
MAX_CHECKPOINTS = 1000

Samples = dict[str, np.ndarray]  # one round of accepted samples, column by column


def interp(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, x: Any) -> np.ndarray:
    span = x1 - x0
    safe = np.where(span > 0, span, 1.0)
    return y0 + np.where(span > 0, (x - x0) / safe, 1.0) * (y1 - y0)


def score(board: RaceBoard, s: Samples, new: np.ndarray, out: dict[str, int]) -> tuple[Samples, np.ndarray] | None:
    """Score one round of accepted samples (``new``: newer than any before); returns the ones
    timed inside the athlete's race (from their start to the race's end), None if none is."""
    c = board._col
    p, t = s["p"], s["t"]
    start = c["start_t"][p]
    if board.start_mode == "rolling":
        opened = c["open_t"][p]
        window = math.inf if board.start_window_s is None else board.start_window_s
        starting = (t >= opened) & (t <= opened + window) & ~(start <= t)
        if starting.any():
            start = np.where(starting, t, start)
            c["start_t"][p] = start
    scoring = (t >= start) & (t <= board._ended)
    if not scoring.any():
        return None
    if not scoring.all():
        s = {k: v[scoring] for k, v in s.items()}
        new, start = new[scoring], start[scoring]
        p = s["p"]
    status = c["status"][p]
    c["status"][p] = np.where(status == DNS, RACING, status)
    if board.kind == "time":
        _score_time(board, s, start, out)
    else:
        _score_distance(board, s, start, out)
    return s, new


def keep_last_distance(board: RaceBoard, s: Samples, new: np.ndarray) -> None:
    """Remember each athlete's newest distance reading and its time (late samples leave it)."""
    c = board._col
    if not new.all():
        s = {k: v[new] for k, v in s.items()}
    p, ok = s["p"], s["d"] >= 0
    c["d_t"][p] = np.where(ok, s["t"], c["d_t"][p])
    c["d_last"][p] = np.where(ok, s["d"], c["d_last"][p])


def _score_distance(board: RaceBoard, s: Samples, start: np.ndarray, out: dict[str, int]) -> None:
    c = board._col
    p, t, d = s["p"], s["t"], s["d"]
    ok = d >= 0
    distance, dist_t = c["distance"][p], c["dist_t"][p]
    better = ok & ((d > distance) | ((d == distance) & (t < dist_t)))
    reached = np.where(better, d, distance)
    c["distance"][p] = reached
    c["dist_t"][p] = np.where(better, t, dist_t)
    if board.kind == "collective":
        _collect(board, p, t, reached - distance)
        return
    lines = board._lines
    passed = c["cp"][p].astype(np.int64)
    passing = np.searchsorted(lines, reached, side="right")
    cross = passing > passed
    lo_t, lo_d, hi_t, hi_d = c["lo_t"][p], c["lo_d"][p], c["hi_t"][p], c["hi_d"][p]
    # Before the first line, ``lo`` is the latest sample; after a line, the
    # bracket around it is narrowed by late samples that fall inside it.
    line = lines[np.maximum(passed - 1, 0)]
    below = ok & ~cross & ((passed == 0) | (d < line)) & (t > lo_t) & (t < hi_t)
    above = ok & ~cross & (passed > 0) & (d >= line) & (t < hi_t) & (t > lo_t)
    lo_t, lo_d = np.where(below, t, lo_t), np.where(below, d, lo_d)
    hi_t, hi_d = np.where(above, t, hi_t), np.where(above, d, hi_d)
    narrowed = (below | above) & (passed > 0)
    if narrowed.any():
        c["splits"][p[narrowed], passed[narrowed] - 1] = interp(
            lo_d[narrowed], lo_t[narrowed], hi_d[narrowed], hi_t[narrowed], line[narrowed]
        )
    if cross.any():
        # The sample before a newly crossed line: the latest one below it
        # (tracked before the first line; the last distance reading after),
        # else the athlete's start or the previous line.
        first = cross & (passed == 0)
        unknown = first & (lo_t == -np.inf)
        lo_t = np.where(unknown, start, lo_t)
        lo_d = np.where(unknown, 0.0, lo_d)
        prev_t, prev_d = c["d_t"][p], c["d_last"][p].astype(np.float64)
        later = cross & (passed > 0)
        previous = later & (prev_t < t)
        gone = later & ~previous
        back = np.maximum(passed - 1, 0)
        lo_t = np.where(previous, prev_t, np.where(gone, c["splits"][p, back], lo_t))
        lo_d = np.where(previous, prev_d, np.where(gone, lines[back], lo_d))
        hi_t, hi_d = np.where(cross, t, hi_t), np.where(cross, d, hi_d)
        for j in range(int(passed[cross].min()), int(passing[cross].max())):
            at = cross & (passed <= j) & (passing > j)
            c["splits"][p[at], j] = interp(lo_d[at], lo_t[at], hi_d[at], hi_t[at], lines[j])
        c["cp"][p] = passing
        status = c["status"][p]
        done = cross & (passing == len(lines)) & ((status == RACING) | (status == DNF))
        c["status"][p[done]] = FINISHED
        out["finished"] += int(np.count_nonzero(done))
    c["lo_t"][p], c["lo_d"][p], c["hi_t"][p], c["hi_d"][p] = lo_t, lo_d, hi_t, hi_d


def _score_time(board: RaceBoard, s: Samples, start: np.ndarray, out: dict[str, int]) -> None:
    c = board._col
    p, t, d = s["p"], s["t"], s["d"]
    ok = d >= 0
    end = start + board.duration
    within = ok & (t <= end)
    distance, dist_t = c["distance"][p], c["dist_t"][p]
    better = within & ((d > distance) | ((d == distance) & (t < dist_t)))
    c["distance"][p] = np.where(better, d, distance)
    c["dist_t"][p] = np.where(better, t, dist_t)
    lo_t, hi_t = c["lo_t"][p], c["hi_t"][p]
    below = within & (t > lo_t)
    above = ok & (t > end) & (t < hi_t)
    c["lo_t"][p] = np.where(below, t, lo_t)
    c["lo_d"][p] = np.where(below, d, c["lo_d"][p])
    c["hi_t"][p] = np.where(above, t, hi_t)
    c["hi_d"][p] = np.where(above, d, c["hi_d"][p])
    status = c["status"][p]
    done = ok & (t > end) & ((status == RACING) | (status == DNF))
    c["status"][p[done]] = FINISHED
    out["finished"] += int(np.count_nonzero(done))


def _collect(board: RaceBoard, p: np.ndarray, t: np.ndarray, gained: np.ndarray) -> None:
    gained = np.where(board._col["status"][p] == DSQ, 0.0, gained)
    if board._reached_t is None and board._total + gained.sum() >= board.target:
        by_time = np.argsort(t, kind="stable")
        running = board._total + np.cumsum(gained[by_time])
        board._reached_t = float(t[by_time][np.searchsorted(running, board.target)])
    board._total += float(gained.sum())
