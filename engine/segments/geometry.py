"""Points in metres: a local plane around a track, distances from points to polylines.

An equirectangular plane at the track's middle latitude is exact enough here: across 300 km
north to south the scale of east-west distances drifts by under 1% at mid latitudes, so a
25 m tolerance is off by at most 25 cm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["EARTH_RADIUS_M", "Plane", "Track", "path_length_m", "resample", "point_to_edges"]

EARTH_RADIUS_M = 6_371_008.8
_M_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180.0
# An edge longer than this is a gap in the recording (a tunnel, a lost fix), not a path followed.
MAX_EDGE_M = 500.0


@dataclass(frozen=True)
class Plane:
    lat0: float
    lon0: float

    def xy(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        scale = _M_PER_DEGREE * math.cos(math.radians(self.lat0))
        return (np.asarray(lon) - self.lon0) * scale, (np.asarray(lat) - self.lat0) * _M_PER_DEGREE


def path_length_m(lat: np.ndarray, lon: np.ndarray) -> float:
    """Great-circle length of a polyline, in metres."""
    if len(lat) < 2:
        return 0.0
    la, lo = np.radians(lat), np.radians(lon)
    a = np.sin(np.diff(la) / 2) ** 2 + np.cos(la[:-1]) * np.cos(la[1:]) * np.sin(np.diff(lo) / 2) ** 2
    return float(2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))).sum())


def resample(lat: np.ndarray, lon: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points evenly spaced along a polyline, its ends included."""
    plane = Plane(float(lat[0]), float(lon[0]))
    x, y = plane.xy(lat, lon)
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))))
    at = np.linspace(0.0, arc[-1], count)
    return np.interp(at, arc, lat), np.interp(at, arc, lon)


def point_to_edges(
    px: float | np.ndarray, py: float | np.ndarray, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from points to edges a→b, and where on each edge (0..1) the nearest point lies; broadcasts
    (points as a column against edges as a row gives every pair)."""
    dx, dy = bx - ax, by - ay
    span = dx * dx + dy * dy
    u = np.clip(((px - ax) * dx + (py - ay) * dy) / np.where(span > 0, span, 1.0), 0.0, 1.0)
    return np.hypot(ax + u * dx - px, ay + u * dy - py), u


class Track:
    """A recorded track ready for matching: its points in a plane, their times, the distance along it,
    and the points sorted east to west for finding those near a place in ``log n``."""

    def __init__(
        self, lat: Sequence[float] | np.ndarray, lon: Sequence[float] | np.ndarray, t: Sequence[float] | np.ndarray
    ) -> None:
        lat_a, lon_a, t_a = (np.asarray(v, dtype=float) for v in (lat, lon, t))
        if not (lat_a.shape == lon_a.shape == t_a.shape and lat_a.ndim == 1):
            raise ValueError("a track needs as many latitudes, longitudes and times, one-dimensional")
        keep = np.isfinite(lat_a) & np.isfinite(lon_a) & np.isfinite(t_a)
        keep &= (np.abs(lat_a) <= 85.0) & (np.abs(lon_a) <= 180.0)
        lat_a, lon_a, t_a = lat_a[keep], lon_a[keep], t_a[keep]
        order = np.argsort(t_a, kind="stable")
        self.lat, self.lon, self.t = lat_a[order], lon_a[order], t_a[order]
        if len(self.t) < 2:
            self.plane = Plane(0.0, 0.0)
            self.x = self.y = self.arc = np.zeros(len(self.t))
            self.by_x = np.zeros(0, dtype=np.int64)
            self.edge_m = np.zeros(0)
            return
        self.plane = Plane(float(np.median(self.lat)), float(np.median(self.lon)))
        self.x, self.y = self.plane.xy(self.lat, self.lon)
        self.edge_m = np.hypot(np.diff(self.x), np.diff(self.y))
        self.arc = np.concatenate(([0.0], np.cumsum(self.edge_m)))
        self.by_x = np.argsort(self.x, kind="stable")
        self._sorted_x = self.x[self.by_x]
        followed = self.edge_m[self.edge_m <= MAX_EDGE_M]
        self.reach = float(followed.max()) if followed.size else 0.0  # the longest edge that counts

    def __len__(self) -> int:
        return len(self.t)

    def edges_near(self, x: float, y: float, radius: float) -> np.ndarray:
        """Indices ``i`` of the edges ``i → i+1`` that may pass within ``radius`` of ``(x, y)``, in order."""
        if len(self.t) < 2:
            return np.zeros(0, dtype=np.int64)
        margin = radius + self.reach
        lo, hi = np.searchsorted(self._sorted_x, (x - margin, x + margin))
        points = self.by_x[lo:hi]
        points = points[np.abs(self.y[points] - y) <= margin]
        edges = np.union1d(points, points - 1)
        edges = edges[(edges >= 0) & (edges < len(self.t) - 1)]
        return edges[self.edge_m[edges] <= MAX_EDGE_M]

    def at(self, edge: int, u: float) -> tuple[float, float]:
        """(time, distance along the track) at fraction ``u`` of edge ``edge``."""
        return (
            float(self.t[edge] + u * (self.t[edge + 1] - self.t[edge])),
            float(self.arc[edge] + u * self.edge_m[edge]),
        )
