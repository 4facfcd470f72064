"""Many segments, and the few a track could have covered: an index of H3 cells.

Each segment is filed under the H3 cell (resolution ``RESOLUTION``, edges of about 174 m) of its
start, with the cell of its end beside it. A track's cells are those of points taken every
``TRACK_STEP_M`` along it, widened by one ring: a track passing within 25 m of a start has a
point within 25 + 15 m of it, and two points that close lie in one cell or in neighbours. A
segment is a candidate when both its start cell and its end cell are among the track's; only
candidates get the exact check (``engine.segments.matching``). The index is arrays sorted by
start cell, looked up with ``searchsorted``: about 40 bytes a segment plus its polyline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from h3.api import basic_int as h3

from engine.segments.geometry import Track
from engine.segments.matching import Effort, SegmentShape, match

__all__ = ["RESOLUTION", "TRACK_STEP_M", "SegmentIndex", "cell_of", "track_cells"]

RESOLUTION = 9
TRACK_STEP_M = 30.0


def cell_of(lat: float, lon: float) -> int:
    return h3.latlng_to_cell(lat, lon, RESOLUTION)


def _cells(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return np.fromiter((h3.latlng_to_cell(a, o, RESOLUTION) for a, o in zip(lat.tolist(), lon.tolist())), np.uint64)


def track_cells(track: Track) -> np.ndarray:
    """The sorted cells that may hold the start or end of a segment this track covers."""
    if len(track) < 2:
        return np.zeros(0, dtype=np.uint64)
    at = np.arange(0.0, track.arc[-1] + TRACK_STEP_M, TRACK_STEP_M)
    lat, lon = np.interp(at, track.arc, track.lat), np.interp(at, track.arc, track.lon)
    visited = np.unique(_cells(lat, lon))
    ring = {c for cell in visited.tolist() for c in h3.grid_disk(cell, 1)}
    return np.sort(np.fromiter(ring, np.uint64, len(ring)))


class SegmentIndex:
    """Segments ``0..n-1`` as one array of polyline vertices cut by ``offsets``."""

    def __init__(self, lat: np.ndarray, lon: np.ndarray, offsets: np.ndarray, lengths: np.ndarray | None = None):
        self.lat, self.lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        if np.any(np.diff(self.offsets) < 2):
            raise ValueError("a segment's polyline needs at least two points")
        first, last = self.offsets[:-1], self.offsets[1:] - 1
        self.lengths = (
            np.asarray(lengths, dtype=float)
            if lengths is not None
            else np.array([SegmentShape.of(*self._polyline(i)).length_m for i in range(len(first))])
        )
        start_cells = _cells(self.lat[first], self.lon[first])
        self.end_cells = _cells(self.lat[last], self.lon[last])
        self._by_start = np.argsort(start_cells, kind="stable")
        self._sorted_starts = start_cells[self._by_start]

    @classmethod
    def of(cls, polylines: Sequence[tuple[Sequence[float], Sequence[float]]]) -> SegmentIndex:
        """An index of ``[(lats, lons), ...]``."""
        sizes = [len(lat) for lat, _ in polylines]
        offsets = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        lat = np.concatenate([np.asarray(a, dtype=float) for a, _ in polylines]) if polylines else np.zeros(0)
        lon = np.concatenate([np.asarray(o, dtype=float) for _, o in polylines]) if polylines else np.zeros(0)
        return cls(lat, lon, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _polyline(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return self.lat[lo:hi], self.lon[lo:hi]

    def shape(self, i: int) -> SegmentShape:
        lat, lon = self._polyline(i)
        return SegmentShape(lat, lon, float(self.lengths[i]))

    def candidates(self, track: Track) -> np.ndarray:
        """Segments whose start cell and end cell both lie among the track's cells."""
        cells = track_cells(track)
        if cells.size == 0 or len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        lo = np.searchsorted(self._sorted_starts, cells, "left")
        hi = np.searchsorted(self._sorted_starts, cells, "right")
        counts = hi - lo
        if not counts.any():
            return np.zeros(0, dtype=np.int64)
        # every position lo..hi-1 of every cell, without a Python loop
        steps = np.ones(int(counts.sum()), dtype=np.int64)
        heads = np.concatenate(([0], np.cumsum(counts)[:-1]))[counts > 0]
        steps[heads] = lo[counts > 0] - np.concatenate(([0], (hi[counts > 0] - 1)[:-1]))
        found = self._by_start[np.cumsum(steps)]
        ends = self.end_cells[found]
        at = np.minimum(np.searchsorted(cells, ends), len(cells) - 1)
        return np.sort(found[cells[at] == ends])

    def match(self, track: Track) -> list[tuple[int, Effort]]:
        """Every effort of the track on any indexed segment: ``(segment, effort)`` in segment order."""
        return [(int(i), effort) for i in self.candidates(track) for effort in match(track, self.shape(int(i)))]
