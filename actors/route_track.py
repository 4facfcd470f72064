"""A route's track: measured from the points it was made of, thinned to a bounded size, written as GPX 1.1.

Points are ``[lat, lon, ele | None, seconds from the start]``. Distance and climb are measured on every
point given (before thinning, so a route keeps the figures of its source); the route keeps at most
``MAX_POINTS`` of them (every n-th, the last one always) and an elevation profile of ``PROFILE_POINTS``
``[metres along, elevation]`` pairs, evenly spaced along the route.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import numpy as np

from engine.segments.geometry import EARTH_RADIUS_M

__all__ = [
    "SURFACES",
    "MAX_POINTS",
    "PROFILE_POINTS",
    "MIN_LENGTH_M",
    "MAX_LENGTH_M",
    "BadTrack",
    "measure",
    "to_gpx",
]

SURFACES = ("road", "gravel", "trail", "track", "mixed")
MAX_POINTS = 2_000
PROFILE_POINTS = 200
MIN_LENGTH_M = 100.0
MAX_LENGTH_M = 2_000_000.0  # 2,000 km: a week of riding; more is a broken file
_CLIMB_HYSTERESIS_M = 3.0  # as the workout summaries (engine/training/tracks.py)
_GPX_NS = "http://www.topografix.com/GPX/1/1"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # characters XML 1.0 cannot hold


class BadTrack(ValueError):
    """The points cannot make a route; the message says why."""


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _clean(points: list[list]) -> list[list]:
    kept: list[list] = []
    for point in points:
        if not (isinstance(point, list | tuple) and len(point) >= 2):
            continue
        lat, lon = point[0], point[1]
        if lat is None or lon is None:
            continue
        if not (_finite(lat) and _finite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise BadTrack(f"a point at latitude {lat!r}, longitude {lon!r} is not on Earth")
        ele = point[2] if len(point) > 2 and _finite(point[2]) and -1_000 <= point[2] <= 10_000 else None
        t = point[3] if len(point) > 3 and _finite(point[3]) else float(len(kept))
        kept.append([round(float(lat), 6), round(float(lon), 6), None if ele is None else round(float(ele), 1), t])
    return kept


def _steps_m(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Great-circle length of each edge, in metres (``path_length_m``, edge by edge)."""
    la, lo = np.radians(lat), np.radians(lon)
    a = np.sin(np.diff(la) / 2) ** 2 + np.cos(la[:-1]) * np.cos(la[1:]) * np.sin(np.diff(lo) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _climb(elevations: list[float]) -> tuple[float, float]:
    """Gain and loss, counting a change only once it passes the hysteresis from the last turn."""
    gain = loss = 0.0
    if not elevations:
        return gain, loss
    anchor = elevations[0]
    for ele in elevations[1:]:
        if ele - anchor >= _CLIMB_HYSTERESIS_M:
            gain += ele - anchor
            anchor = ele
        elif anchor - ele >= _CLIMB_HYSTERESIS_M:
            loss += anchor - ele
            anchor = ele
    return gain, loss


def measure(points: list[list]) -> dict:
    """The route's figures and its bounded track and profile; ``BadTrack`` when they cannot make a route."""
    track = _clean(points)
    if len(track) < 2:
        raise BadTrack("a route needs a GPS track of at least two points")
    lat = np.array([p[0] for p in track])
    lon = np.array([p[1] for p in track])
    along = np.concatenate(([0.0], np.cumsum(_steps_m(lat, lon))))
    length = float(along[-1])
    if not MIN_LENGTH_M <= length <= MAX_LENGTH_M:
        raise BadTrack(f"a route is {MIN_LENGTH_M:.0f} m to {MAX_LENGTH_M / 1000:,.0f} km long, not {length:,.0f} m")
    with_ele = [(float(along[i]), p[2]) for i, p in enumerate(track) if p[2] is not None]
    gain, loss = _climb([e for _, e in with_ele])
    profile: list[list[float]] = []
    if len(with_ele) >= 2:
        at = np.linspace(0.0, length, PROFILE_POINTS)
        ele = np.interp(at, [d for d, _ in with_ele], [e for _, e in with_ele])
        profile = [[round(float(d), 1), round(float(e), 1)] for d, e in zip(at, ele)]
    step = max(1, math.ceil(len(track) / MAX_POINTS))
    kept = track[::step]
    if kept[-1] is not track[-1]:
        kept = [*kept[: MAX_POINTS - 1], track[-1]]
    start = track[0][3]
    return {
        "distance_m": round(length, 1),
        "elevation_gain_m": round(gain, 1),
        "elevation_loss_m": round(loss, 1),
        "start_point": [round(track[0][0], 5), round(track[0][1], 5)],
        "points": [[p[0], p[1], p[2], round(p[3] - start, 1)] for p in kept],
        "profile": profile,
    }


def to_gpx(name: str, sport: str, points: list[list], start: float) -> bytes:
    """A GPX 1.1 track of the route: every point with its elevation and a time (``start`` plus its offset),
    so the file imports again anywhere, Arena's importer included."""

    text = escape(_NOT_XML.sub("", name))

    def when(offset: float) -> str:
        return datetime.fromtimestamp(start + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    rows = []
    for lat, lon, ele, offset in points:
        inner = (f"<ele>{ele:.1f}</ele>" if ele is not None else "") + f"<time>{when(offset)}</time>"
        rows.append(f'<trkpt lat="{lat:.6f}" lon="{lon:.6f}">{inner}</trkpt>')
    document = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<gpx version="1.1" creator="Arena" xmlns="{_GPX_NS}">'
        f"<metadata><name>{text}</name></metadata>"
        f"<trk><name>{text}</name><type>{escape(sport)}</type><trkseg>{''.join(rows)}</trkseg></trk></gpx>\n"
    )
    return document.encode()
