"""PostGIS as the peer of ``bench_segments``: the same segments in a scratch database, the same match in SQL.

The segments are loaded with COPY as LineStrings in SRID 4326; a stored generated column holds each
one in the UTM zone of the track (metres; scale within 0.04% across the benchmark's square), and a
GiST index covers its start point. The query (``_MATCH``) is what a PostGIS user writes for "which
segments did this track cover", in four steps:

1. **Candidates**: segments whose start lies within ``START_TOLERANCE_M`` of the track, through the
   GiST index. The track is cut with ``ST_Subdivide`` first, the usual idiom for a long line: the
   index compares boxes, and the box of a whole 110 km ride holds much of the city.
2. **End**: their end within ``END_TOLERANCE_M`` of the track (``ST_DWithin``, on the few left).
3. **Order and length**: ``ST_LineLocatePoint`` of the start comes before that of the end, and the
   track between them is ``0.5 × length`` to ``1.5 × length + 200 m`` long.
4. **Follow**: Arena's samples of the segment (evenly spaced, every 25 m, 8 to 200 of them, by
   ``ST_LineInterpolatePoints``) each lie within ``FOLLOW_TOLERANCE_M`` of that piece of the track
   (``ST_LineSubstring``). ``ST_Covers(ST_Buffer(piece, 35), segment)`` gives the same answer here
   but buffering a noisy piece of track costs about 30 times as much.

Where it differs from Arena's check (``engine/segments/matching.py``): ``ST_LineLocatePoint`` takes the
track's single closest approach to each end, where Arena tries every pass, so a loop ridden twice is one
match, not two efforts, and a track that passed the end closest before it passed the start (an out and
back) is refused; the samples are not fitted in order (Arena's must fit the track in order), so a
turn-back plus a shortcut that stays near the track passes; Arena ignores track edges over 500 m (gaps
in the recording), PostGIS does not; distances are UTM metres, not Arena's local plane, so an end within
centimetres of the tolerance may fall either way. It answers segments, not efforts (no times).

Timing is the query's, median of the rounds: wall time on this loopback connection, the server
backend's CPU (``/proc/<pid>/schedstat``, when the server runs on this machine), and the execution
time ``EXPLAIN (ANALYZE, TIMING OFF)`` reports. Parallel workers are off, so the backend's CPU is all
of the query's, on one core, as Arena's matcher uses one; so is JIT: the planner's costs for geometry
functions cross ``jit_above_cost``, and compiling took seconds, several times the query.
"""

from __future__ import annotations

import json
import statistics
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.segments import END_TOLERANCE_M, FOLLOW_TOLERANCE_M, START_TOLERANCE_M, Track
from engine.segments.matching import _MAX_SAMPLES as MAX_SAMPLES  # the same sample count as Arena's check
from engine.segments.matching import _MIN_SAMPLES as MIN_SAMPLES
from engine.segments.matching import DETOUR_SLACK_M, MAX_DETOUR, SAMPLE_SPACING_M

__all__ = ["SCRATCH_DATABASE", "PostgisRun", "describe", "run"]

SCRATCH_DATABASE = "arena_bench_segments"

_MATCH = f"""
WITH track AS MATERIALIZED (
    SELECT ST_Transform($1::geometry, $2::integer) AS line
), starting AS (
    SELECT DISTINCT ON (s.id) s.id, s.geom_m
    FROM track t CROSS JOIN LATERAL ST_Subdivide(t.line, 256) AS p(piece)
    JOIN segments s ON ST_DWithin(ST_StartPoint(s.geom_m), p.piece, {START_TOLERANCE_M})
    ORDER BY s.id
), located AS MATERIALIZED (
    SELECT s.id, s.geom_m, ST_Length(s.geom_m) AS length_m, ST_Length(t.line) AS track_m,
           ST_LineLocatePoint(t.line, ST_StartPoint(s.geom_m)) AS a,
           ST_LineLocatePoint(t.line, ST_EndPoint(s.geom_m)) AS b
    FROM starting s, track t
    WHERE ST_DWithin(ST_EndPoint(s.geom_m), t.line, {END_TOLERANCE_M})
), fitted AS MATERIALIZED (
    SELECT l.id, l.geom_m, l.length_m,
           CASE WHEN l.a < l.b AND (l.b - l.a) * l.track_m
                     BETWEEN 0.5 * l.length_m AND {MAX_DETOUR} * l.length_m + {DETOUR_SLACK_M}
                THEN ST_LineSubstring(t.line, l.a, l.b) END AS piece
    FROM located l, track t
)
SELECT f.id, f.piece IS NOT NULL AND NOT EXISTS (
           SELECT FROM ST_Dump(ST_LineInterpolatePoints(f.geom_m, 1.0 / (LEAST(GREATEST(
               ceil(f.length_m / {SAMPLE_SPACING_M}) + 1, {MIN_SAMPLES}), {MAX_SAMPLES}) - 1))) AS d
           WHERE NOT ST_DWithin(d.geom, f.piece, {FOLLOW_TOLERANCE_M})
       ) AS covered
FROM fitted f
"""


@dataclass(frozen=True)
class PostgisRun:
    version: str
    load_s: float  # COPY of the segments, the UTM column computed on the way in
    index_s: float
    wall_s: float  # medians over the rounds
    cpu_s: float | None  # None when the server's process cannot be read from here
    execution_s: float
    planning_s: float
    candidates: int  # segments with start and end within tolerance of the track
    matched: list[int]


