"""The board's per-athlete columns: one numpy array per fact, indexed by participant.

Fair play keeps its own per-athlete record (``fair_play.columns``); the board sees its
fields as columns too, so a snapshot carries both. A row's ``status`` is a code in
``ATHLETE_STATUSES``, its ``sex`` an index in ``SEXES`` and its ``flags`` one bit per
fair-play rule (``FLAG_BIT``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.race.fair_play import RULES

__all__ = ["ATHLETE_STATUSES", "SEXES", "FLAG_BIT", "Column", "layout"]

ATHLETE_STATUSES = ("dns", "racing", "finished", "dnf", "withdrawn", "dsq")
DNS, RACING, FINISHED, DNF, WITHDRAWN, DSQ = range(len(ATHLETE_STATUSES))
SEXES = ("unknown", "men", "women")  # the W/kg caps of unknown are the men's
FLAG_BIT = {rule: np.uint16(1 << i) for i, rule in enumerate(RULES)}  # RULES only grows at its end: snapshots keep bits

Column = tuple[str, Any, float, tuple[int, ...]]  # name, dtype, the value of a fresh row, the shape of one row


def layout(lines: int) -> tuple[Column, ...]:
    """The board's own columns for a race with ``lines`` lines to cross (checkpoints, finish)."""
    nan, inf = math.nan, math.inf
    return (
        ("category", np.int32, 0, ()),
        ("weight", np.float32, nan, ()),
        ("sex", np.uint8, 0, ()),  # index in SEXES
        ("status", np.uint8, DNS, ()),
        ("flags", np.uint16, 0, ()),  # open fair-play flags, one bit per rule
        ("cleared", np.uint16, 0, ()),  # rules a reviewer accepted for this athlete
        ("open_t", np.float64, nan, ()),  # when the start opened for this athlete
        ("start_t", np.float64, nan, ()),  # this athlete's clock start
        ("last_seq", np.uint32, 0, ()),
        ("seen", np.uint64, 0, ()),  # anti-replay mask: bit k is last_seq - k
        ("last_t", np.float64, nan, ()),  # time of the newest seq; NaN: no sample yet
        ("d_t", np.float64, nan, ()),  # last scoring distance and its time
        ("d_last", np.float32, nan, ()),
        ("pos_t", np.float64, nan, ()),  # last known position
        ("lat", np.float64, nan, ()),
        ("lon", np.float64, nan, ()),
        ("distance", np.float64, 0.0, ()),  # furthest scoring distance
        ("dist_t", np.float64, inf, ()),  # when it was first reached
        ("cp", np.uint16, 0, ()),  # lines (checkpoints, finish) passed
        ("lo_t", np.float64, -inf, ()),  # latest sample before the line that brackets the result
        ("lo_d", np.float64, 0.0, ()),
        ("hi_t", np.float64, inf, ()),  # earliest sample on or past it
        ("hi_d", np.float64, 0.0, ()),
        ("splits", np.float64, nan, (lines,)),  # when each line was crossed
    )
