"""The exact check: did this track ride this segment, how many times, and how long did each take?

A track covers a segment when it passes within ``START_TOLERANCE_M`` of the segment's start, then
comes within ``FOLLOW_TOLERANCE_M`` of each of the segment's sample points in order (a discrete,
one-sided Fréchet test: the track may wander between samples but never skip one), then passes
within ``END_TOLERANCE_M`` of its end, covering at most ``MAX_DETOUR`` times the segment's length
(plus ``DETOUR_SLACK_M``) on the way. Each pass of the start is a chance of an effort, so a loop
ridden twice makes two efforts; efforts never overlap. The time of an effort comes from the
track's own points: at the start and at the end, the instant of closest approach, interpolated
on the track's edge between its two recorded points. When several passes of the start lead to one
end (a U-turn near the start), the effort starts at the last of them that still follows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from engine.segments.geometry import MAX_EDGE_M, Track, path_length_m, point_to_edges, resample

__all__ = [
    "START_TOLERANCE_M",
    "END_TOLERANCE_M",
    "FOLLOW_TOLERANCE_M",
    "MIN_LENGTH_M",
    "MAX_LENGTH_M",
    "MAX_DETOUR",
    "DETOUR_SLACK_M",
    "SAMPLE_SPACING_M",
    "Effort",
    "SegmentShape",
    "match",
]

START_TOLERANCE_M = 25.0
END_TOLERANCE_M = 25.0
FOLLOW_TOLERANCE_M = 35.0
MIN_LENGTH_M = 200.0
MAX_LENGTH_M = 50_000.0
MAX_DETOUR = 1.5
DETOUR_SLACK_M = 200.0
SAMPLE_SPACING_M = 25.0  # a sample of the segment every 25 m, from 8 samples to 200
_MIN_SAMPLES, _MAX_SAMPLES = 8, 200
_BLOCK, _BATCH = 128, 32  # edges and samples compared at once in the in-order search


@dataclass(frozen=True)
class SegmentShape:
    """A segment's polyline (degrees) and its great-circle length."""

    lat: np.ndarray
    lon: np.ndarray
    length_m: float

    @classmethod
    def of(cls, lat: np.ndarray, lon: np.ndarray) -> SegmentShape:
        lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
        return cls(lat, lon, path_length_m(lat, lon))

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        count = min(max(math.ceil(self.length_m / SAMPLE_SPACING_M) + 1, _MIN_SAMPLES), _MAX_SAMPLES)
        return resample(self.lat, self.lon, count)


@dataclass(frozen=True)
class Effort:
    start_t: float  # unix seconds, interpolated at the start
    end_t: float
    start_m: float  # distance along the track
    end_m: float

    @property
    def elapsed_s(self) -> float:
        return self.end_t - self.start_t


class _Crossing(NamedTuple):
    arc: float
    t: float
    edge: int


def _crossings(track: Track, x: float, y: float, tolerance: float) -> list[_Crossing]:
    """Each pass of the track within ``tolerance`` of a point, at its closest approach, in track order."""
    edges = track.edges_near(x, y, tolerance)
    if edges.size == 0:
        return []
    d, u = point_to_edges(x, y, track.x[edges], track.y[edges], track.x[edges + 1], track.y[edges + 1])
    near = np.flatnonzero(d <= tolerance)
    if near.size == 0:
        return []
    passes = np.split(near, np.flatnonzero(np.diff(edges[near]) > 1) + 1)
    found = []
    for run in passes:
        best = run[np.argmin(d[run])]
        edge = int(edges[best])
        t, arc = track.at(edge, float(u[best]))
        found.append(_Crossing(arc, t, edge))
    return found


def _follows(track: Track, sx: np.ndarray, sy: np.ndarray, first: int, last: int) -> bool:
    """Whether edges ``first..last`` come within tolerance of every sample, in order (earliest fit first:
    taking the earliest edge that fits each sample never rules out a fit that a later choice allows).
    Looks at ``_BLOCK`` edges from the last fit against the next ``_BATCH`` samples at a time."""
    j, at = 0, first
    while j < len(sx):
        hi = min(at + _BLOCK, last + 1)
        upto = min(j + _BATCH, len(sx))
        d, _ = point_to_edges(
            sx[j:upto, None],
            sy[j:upto, None],
            track.x[at:hi],
            track.y[at:hi],
            track.x[at + 1 : hi + 1],
            track.y[at + 1 : hi + 1],
        )
        fits = (d <= FOLLOW_TOLERANCE_M) & (track.edge_m[at:hi] <= MAX_EDGE_M)
        batch, lo, skip = j, at, 0
        while j < upto:
            row = fits[j - batch, skip:]
            k = int(row.argmax())
            if not row[k]:
                break
            skip += k
            j += 1
        at = lo + skip
        if j < upto:  # sample j fits no edge from ``at`` to ``hi``: look further on
            if hi > last:
                return False
            at = hi
    return True


def match(track: Track, shape: SegmentShape) -> list[Effort]:
    """Every effort of ``track`` on the segment ``shape``, in track order."""
    if len(track) < 2 or shape.length_m <= 0:
        return []
    sx0, sy0 = track.plane.xy(shape.lat[[0, -1]], shape.lon[[0, -1]])
    starts = _crossings(track, float(sx0[0]), float(sy0[0]), START_TOLERANCE_M)
    if not starts:
        return []
    ends = _crossings(track, float(sx0[1]), float(sy0[1]), END_TOLERANCE_M)
    if not ends:
        return []
    lat, lon = shape.samples()
    sx, sy = track.plane.xy(lat, lon)
    efforts: list[Effort] = []
    done_at = -math.inf
    for n, start in enumerate(starts):
        if start.arc < done_at:
            continue
        shortest, longest = start.arc + 0.5 * shape.length_m, start.arc + MAX_DETOUR * shape.length_m + DETOUR_SLACK_M
        for end in ends:
            if end.arc < shortest:
                continue
            if end.arc > longest:
                break
            if _follows(track, sx, sy, start.edge, end.edge):
                # The effort starts at the last pass of the start from which the track still follows the
                # segment to this end: a pass the other way, then a U-turn before it, is not the effort's.
                later = [s for s in starts[n + 1 :] if s.arc <= end.arc - 0.5 * shape.length_m]
                begun = next((s for s in reversed(later) if _follows(track, sx, sy, s.edge, end.edge)), start)
                efforts.append(Effort(begun.t, end.t, begun.arc, end.arc))
                done_at = end.arc
                break
    return efforts
