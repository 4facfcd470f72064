"""How segments are addressed: the segment shard that indexes a segment, and the shards a track passes through.

A segment is filed in the shard named by the H3 cell (resolution ``SHARD_RESOLUTION``, edges of about
23 km) of its start. A workout's track is sent to every shard whose cell holds one of its points or a
point ``_REACH_DEG`` away from one (so a segment starting just across a cell border is not missed),
at most ``MAX_SHARDS_PER_TRACK``, those the track spends most points in: that bounds the work one
workout causes.
"""

from __future__ import annotations

from collections import Counter

import h3

__all__ = [
    "SHARD_RESOLUTION",
    "MAX_SHARDS_PER_TRACK",
    "MAX_TRACK_POINTS",
    "segment_shard",
    "track_shards",
    "timed_track",
]

SHARD_RESOLUTION = 4
MAX_SHARDS_PER_TRACK = 8
MAX_TRACK_POINTS = 1_000
_REACH_DEG = 0.003  # about 330 m north-south, 210 m east-west at 50°


def segment_shard(lat: float, lon: float) -> str:
    return h3.latlng_to_cell(lat, lon, SHARD_RESOLUTION)


def timed_track(track: list, start: float) -> list[list[float]]:
    """``[[lat, lon, unix seconds], ...]`` of a workout's stored track (``[lat, lon, ele, seconds from start]``);
    points without a place or a time are left out."""
    timed = []
    for point in track[: MAX_TRACK_POINTS * 2]:
        if len(point) >= 4 and point[0] is not None and point[1] is not None and point[3] is not None:
            timed.append([float(point[0]), float(point[1]), float(start) + float(point[3])])
    return timed[:: max(1, -(-len(timed) // MAX_TRACK_POINTS))]


def track_shards(track: list[list[float]]) -> list[str]:
    """The shards a track must be matched in, most visited first."""
    seen: Counter[str] = Counter()
    for lat, lon, _ in track:
        if not (-85 <= lat <= 85 and -180 <= lon <= 180):
            continue
        near = {
            h3.latlng_to_cell(lat + dlat, min(180.0, max(-180.0, lon + dlon)), SHARD_RESOLUTION)
            for dlat in (-_REACH_DEG, 0.0, _REACH_DEG)
            for dlon in (-_REACH_DEG, 0.0, _REACH_DEG)
        }
        seen.update(near)
    return [cell for cell, _ in seen.most_common(MAX_SHARDS_PER_TRACK)]
