"""Privacy zones: the places (home, work) whose surroundings an athlete's tracks never show others.

A track that starts or ends in a zone is shown to others only from where it first leaves every
zone to where it last enters one (``visible_range``); a single point (where a workout started)
inside a zone is not shown at all. The owner always sees everything.

A zone's circle is not centred on the address the athlete gave: ``place_zone`` moves the centre
a random distance (up to half the radius) in a random direction and widens the circle so the
address stays inside by the full radius. Tracks then leave the zone on a circle whose centre is
not the address, so the points where many tracks appear cannot be fitted back to it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Zone", "place_zone", "inside", "visible_range", "MIN_RADIUS_M", "MAX_RADIUS_M", "MAX_ZONES"]

EARTH_RADIUS_M = 6_371_008.8
MIN_RADIUS_M = 200.0
MAX_RADIUS_M = 2_000.0
MAX_ZONES = 10


@dataclass(frozen=True, slots=True)
class Zone:
    lat: float  # the circle's centre (not the address: ``place_zone``)
    lon: float
    radius_m: float


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def _moved(lat: float, lon: float, bearing: float, distance_m: float) -> tuple[float, float]:
    p1, l1, d = math.radians(lat), math.radians(lon), distance_m / EARTH_RADIUS_M
    p2 = math.asin(math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))
    l2 = l1 + math.atan2(math.sin(bearing) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 540.0) % 360.0 - 180.0


def place_zone(lat: float, lon: float, radius_m: float, rng: random.Random | None = None) -> Zone:
    """The zone that hides ``radius_m`` around an address at ``lat``, ``lon``: its centre moved up
    to half the radius away at random, its radius widened by that much."""
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ValueError("a place is a latitude in [-90, 90] and a longitude in [-180, 180]")
    if not MIN_RADIUS_M <= radius_m <= MAX_RADIUS_M:
        raise ValueError(f"a privacy zone's radius is {MIN_RADIUS_M:.0f} to {MAX_RADIUS_M:.0f} m")
    rng = rng or random.SystemRandom()
    offset = rng.uniform(0.0, radius_m / 2)
    centre_lat, centre_lon = _moved(lat, lon, rng.uniform(0.0, 2 * math.pi), offset)
    return Zone(round(centre_lat, 6), round(centre_lon, 6), round(radius_m + offset + 1.0, 1))


def inside(lat: float, lon: float, zones: Sequence[Zone]) -> bool:
    return any(_distance_m(lat, lon, zone.lat, zone.lon) <= zone.radius_m for zone in zones)


def visible_range(points: Sequence[Sequence[float]], zones: Sequence[Zone]) -> tuple[int, int]:
    """``(first, end)``: others see ``points[first:end]`` (each point ``[lat, lon, ...]``); the part
    before the track first leaves every zone and after it last enters one is hidden. ``(0, 0)``
    when the whole track is inside zones."""
    if not zones:
        return 0, len(points)
    first = next((i for i, p in enumerate(points) if not inside(p[0], p[1], zones)), len(points))
    if first == len(points):
        return 0, 0
    last = next(i for i in range(len(points) - 1, first - 1, -1) if not inside(points[i][0], points[i][1], zones))
    return first, last + 1