def _line(points: bytes) -> bytes:
    """An EWKB LineString in SRID 4326 of little-endian (lon, lat) doubles: geometry's binary format."""
    return struct.pack("<BIII", 1, 0x20000002, 4326, len(points) // 16) + points


def _points(lat: np.ndarray, lon: np.ndarray) -> bytes:
    return np.column_stack((lon, lat)).astype("<f8").tobytes()


def _rows(lat: np.ndarray, lon: np.ndarray, offsets: np.ndarray) -> Iterator[tuple[int, bytes]]:
    points = _points(lat, lon)
    for i, (lo, hi) in enumerate(zip(offsets[:-1].tolist(), offsets[1:].tolist())):
        yield i, _line(points[lo * 16 : hi * 16])


def _utm_srid(track: Track) -> int:
    lat, lon = float(np.median(track.lat)), float(np.median(track.lon))
    return (32600 if lat >= 0 else 32700) + int((lon + 180.0) // 6.0) % 60 + 1


def _cpu_s(pid: int) -> float | None:
    """CPU seconds of the server's backend ``pid``, or None when it is not a process of this machine."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
            return None
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


async def run(
    url: str, lat: np.ndarray, lon: np.ndarray, offsets: np.ndarray, track: Track, rounds: int
) -> PostgisRun | str:
    """The PostGIS peer's figures, or a sentence saying why it was skipped."""
    try:
        import asyncpg

        admin = await asyncpg.connect(url, timeout=5)
    except Exception as error:  # noqa: BLE001 - any failure to reach the server only skips the peer
        return f"skipped: PostgreSQL is not reachable at {url} ({error})"
    try:
        if not await admin.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'postgis'"):
            return (
                "skipped: the PostGIS extension is not installed on this server; install it with `make system` "
                "(Debian: apt-get install postgresql-15-postgis-3)"
            )
        print(
            f"PostGIS: loading {len(offsets) - 1:,} segments into the scratch database {SCRATCH_DATABASE}...",
            flush=True,
        )
        await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {SCRATCH_DATABASE}")
        try:
            conn = await asyncpg.connect(url, database=SCRATCH_DATABASE, timeout=5)
            try:
                return await _bench(conn, lat, lon, offsets, track, rounds)
            finally:
                await conn.close()
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {SCRATCH_DATABASE} WITH (FORCE)")
    finally:
        await admin.close()


async def _bench(conn, lat: np.ndarray, lon: np.ndarray, offsets: np.ndarray, track: Track, rounds: int) -> PostgisRun:
    srid = _utm_srid(track)
    await conn.execute("CREATE EXTENSION postgis")
    await conn.set_type_codec("geometry", encoder=bytes, decoder=bytes, format="binary")
    await conn.execute(
        f"""CREATE TABLE segments (
            id integer PRIMARY KEY,
            geom geometry(LineString, 4326) NOT NULL,
            geom_m geometry(LineString, {srid}) GENERATED ALWAYS AS (ST_Transform(geom, {srid})) STORED
        )"""
    )
    started = time.perf_counter()
    await conn.copy_records_to_table("segments", records=_rows(lat, lon, offsets), columns=["id", "geom"])
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    await conn.execute("CREATE INDEX segments_start ON segments USING gist (ST_StartPoint(geom_m))")
    await conn.execute("VACUUM ANALYZE segments")
    index_s = time.perf_counter() - started

    await conn.execute("SET max_parallel_workers_per_gather = 0")
    await conn.execute("SET jit = off")
    line = _line(_points(track.lat, track.lon))
    pid = await conn.fetchval("SELECT pg_backend_pid()")
    walls, cpus, rows = [], [], []
    for _ in range(rounds):
        cpu, started = _cpu_s(pid), time.perf_counter()
        rows = await conn.fetch(_MATCH, line, srid)
        walls.append(time.perf_counter() - started)
        after = _cpu_s(pid)
        if cpu is not None and after is not None:
            cpus.append(after - cpu)
    plans = [
        json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {_MATCH}", line, srid))[0]
        for _ in range(rounds)
    ]
    return PostgisRun(
        version=await conn.fetchval("SELECT postgis_lib_version()"),
        load_s=load_s,
        index_s=index_s,
        wall_s=statistics.median(walls),
        cpu_s=statistics.median(cpus) if len(cpus) == rounds else None,
        execution_s=statistics.median(p["Execution Time"] for p in plans) / 1000,
        planning_s=statistics.median(p["Planning Time"] for p in plans) / 1000,
        candidates=len(rows),
        matched=sorted(r["id"] for r in rows if r["covered"]),
    )


def describe(found: PostgisRun, arena_s: float, naive_s: float) -> list[str]:
    """Lines for the report: the figures beside Arena's and the naive scan's."""
    cpu = f"{found.cpu_s * 1000:.1f} ms backend CPU, " if found.cpu_s is not None else ""
    lines = [
        f"PostGIS {found.version}: loaded by COPY in {found.load_s:.1f} s, GiST index in {found.index_s:.1f} s",
        f"PostGIS query: {cpu}{found.wall_s * 1000:.1f} ms wall on loopback, server execution "
        f"{found.execution_s * 1000:.1f} ms + planning {found.planning_s * 1000:.1f} ms (EXPLAIN ANALYZE), "
        f"{found.candidates} candidates, {len(found.matched)} segments matched",
    ]
    spent = found.cpu_s if found.cpu_s is not None else found.execution_s
    what = "backend CPU" if found.cpu_s is not None else "server execution time"
    lines.append(
        f"ratios ({what}): PostGIS / index {spent / arena_s:.1f}x; naive scan / PostGIS {naive_s / spent:.1f}x"
    )
    return lines
