"""One 3-hour ride matched against 1,000,000 segments: the H3 index and exact check, a naive scan, and PostGIS.

The segments lie in a 120 km square around the ride (a dense metropolitan area: about 70 segments
a km²), 4 vertices each, 200 m to 20 km long (median 1.5 km); 50 of them are stretches of the
ride's own road, so there is something to find. Arena's path is ``SegmentIndex.match``: the
track's H3 cells, the candidates whose start and end cells are among them, the exact check of
each. The naive scan keeps the segments whose bounding box (widened by the start tolerance)
meets the track's, then runs the same exact check on every one of them. Both must find the same
efforts. CPU time is ``time.process_time`` (this process only). PostGIS is the third peer when
the PostgreSQL server has the extension (``loadtest/postgis_segments.py``: a scratch database,
dropped at the end, the same segments, the same match in SQL); otherwise it says why it is skipped.
Run: ``.venv/bin/python -m loadtest.bench_segments`` (``--segments 20000`` for a quick run).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from typing import Any

import numpy as np

from engine.segments import START_TOLERANCE_M, SegmentIndex, Track, match
from engine.segments.geometry import EARTH_RADIUS_M
from loadtest import postgis_segments

M_PER_DEG = EARTH_RADIUS_M * math.pi / 180.0
LAT0, LON0 = 48.85, 2.35


def _ride(rng: np.random.Generator, hours: float = 3.0, speed: float = 8.0) -> tuple[np.ndarray, Track]:
    """A winding road (x, y metres, a vertex every 5 m) and a noisy 1 Hz recording along it."""
    seconds = int(hours * 3600)
    n = int(seconds * speed / 5.0) + 1
    heading = np.cumsum(rng.normal(0.0, 0.02, n))
    road = np.zeros((n, 2))
    road[1:] = np.cumsum(np.column_stack((np.cos(heading[1:]), np.sin(heading[1:]))) * 5.0, axis=0)
    road -= road.mean(axis=0)
    t = np.arange(seconds, dtype=float)
    x, y = np.interp(t * speed, np.arange(n) * 5.0, road[:, 0]), np.interp(t * speed, np.arange(n) * 5.0, road[:, 1])
    noise = rng.normal(0.0, 4.0, (seconds, 2))
    lat, lon = _degrees(x + noise[:, 0], y + noise[:, 1])
    return road, Track(lat, lon, 1_800_000_000.0 + t)


def _degrees(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return LAT0 + y / M_PER_DEG, LON0 + x / (M_PER_DEG * math.cos(math.radians(LAT0)))


def _segments(rng: np.random.Generator, road: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` segments as vertex arrays and offsets: 50 pieces of the road, the rest scattered."""
    pieces = []
    for start in rng.integers(0, len(road) - 4_100, 50):
        piece = road[start : start + rng.integers(40, 4_000) : 10]
        pieces.append(piece)
    scattered = count - len(pieces)
    length = np.clip(rng.lognormal(math.log(1_500.0), 0.8, scattered), 200.0, 20_000.0)
    origin = rng.uniform(-60_000.0, 60_000.0, (scattered, 2))
    heading = rng.uniform(0.0, 2 * math.pi, scattered)
    vertices = np.empty((scattered, 4, 2))
    for k in range(4):  # a gentle bend at each of the two middle vertices
        bend = heading + (rng.normal(0.0, 0.3, scattered) if k else 0.0)
        step = np.column_stack((np.cos(bend), np.sin(bend))) * (length / 3.0)[:, None]
        vertices[:, k] = origin + step * k
    sizes = np.concatenate(([len(p) for p in pieces], np.full(scattered, 4)))
    xy = np.concatenate([*pieces, vertices.reshape(-1, 2)])
    lat, lon = _degrees(xy[:, 0], xy[:, 1])
    return lat, lon, np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)


def _cpu(work, rounds: int) -> tuple[float, Any]:
    times, answer = [], None
    for _ in range(rounds):
        started = time.process_time()
        answer = work()
        times.append(time.process_time() - started)
    return statistics.median(times), answer


def _naive(index: SegmentIndex, lo_lat, hi_lat, lo_lon, hi_lon, track: Track) -> tuple[list, int]:
    margin_lat = START_TOLERANCE_M / M_PER_DEG
    margin_lon = margin_lat / math.cos(math.radians(LAT0))
    near = np.flatnonzero(
        (lo_lat - margin_lat <= track.lat.max())
        & (hi_lat + margin_lat >= track.lat.min())
        & (lo_lon - margin_lon <= track.lon.max())
        & (hi_lon + margin_lon >= track.lon.min())
    )
    return [(int(i), e) for i in near for e in match(track, index.shape(int(i)))], len(near)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1_000_000, help="how many segments (over 50)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of each peer; the median is shown")
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help=f"a server where the PostGIS peer may create and drop the database {postgis_segments.SCRATCH_DATABASE}",
    )
    args = parser.parse_args()
    if args.segments <= 50:
        parser.error("--segments must be over 50: 50 of them are pieces of the ride's road")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rng = np.random.default_rng(2026)

    road, track = _ride(rng)
    lat, lon, offsets = _segments(rng, road, args.segments)
    print(f"track: {len(track):,} points, {track.arc[-1] / 1000:.1f} km; segments: {args.segments:,}", flush=True)
    started = time.process_time()
    steps = np.hypot(np.diff(lat), np.diff(lon) * math.cos(math.radians(LAT0))) * M_PER_DEG
    steps[offsets[1:-1] - 1] = 0.0  # no step from one segment's last vertex to the next one's first
    lengths = np.add.reduceat(np.append(steps, 0.0), offsets[:-1])
    index = SegmentIndex(lat, lon, offsets, lengths)
    print(f"index built in {time.process_time() - started:.1f} s of CPU", flush=True)

    def arena() -> list:
        return index.match(Track(track.lat, track.lon, track.t))

    arena_s, found = _cpu(arena, args.rounds)
    candidates = len(index.candidates(track))
    print(
        f"index + exact check: {arena_s * 1000:.1f} ms CPU (median of {args.rounds}), {candidates} candidates, "
        f"{len(found)} efforts"
    )

    bounds = [np.minimum.reduceat(a, offsets[:-1]) for a in (lat, lon)] + [
        np.maximum.reduceat(a, offsets[:-1]) for a in (lat, lon)
    ]
    naive_s, (naive_found, scanned) = _cpu(lambda: _naive(index, bounds[0], bounds[2], bounds[1], bounds[3], track), 1)
    assert naive_found == found, "the naive scan and the index disagree"
    print(
        f"naive scan: {naive_s * 1000:.0f} ms CPU, {scanned:,} bounding boxes met the track's, same {len(found)} efforts"
    )
    print(f"ratio: the index is {naive_s / arena_s:.0f}x less CPU than the naive scan")
    peer = asyncio.run(postgis_segments.run(args.postgres_url, lat, lon, offsets, track, args.rounds))
    if isinstance(peer, str):
        print(f"PostGIS: {peer}")
        return
    print("\n".join(postgis_segments.describe(peer, arena_s, naive_s)))
    arena_ids = sorted({i for i, _ in found})
    if peer.matched == arena_ids:
        print(f"PostGIS matched the same {len(arena_ids)} segments")
    else:
        print(
            f"PostGIS and the index disagree: only the index {sorted(set(arena_ids) - set(peer.matched))}, "
            f"only PostGIS {sorted(set(peer.matched) - set(arena_ids))}"
        )


if __name__ == "__main__":
    main()
