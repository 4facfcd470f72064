"""A new segment's backfill: the workouts stored before it, matched against it as a Ray job (docs/segments.md).

No index finds the workouts that pass a point, so the job lists every stored workout id (one Ray task
reads them from the store) and splits them into chunks of ``CHUNK``; a Ray task per chunk, at most
``IN_FLIGHT`` at a time, asks each workout of its chunk for its track when the track's bounds reach the
segment's start (``Workout.tracked_near``: the track as live matching gets it, privacy zones cut out,
with its visibility and flag), keeps those live matching would have sent to the segment's shard
(``track_shards``), and runs the shard's own match on them (``efforts_on``). The chunk's efforts go to
the segment (``Segment.backfill_checked``), which tells them as ``segment.effort``: the boards and the
athletes' records take them as they take live ones. A chunk reported twice (Ray runs a task again when
its worker dies) counts once, and an effort told twice (live and backfilled, or a run again) too.
"""

from __future__ import annotations

import asyncio
import logging

import ray

from actors.segment import Segment
from actors.segment_index import efforts_on
from actors.segment_shards import track_shards
from actors.workout import Workout
from engine.cluster import Cluster
from engine.errors import EngineError
from engine.ray_host import HostSpec, load_store_opener
from engine.segments import SegmentIndex
from serve.context import Arena

__all__ = ["CHUNK", "IN_FLIGHT", "start_backfill"]

log = logging.getLogger(__name__)

CHUNK = 200  # workouts one task checks
IN_FLIGHT = 4  # chunk tasks running at once: the hosts answer live traffic too
_ASKED = 50  # workouts asked in one call to the hosts


async def start_backfill(arena: Arena, segment_id: str) -> dict | None:
    """Start a new run of the segment's backfill (it goes on after the answer): its state as it starts.
    ``NotFound`` for a segment that does not exist."""
    job = await arena.ref(Segment, segment_id).ask(Segment.start_backfill)
    arena.spawn(_run(arena.cluster, segment_id, job), f"the backfill of segment {segment_id}")
    return await arena.ref(Segment, segment_id).ask(Segment.backfill_state)


async def _run(cluster: Cluster, segment_id: str, job: dict) -> None:
    segment = cluster.ref(Segment, segment_id)
    run = job["run"]
    try:
        ids = await _workout_ids.remote(cluster.spec)
        chunks = [ids[i : i + CHUNK] for i in range(0, len(ids), CHUNK)]
        await segment.ask(Segment.backfill_planned, run=run, workouts=len(ids), chunks=len(chunks))
        log.info("segment %s: backfill run %d checks %d workouts in %d chunks", segment_id, run, len(ids), len(chunks))
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(number: int, chunk: list[str]) -> None:
            async with slots:
                await _check.remote(cluster.spec, cluster.namespace, segment_id, job, number, chunk)

        await asyncio.gather(*(one(n, chunk) for n, chunk in enumerate(chunks)))
    except Exception as error:  # its state says so; an operator runs it again (arena segments backfill)
        log.warning("segment %s: backfill run %d failed: %s", segment_id, run, error)
        await segment.ask(Segment.backfill_failed, run=run, error=f"{type(error).__name__}: {error}")
        return
    log.info("segment %s: backfill run %d done", segment_id, run)


@ray.remote(num_cpus=0, max_retries=3)
def _workout_ids(spec: HostSpec) -> list[str]:
    async def read() -> list[str]:
        store = load_store_opener(spec.open_store)(spec.store_url)
        await store.open()
        try:
            return sorted(await store.entity_ids(Workout.kind))
        finally:
            await store.close()

    return asyncio.run(read())


@ray.remote(num_cpus=1, max_retries=3, retry_exceptions=True)
def _check(spec: HostSpec, namespace: str, segment_id: str, job: dict, number: int, workout_ids: list[str]) -> None:
    asyncio.run(_check_chunk(Cluster(spec, namespace=namespace), segment_id, job, number, workout_ids))


async def _check_chunk(cluster: Cluster, segment_id: str, job: dict, number: int, workout_ids: list[str]) -> None:
    ids, index = [segment_id], SegmentIndex.of([(job["lat"], job["lon"])])
    found: list[dict] = []
    for first in range(0, len(workout_ids), _ASKED):
        asked = workout_ids[first : first + _ASKED]
        answers = await cluster.deliver(
            [(Workout.kind, w, "tracked_near", {"lat": job["lat"][0], "lon": job["lon"][0]}, None) for w in asked]
        )
        for answer in answers:
            if isinstance(answer, EngineError):
                raise answer  # a host restarting: Ray runs the chunk again
            if answer is not None and job["shard"] in track_shards(answer["track"]):
                found += efforts_on(ids, index, answer)
    await cluster.ref(Segment, segment_id).ask(
        Segment.backfill_checked, run=job["run"], chunk=number, checked=len(workout_ids), efforts=found
    )
