"""Where a group is, as coarse as its owner chooses, and which groups are near a point (H3 cells).

A group's exact point is kept by the group alone. What anyone else sees, the directory included,
is the centre of the H3 cell that holds it at the resolution the owner picked, so a distance
shown in search cannot be used to find the exact point again. Near-me search looks up the
cells of ``INDEX_RESOLUTION`` within reach of the searcher (``h3.grid_disk``), then measures the
great-circle distance to each candidate's shown point.
"""

from __future__ import annotations

import math

import h3

__all__ = ["SHOWN", "INDEX_RESOLUTION", "MAX_RADIUS_KM", "shown_point", "index_cell", "cells_near", "distance_km"]

# How coarse a group's place is shown: H3 resolution (average cell edge), or not at all.
SHOWN: dict[str, int | None] = {"hidden": None, "region": 4, "city": 6, "area": 8}  # 22.6 km, 3.2 km, 0.5 km
INDEX_RESOLUTION = 5  # cells of about 8.5 km edge: the directory's spatial index
MAX_RADIUS_KM = 200.0
_EDGE_KM = h3.average_hexagon_edge_length(INDEX_RESOLUTION, "km")
# Ring k of a disk lies at least k * 1.5 edges from its centre; cells vary in size across the
# globe (a factor of about two between the smallest and the largest), hence the margin.
_RING_KM = 1.5 * _EDGE_KM / 1.25


def shown_point(lat: float, lon: float, shown: str) -> list[float] | None:
    """The point anyone but the group's admins sees: the centre of its cell at the chosen coarseness."""
    resolution = SHOWN[shown]
    if resolution is None:
        return None
    centre_lat, centre_lon = h3.cell_to_latlng(h3.latlng_to_cell(lat, lon, resolution))
    return [round(centre_lat, 5), round(centre_lon, 5)]


def index_cell(point: list[float]) -> str:
    return h3.latlng_to_cell(point[0], point[1], INDEX_RESOLUTION)


def cells_near(lat: float, lon: float, radius_km: float) -> list[str]:
    """Every index cell that may hold a point within ``radius_km`` of ``(lat, lon)``."""
    reach = min(radius_km, MAX_RADIUS_KM) + 2 * _EDGE_KM * 1.25  # the searcher's and the point's cells
    rings = math.ceil(reach / _RING_KM)
    return list(h3.grid_disk(h3.latlng_to_cell(lat, lon, INDEX_RESOLUTION), rings))


def distance_km(a: list[float] | tuple[float, float], b: list[float] | tuple[float, float]) -> float:
    return h3.great_circle_distance((a[0], a[1]), (b[0], b[1]), "km")
