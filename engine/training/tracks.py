"""Track math for recorded workouts: distance, moving time, climb, splits and best efforts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["BEST_EFFORT_DISTANCES_M", "Split", "TrackPoint", "TrackSummary", "summarize"]

EARTH_RADIUS_M = 6_371_008.8
# Slower than this the athlete is standing, not moving (a slow walk is ~1 m/s).
MIN_MOVING_SPEED_M_S = 0.5
# Without any distance on the track, a recording gap longer than this is a pause.
PAUSE_GAP_S = 30.0
# Barometers and GPS altitudes wander by a metre or two; a climb only counts once it
# rises this far above the last low point.
ELEVATION_HYSTERESIS_M = 3.0
# A final split shorter than this is rounding, not running.
MIN_PARTIAL_SPLIT_M = 1.0
BEST_EFFORT_DISTANCES_M = {
    "1k": 1_000.0,
    "5k": 5_000.0,
    "10k": 10_000.0,
    "half": 21_097.5,
    "marathon": 42_195.0,
}


@dataclass(frozen=True, slots=True)
class TrackPoint:
    t: float
    lat: float | None = None
    lon: float | None = None
    ele: float | None = None
    distance: float | None = None
    hr: int | None = None
    power: int | None = None
    cadence: int | None = None


@dataclass(frozen=True, slots=True)
class Split:
    index: int
    distance_m: float
    time_s: float
    pace_s_per_km: float
    elevation_gain_m: float


@dataclass(frozen=True, slots=True)
class TrackSummary:
    distance_m: float
    elapsed_s: float
    moving_s: float
    elevation_gain_m: float
    pace_s_per_km: float | None
    avg_hr: float | None
    max_hr: int | None
    avg_power: float | None
    splits: tuple[Split, ...]
    best_efforts: dict[str, float]
    points: int

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["splits"] = [asdict(split) for split in self.splits]
        return data


def summarize(points: Sequence[TrackPoint]) -> TrackSummary:
    if len(points) == 0:
        raise ValueError("a track needs at least one point to be summarized, got none")
    columns = np.array([(p.t, p.lat, p.lon, p.ele, p.distance, p.hr, p.power) for p in points], dtype=float)
    if not np.isfinite(columns[:, 0]).all():
        raise ValueError("every track point needs a finite time in unix seconds")
    # np.unique sorts by time and keeps the first of points that share a timestamp.
    _, first = np.unique(columns[:, 0], return_index=True)
    t, lat, lon, ele, device_distance, hr, power = columns[first].T

    distance = _cumulative_distance(t, lat, lon, device_distance)
    dt = np.diff(t)
    if distance is None:
        distance = np.zeros_like(t)
        moving = dt <= PAUSE_GAP_S
    else:
        moving = np.diff(distance) >= MIN_MOVING_SPEED_M_S * dt
    moving_time = np.concatenate(([0.0], np.cumsum(np.where(moving, dt, 0.0))))
    climbed = _cumulative_gain(ele)

    total = float(distance[-1])
    moving_s = float(moving_time[-1])
    return TrackSummary(
        distance_m=total,
        elapsed_s=float(t[-1] - t[0]),
        moving_s=moving_s,
        elevation_gain_m=float(climbed[-1]),
        pace_s_per_km=moving_s / (total / 1000.0) if total > 0 else None,
        avg_hr=_mean(hr),
        max_hr=int(np.nanmax(hr)) if not np.isnan(hr).all() else None,
        avg_power=_mean(power),
        splits=_splits(distance, moving_time, climbed),
        best_efforts=_best_efforts(t, distance),
        points=len(t),
    )


def _cumulative_distance(t: np.ndarray, lat: np.ndarray, lon: np.ndarray, device: np.ndarray) -> np.ndarray | None:
    """Metres from the start at every point: the device's own odometer when it has one
    (wheel sensors and footpods beat GPS), else great-circle steps between GPS fixes;
    None for a track with neither. Points without either get the distance interpolated
    in time from their neighbours."""
    known = ~np.isnan(device)
    if known.any():
        at_known = np.maximum.accumulate(device[known])
    else:
        known = ~np.isnan(lat + lon)
        if np.count_nonzero(known) < 2:
            return None
        steps = _haversine(lat[known][:-1], lon[known][:-1], lat[known][1:], lon[known][1:])
        at_known = np.concatenate(([0.0], np.cumsum(steps)))
    distance = np.interp(t, t[known], at_known)
    return distance - distance[0]


def _haversine(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _cumulative_gain(ele: np.ndarray) -> np.ndarray:
    """Metres climbed up to every point. The reference level only moves once the altitude
    leaves a band of ±ELEVATION_HYSTERESIS_M around it, so jitter inside the band adds nothing."""
    gain = np.zeros_like(ele)
    known = np.flatnonzero(~np.isnan(ele))
    if known.size:
        reference = ele[known[0]]
        for i, level in zip(known.tolist(), ele[known].tolist()):
            if level >= reference + ELEVATION_HYSTERESIS_M:
                gain[i] = level - reference
                reference = level
            elif level <= reference - ELEVATION_HYSTERESIS_M:
                reference = level
    return np.cumsum(gain)


def _at_distances(distance: np.ndarray, values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``values`` (time, climb…) at the moment the track first reaches each target distance."""
    after = np.clip(np.searchsorted(distance, targets, side="left"), 1, len(distance) - 1)
    before = after - 1
    span = distance[after] - distance[before]
    fraction = np.divide(targets - distance[before], span, out=np.zeros_like(targets), where=span > 0)
    return values[before] + np.clip(fraction, 0.0, 1.0) * (values[after] - values[before])


def _splits(distance: np.ndarray, moving_time: np.ndarray, climbed: np.ndarray) -> tuple[Split, ...]:
    total = distance[-1]
    if len(distance) < 2 or total < MIN_PARTIAL_SPLIT_M:
        return ()
    marks = np.arange(0.0, total, 1000.0)
    if total - marks[-1] >= MIN_PARTIAL_SPLIT_M:
        marks = np.append(marks, total)
    times = np.diff(_at_distances(distance, moving_time, marks))
    gains = np.diff(_at_distances(distance, climbed, marks))
    lengths = np.diff(marks)
    return tuple(
        Split(
            index=i + 1, distance_m=length, time_s=time, pace_s_per_km=time / (length / 1000.0), elevation_gain_m=gain
        )
        for i, (length, time, gain) in enumerate(zip(lengths.tolist(), times.tolist(), gains.tolist()))
    )


def _best_efforts(t: np.ndarray, distance: np.ndarray) -> dict[str, float]:
    """Fastest time over each distance anywhere in the track. Time as a function of the
    window's position is piecewise linear, so its minimum has the window's start or its
    end on a recorded point: try both, interpolating the other end."""
    efforts: dict[str, float] = {}
    for name, length in BEST_EFFORT_DISTANCES_M.items():
        if distance[-1] < length:
            continue
        fits = distance + length <= distance[-1]
        from_starts = _at_distances(distance, t, distance[fits] + length) - t[fits]
        # Reversed, "first reaches" becomes "last was still ``length`` short of" each end.
        reaches = distance >= length
        from_ends = t[reaches] - _at_distances(-distance[::-1], t[::-1], length - distance[reaches])
        efforts[name] = float(min(from_starts.min(), from_ends.min()))
    return efforts


def _mean(values: np.ndarray) -> float | None:
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else None
