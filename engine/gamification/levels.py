"""Levels: a curve where each level asks 100 points more than the one before.

Reaching level ``L`` takes ``50 · L · (L − 1)`` points in all: 100 for level 2 (about two hours of
hard training), 1,000 for level 5, 4,500 for level 10, 19,000 for level 20. So the level is
``⌊(1 + √(1 + 8p/100)) / 2⌋`` for ``p`` points, up to ``MAX_LEVEL``.
"""

from __future__ import annotations

import math

__all__ = ["MAX_LEVEL", "STEP", "level_for", "points_for"]

STEP = 100  # level L+1 asks STEP · L points more than level L
MAX_LEVEL = 100


def points_for(level: int) -> int:
    """The points that reach ``level`` (level 1 is where everybody starts)."""
    if not 1 <= level <= MAX_LEVEL:
        raise ValueError(f"a level is 1 to {MAX_LEVEL}, not {level!r}")
    return STEP * level * (level - 1) // 2


def level_for(points: int) -> int:
    if points < 0:
        raise ValueError(f"points are never negative, not {points!r}")
    return min(MAX_LEVEL, (1 + math.isqrt(1 + 8 * points // STEP)) // 2)
