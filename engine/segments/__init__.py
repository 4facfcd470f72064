"""Segments: stretches of road or trail, and which tracks covered them (pure, numpy and h3).

``geometry`` projects points to metres and measures them; ``matching`` is the exact check of one
track against one segment; ``index`` finds the candidates among many segments with H3 cells.
"""

from __future__ import annotations

from engine.segments.geometry import Track, path_length_m, resample
from engine.segments.index import SegmentIndex
from engine.segments.matching import (
    END_TOLERANCE_M,
    FOLLOW_TOLERANCE_M,
    MAX_LENGTH_M,
    MIN_LENGTH_M,
    START_TOLERANCE_M,
    Effort,
    SegmentShape,
    match,
)

__all__ = [
    "END_TOLERANCE_M",
    "FOLLOW_TOLERANCE_M",
    "MAX_LENGTH_M",
    "MIN_LENGTH_M",
    "START_TOLERANCE_M",
    "Effort",
    "SegmentIndex",
    "SegmentShape",
    "Track",
    "match",
    "path_length_m",
    "resample",
]
