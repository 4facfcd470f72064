"""A live race of 10,000 and 50,000 riders: Arena's race actor against the peers a user would pick.

For each field: one race on its dedicated host (journal on SQLite, fair play on)
takes ``--seconds`` of 1 Hz telemetry as fast as it can, then ``--live-seconds``
paced in real time while a spectator cache (``serve.spectators``) refreshes
every ``--tick``; the cache's view then answers top-100, rank and "around me"
reads. The same samples then go through the peers: one Ray call per sample, a
Redis sorted set (``ZADD GT``) and a PostgreSQL table (batched upserts).
Everything runs on this machine over loopback. Run:
``.venv/bin/python -m loadtest.bench_race``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from actors.race import Race
from engine.cluster import Cluster
from engine.config import HostConfig
from engine.race import RaceBoard
from engine.ray_host import HostSpec
from engine.telemetry import SAMPLE_DTYPE, empty, encode
from serve.kinds import KINDS, OPEN_STORE
from serve.spectators import Spectators

ORGANIZER = "bench-organizer"
JOIN_CHUNK = 5_000
PEER_CHUNK = 1_000  # samples per ZADD / per upsert
SLOTS_PER_SECOND = 10  # the live phase sends every 100 ms: a tenth of the field each time
_TICKS = os.sysconf("SC_CLK_TCK")


class Riders:
    """A field of riders holding a steady pace each, so any instant yields every rider's sample."""

    def __init__(self, size: int, gun: float, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        rng = self._rng
        self.size = size
        self.gun = gun
        self.pace = rng.uniform(6.5, 9.5, size)  # m/s: ~8 m/s with per-rider variation
        self.offset = rng.uniform(0.0, 0.9, size)  # where in each second a rider's device reports
        self.power = rng.normal(200, 25, size).clip(120, 280)
        self.hr = rng.uniform(125, 160, size)
        self.cadence = rng.integers(80, 96, size)
        self.weight = rng.uniform(58, 92, size)
        heading = rng.uniform(0, 2 * np.pi, size)
        self._north, self._east = np.cos(heading) / 111_195, np.sin(heading) / 78_700

    def samples(self, who: np.ndarray, t: np.ndarray, seq: int) -> np.ndarray:
        rng, n = self._rng, len(who)
        travelled = self.pace[who] * (t - self.gun)
        samples = empty(n)
        samples["entry"] = who
        samples["seq"] = seq
        samples["t"] = t
        samples["distance"] = travelled
        samples["lat"] = 45.0 + travelled * self._north[who] + rng.normal(0, 3e-5, n)
        samples["lon"] = 7.0 + travelled * self._east[who] + rng.normal(0, 4e-5, n)
        samples["speed"] = self.pace[who] + rng.normal(0, 0.3, n)
        samples["hr"] = self.hr[who] + rng.normal(0, 2, n)
        samples["power"] = (self.power[who] + rng.normal(0, 15, n)).clip(0)
        samples["cadence"] = self.cadence[who]
        return samples

    def second(self, k: int) -> np.ndarray:
        """Simulated second ``k`` (0-based): every rider once, in random arrival order, seq ``k + 1``."""
        who = self._rng.permutation(self.size)
        return self.samples(who, self.gun + k + self.offset[who], k + 1)


@dataclass
class Result:
    field: int
    samples: int = 0
    arena_rate: float = 0.0
    host_cpu: float = 0.0  # CPU seconds of the race host in the sustained phase
    driver_cpu: float = 0.0
    other_cpu: float = 0.0  # the rest of the machine: raylet, GCS, SQLite's page cache flushes...
    sustained_s: float = 0.0
    freshness: list[float] = field(default_factory=list)
    stale: int = 0  # live batches no view ever showed
    acks: list[float] = field(default_factory=list)
    refreshes: int = 0
    queries: dict[str, dict[str, float | str]] = field(default_factory=dict)  # what → {peer: µs or reason}
    bytes_per_rider: float = 0.0
    capacity: int = 0
    host_rss: int = 0
    peers: dict[str, float | str] = field(default_factory=dict)  # peer → samples/s or "skipped: …"
    notes: list[str] = field(default_factory=list)


# -- measuring processes ------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def _machine_cpu_seconds() -> float:
    jiffies = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(jiffies) - jiffies[3] - jiffies[4]) / _TICKS  # all but idle and iowait


def _rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _micros(call: Callable[[int], Any], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        call(i)
    return (time.perf_counter() - started) / count * 1e6


async def _amicros(call: Callable[[int], Awaitable[Any]], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        await call(i)
    return (time.perf_counter() - started) / count * 1e6


# -- Arena --------------------------------------------------------------------


def _check(answer: Any, size: int) -> None:
    if not isinstance(answer, dict) or answer.get("accepted") != size:
        raise SystemExit(f"the race did not accept a batch of {size:,} samples: {answer!r}")


async def _setup(cluster: Cluster, race_id: str, riders: Riders) -> None:
    config = {"name": "Bench ride", "sport": "ride", "kind": "time", "duration_s": 3600}
    await cluster.ref(Race, race_id).ask(Race.create, organizer=ORGANIZER, config=config)
    await cluster.ref(Race, race_id).ask(Race.open, by=ORGANIZER)
    for first in range(0, riders.size, JOIN_CHUNK):
        athletes = [
            {"user_id": f"rider-{i}", "name": f"Rider {i}", "weight_kg": float(riders.weight[i])}
            for i in range(first, min(first + JOIN_CHUNK, riders.size))
        ]
        joined = await cluster.ref(Race, race_id).ask(Race.join_many, athletes=athletes)
        if joined != list(range(first, first + len(athletes))):
            raise SystemExit(f"join_many did not admit riders {first:,}+ in order: {joined[:3]!r}…")
    await cluster.ask("race", race_id, "start", {"by": ORGANIZER}, at=riders.gun)


async def _sustained(cluster: Cluster, race_id: str, batches: list[tuple[float, bytes]], window: int) -> float:
    """Seconds to deliver every batch, ``window`` calls in flight, each answer checked."""

    async def send(at: float, data: bytes) -> None:
        (answer,) = await cluster.deliver([("race", race_id, "ingest", {"samples": data}, at)])
        _check(answer, len(data) // SAMPLE_DTYPE.itemsize)

    in_flight: set[asyncio.Task] = set()
    started = last_report = time.perf_counter()
    for sent, (at, data) in enumerate(batches, 1):
        if len(in_flight) >= window:
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        in_flight.add(asyncio.ensure_future(send(at, data)))
        if time.perf_counter() - last_report > 5:
            last_report = time.perf_counter()
            print(f"    {sent:,} of {len(batches):,} batches sent", flush=True)
    for task in asyncio.as_completed(in_flight):
        await task
    return time.perf_counter() - started


async def _live(cluster: Cluster, race_id: str, riders: Riders, args: argparse.Namespace, result: Result) -> Any:
    """Pace samples in real time and time how long the spectators' view takes to show them."""
    spectators = Spectators(lambda race_id: cluster.ref(Race, race_id), tick=args.tick)
    await spectators.view(race_id)  # the first refresh carries the whole roster: not part of freshness
    pending: list[tuple[float, np.ndarray, np.ndarray]] = []  # (sent at, riders, distances they sent)

    async def watch() -> None:
        async for view in spectators.updates(race_id):
            seen = time.time()
            shown = view.distance[view.rank_of[: riders.size]]  # by participant index
            still = []
            for sent, who, distance in pending:
                if np.all(shown[who] >= distance):
                    result.freshness.append(seen - sent)
                else:
                    still.append((sent, who, distance))
            pending[:] = still

    async def send(sent: float, samples: np.ndarray) -> None:
        (answer,) = await cluster.deliver([("race", race_id, "ingest", {"samples": encode(samples)}, None)])
        result.acks.append(time.time() - sent)
        _check(answer, len(samples))

    groups = [
        np.random.default_rng(slot).permutation(np.arange(slot, riders.size, SLOTS_PER_SECOND))
        for slot in range(SLOTS_PER_SECOND)
    ]
    watcher = asyncio.ensure_future(watch())
    refreshes = spectators.refreshes
    sends: list[asyncio.Task] = []
    begin = time.monotonic() + 0.05
    for slot in range(args.live_seconds * SLOTS_PER_SECOND):
        await asyncio.sleep(max(0.0, begin + slot / SLOTS_PER_SECOND - time.monotonic()))
        sent = time.time()
        who = groups[slot % SLOTS_PER_SECOND]
        samples = riders.samples(who, np.full(len(who), sent), args.seconds + 1 + slot // SLOTS_PER_SECOND)
        for first in range(0, len(samples), args.batch):
            part = samples[first : first + args.batch]
            pending.append((sent, part["entry"].astype(np.int64), part["distance"].copy()))
            sends.append(asyncio.ensure_future(send(sent, part)))
        if slot % (5 * SLOTS_PER_SECOND) == SLOTS_PER_SECOND - 1:
            print(f"    live second {slot // SLOTS_PER_SECOND + 1} of {args.live_seconds}", flush=True)
    await asyncio.gather(*sends)
    deadline = time.monotonic() + 5.0
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    result.stale = len(pending)
    result.refreshes = spectators.refreshes - refreshes
    watcher.cancel()
    view = await spectators.view(race_id)
    await spectators.close()
    return view


def _view_queries(view: Any, field_size: int, args: argparse.Namespace) -> dict[str, float]:
    rng = np.random.default_rng(args.seed)
    users = [view.user_ids[i] for i in rng.integers(0, field_size, max(args.reads, args.around)).tolist()]
    if any(view.place(user) is None for user in users[:100]):
        raise SystemExit("the spectators' view does not rank every rider")
    return {
        "top": _micros(lambda i: view.boards[""]["entries"][:100], args.reads),
        "rank": _micros(lambda i: view.place(users[i]), args.reads),
        "around": _micros(lambda i: view.around(users[i], 5), args.around),
    }


def _board_bytes(riders: Riders, first_second: np.ndarray) -> tuple[int, int]:
    """Hot bytes of a board grown one join at a time, as the race grows its own, after one second of samples."""
    board = RaceBoard(0, sport="ride", kind="time", duration_s=3600)
    for i in range(riders.size):
        board.add(1, categories=np.zeros(1, np.int32), weights_kg=riders.weight[i : i + 1].astype(np.float32))
    board.start("all", riders.gun)
    outcome = board.ingest(first_second, now=riders.gun + 1)
    if outcome["accepted"] != riders.size:
        raise SystemExit(f"the local board accepted {outcome['accepted']:,} of {riders.size:,} samples")
    return board.memory_bytes(), board.capacity


async def _arena(riders: Riders, seconds: list[np.ndarray], args: argparse.Namespace, result: Result) -> None:
    batches = [
        (riders.gun + k + 1, encode(second[first : first + args.batch]))
        for k, second in enumerate(seconds)
        for first in range(0, len(second), args.batch)
    ]
    with tempfile.TemporaryDirectory() as folder:
        cluster = Cluster(
            HostSpec(
                f"sqlite:///{folder}/race.db?commit_log={args.commit_log}",
                KINDS,
                HostConfig(gc_young=args.gc_young),
                hosts=1,
                open_store=OPEN_STORE,
            ),
            namespace=f"race-{uuid.uuid4().hex[:8]}",
        )
        cluster.start_notices()  # as serve.context.connect does: not at the gun
        cluster.start_relay()  # and the relay, as in production: domain events on
        try:
            race_id = f"bench-{riders.size}"
            started = time.perf_counter()
            await asyncio.wait_for(_setup(cluster, race_id, riders), args.phase_timeout)
            pid = await cluster.host_for("race", race_id).pid.remote()
            print(f"  race set up: {riders.size:,} riders joined in {time.perf_counter() - started:.1f} s", flush=True)

            host, driver, machine = _cpu_seconds(pid), time.process_time(), _machine_cpu_seconds()
            elapsed = await asyncio.wait_for(_sustained(cluster, race_id, batches, args.window), args.phase_timeout)
            result.host_cpu = _cpu_seconds(pid) - host
            result.driver_cpu = time.process_time() - driver
            result.other_cpu = _machine_cpu_seconds() - machine - result.host_cpu - result.driver_cpu
            result.samples = sum(len(s) for s in seconds)
            result.sustained_s = elapsed
            result.arena_rate = result.samples / elapsed
            print(
                f"  sustained: {result.samples:,} samples in {elapsed:.1f} s = {result.arena_rate:,.0f}/s"
                f" (CPU s: race host {result.host_cpu:.1f}, bench process {result.driver_cpu:.1f},"
                f" rest of machine {result.other_cpu:.1f})",
                flush=True,
            )

            print(f"  live: {args.live_seconds} s at 1 Hz per rider, spectator tick {args.tick} s", flush=True)
            view = await asyncio.wait_for(_live(cluster, race_id, riders, args, result), args.phase_timeout)
            print(
                f"  live: freshness p50 {_percentile(result.freshness, 0.5):.3f} s,"
                f" p99 {_percentile(result.freshness, 0.99):.3f} s over {len(result.freshness):,} batches"
                f" ({result.stale} never shown); {result.refreshes} view refreshes;"
                f" riders flagged by fair play: {view.totals['provisional']:,}",
                flush=True,
            )
            result.host_rss = _rss_bytes(pid)
            for what, micros in _view_queries(view, riders.size, args).items():
                result.queries.setdefault(what, {})["Arena"] = micros
        finally:
            cluster.kill()
    memory, result.capacity = _board_bytes(riders, seconds[0])
    result.bytes_per_rider = memory / riders.size


# -- peers --------------------------------------------------------------------


@ray.remote
class RiderTally:
    """What one writes first: an actor with one array per fact and one call per sample."""

    def __init__(self, size: int) -> None:
        self.distance = np.zeros(size)
        self.seq = np.zeros(size, np.int64)
        self.t = np.zeros(size)

    async def sample(self, participant: int, seq: int, t: float, distance: float) -> None:
        if distance > self.distance[participant]:  # a redelivered or late sample cannot move anyone back
            self.distance[participant] = distance
        if seq > self.seq[participant]:
            self.seq[participant] = seq
            self.t[participant] = t


async def _ray_peer(samples: np.ndarray, size: int, window: int) -> float:
    actor = RiderTally.remote(size)
    try:
        await actor.sample.remote(0, 0, 0.0, 0.0)
        rows = zip(
            samples["entry"].tolist(),
            samples["seq"].tolist(),
            samples["t"].tolist(),
            samples["distance"].tolist(),
        )
        in_flight: set = set()
        started = time.perf_counter()
        for participant, seq, t, distance in rows:
            if len(in_flight) >= window:
                _, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            in_flight.add(asyncio.ensure_future(actor.sample.remote(participant, seq, t, distance)))
        await asyncio.wait(in_flight)
        return len(samples) / (time.perf_counter() - started)
    finally:
        ray.kill(actor)


def _chunks(seconds: list[np.ndarray]):
    for second in seconds:
        for first in range(0, len(second), PEER_CHUNK):
            yield second[first : first + PEER_CHUNK]


async def _ingest_bounded(
    write: Callable[[np.ndarray], Awaitable[Any]], seconds: list[np.ndarray], limit: float, name: str, result: Result
) -> float:
    """Samples/s writing chunk after chunk; stops at ``limit`` seconds and says so."""
    total = sum(len(s) for s in seconds)
    done = 0
    started = time.perf_counter()
    for chunk in _chunks(seconds):
        await write(chunk)
        done += len(chunk)
        if time.perf_counter() - started > limit:
            result.notes.append(f"{name} stopped at the {limit:.0f} s bound after {done:,} of {total:,} samples")
            break
    return done / (time.perf_counter() - started)


async def _redis_peer(seconds: list[np.ndarray], args: argparse.Namespace, result: Result) -> None:
    from redis import asyncio as redis_asyncio

    client = redis_asyncio.Redis.from_url(args.redis_url, socket_connect_timeout=2, socket_timeout=30)
    key = f"bench-race:{uuid.uuid4().hex}"
    try:
        await client.ping()
        names = [f"rider-{i}" for i in range(result.field)]

        async def write(chunk: np.ndarray) -> None:
            members = chunk["entry"].tolist()
            await client.zadd(key, dict(zip([names[p] for p in members], chunk["distance"].tolist())), gt=True)

        result.peers["Redis"] = await _ingest_bounded(write, seconds, args.peer_timeout, "Redis", result)
        users = [
            names[i] for i in np.random.default_rng(args.seed).integers(0, result.field, args.peer_queries).tolist()
        ]
        top = await _amicros(lambda i: client.zrevrange(key, 0, 99, withscores=True), args.peer_queries)
        rank = await _amicros(lambda i: client.zrevrank(key, users[i]), args.peer_queries)
        result.queries.setdefault("top", {})["Redis"] = top
        result.queries.setdefault("rank", {})["Redis"] = rank
    except (OSError, redis_asyncio.RedisError) as error:
        result.peers["Redis"] = f"skipped: {type(error).__name__}: {error}"
    finally:
        with contextlib.suppress(OSError, redis_asyncio.RedisError):
            await client.delete(key)
        await client.aclose()


async def _postgres_peer(seconds: list[np.ndarray], args: argparse.Namespace, result: Result) -> None:
    import asyncpg

    table = f"bench_race_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(args.postgres_url, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        result.peers["PostgreSQL"] = f"skipped: {type(error).__name__}: {error}"
        return
    try:
        await conn.execute(
            f"CREATE UNLOGGED TABLE {table}"
            " (participant int PRIMARY KEY, distance double precision NOT NULL, t double precision NOT NULL)"
        )
        await conn.execute(f"CREATE INDEX ON {table} (distance)")  # live standings read it during the race
        upsert = await conn.prepare(
            f"INSERT INTO {table} AS r (participant, distance, t)"
            " SELECT * FROM unnest($1::int[], $2::float8[], $3::float8[])"
            " ON CONFLICT (participant) DO UPDATE"
            " SET distance = GREATEST(r.distance, EXCLUDED.distance), t = EXCLUDED.t"
        )

        async def write(chunk: np.ndarray) -> None:
            await upsert.fetch(chunk["entry"].tolist(), chunk["distance"].tolist(), chunk["t"].tolist())

        result.peers["PostgreSQL"] = await _ingest_bounded(write, seconds, args.peer_timeout, "PostgreSQL", result)
        await conn.execute(f"ANALYZE {table}")
        top = await conn.prepare(f"SELECT participant, distance FROM {table} ORDER BY distance DESC LIMIT 100")
        rank = await conn.prepare(
            f"SELECT count(*) + 1 FROM {table} WHERE distance > (SELECT distance FROM {table} WHERE participant = $1)"
        )
        users = np.random.default_rng(args.seed).integers(0, result.field, args.peer_queries).tolist()
        result.queries.setdefault("top", {})["PostgreSQL"] = await _amicros(lambda i: top.fetch(), args.peer_queries)
        result.queries.setdefault("rank", {})["PostgreSQL"] = await _amicros(
            lambda i: rank.fetchval(users[i]), args.peer_queries
        )
    except (OSError, asyncpg.PostgresError) as error:
        result.peers["PostgreSQL"] = f"skipped: {type(error).__name__}: {error}"
    finally:
        with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def _peers(seconds: list[np.ndarray], args: argparse.Namespace, result: Result) -> None:
    first = np.concatenate(seconds[: -(-args.peer_ray_samples // result.field)])[: args.peer_ray_samples]
    result.peers["Ray call per sample"] = await asyncio.wait_for(
        _ray_peer(first, result.field, args.peer_window), args.phase_timeout
    )
    print(
        f"  peer, one Ray call per sample: {result.peers['Ray call per sample']:,.0f} samples/s ({len(first):,} samples)",
        flush=True,
    )
    for name, peer in (("Redis", _redis_peer), ("PostgreSQL", _postgres_peer)):
        await asyncio.wait_for(peer(seconds, args, result), args.peer_timeout + args.phase_timeout)
        rate = result.peers[name]
        print(f"  peer, {name}: " + (rate if isinstance(rate, str) else f"{rate:,.0f} samples/s"), flush=True)


# -- the table ----------------------------------------------------------------


def _rate(value: float | str | None) -> str:
    if value is None:
        return "-"
    return value[:40] if isinstance(value, str) else f"{value:,.0f}"


def _ratio(arena: float, peer: float | str | None) -> str:
    return f"{arena / peer:,.1f}x" if isinstance(peer, float) and peer > 0 else "-"


def _us(value: float | str | None) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else "-"


def _table(results: list[Result], args: argparse.Namespace) -> str:
    peers = ("Ray call per sample", "Redis", "PostgreSQL")
    rows: list[tuple[str, list[str]]] = [
        ("Arena ingest, samples/s", [f"{r.arena_rate:,.0f}" for r in results]),
        ("  race host CPU s per 1M samples", [f"{r.host_cpu / r.samples * 1e6:.2f}" for r in results]),
        ("  bench process CPU s per 1M samples", [f"{r.driver_cpu / r.samples * 1e6:.2f}" for r in results]),
        ("  rest of machine CPU s per 1M samples", [f"{r.other_cpu / r.samples * 1e6:.2f}" for r in results]),
    ]
    for peer in peers:
        rows.append((f"{peer}, samples/s", [_rate(r.peers.get(peer)) for r in results]))
        rows.append((f"  Arena / {peer}", [_ratio(r.arena_rate, r.peers.get(peer)) for r in results]))
    rows += [
        (
            "freshness p50 / p99, s (target p99 < 0.5)",
            [f"{_percentile(r.freshness, 0.5):.3f} / {_percentile(r.freshness, 0.99):.3f}" for r in results],
        ),
        ("  batches never shown", [f"{r.stale}" for r in results]),
        (
            "  ingest ack p50 / p99, s",
            [f"{_percentile(r.acks, 0.5):.3f} / {_percentile(r.acks, 0.99):.3f}" for r in results],
        ),
        ("  view refreshes per second", [f"{r.refreshes / args.live_seconds:.1f}" for r in results]),
    ]
    for what, label in (("top", "top-100"), ("rank", "rank of one rider"), ("around", "around one rider, +-5")):
        for who in ("Arena", "Redis", "PostgreSQL"):
            if what == "around" and who != "Arena":
                continue
            rows.append((f"{label}, {who}, µs", [_us(r.queries.get(what, {}).get(who)) for r in results]))
    rows += [
        ("board hot state, bytes per rider", [f"{r.bytes_per_rider:,.0f} (cap {r.capacity:,})" for r in results]),
        ("race host RSS, MiB", [f"{r.host_rss / 2**20:,.0f}" for r in results]),
    ]
    label_width = max(len(label) for label, _ in rows)
    widths = [max(len(f"{r.field:,} riders"), *(len(cells[i]) for _, cells in rows)) for i, r in enumerate(results)]
    header = " " * label_width + " | " + " | ".join(f"{r.field:,} riders".rjust(w) for r, w in zip(results, widths))
    lines = [header, "-" * len(header)]
    lines += [
        label.ljust(label_width) + " | " + " | ".join(c.rjust(w) for c, w in zip(cells, widths))
        for label, cells in rows
    ]
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results = []
    try:
        for size in args.fields:
            print(f"\n{size:,} riders: building {args.seconds} s of 1 Hz telemetry...", flush=True)
            riders = Riders(size, gun=time.time() - args.seconds, seed=args.seed)
            seconds = [riders.second(k) for k in range(args.seconds)]
            result = Result(size)
            await _arena(riders, seconds, args, result)
            await _peers(seconds, args, result)
            results.append(result)
    finally:
        ray.shutdown()
    print(
        f"\nlive race, time kind, ride, fair play on; Arena: one dedicated race host journaling to SQLite,"
        f" {args.batch:,} samples per call, {args.window} calls in flight, spectator tick {args.tick} s;"
        f" peers: Ray {args.peer_window} calls in flight over {args.peer_ray_samples:,} samples,"
        f" Redis ZADD GT and PostgreSQL unnest upsert of {PEER_CHUNK:,} samples per round trip;"
        f" queries: {args.reads:,} Arena reads, {args.around:,} around, {args.peer_queries:,} per peer."
        f" Whole run {time.perf_counter() - began:.0f} s.\n"
    )
    print(_table(results, args))
    for result in results:
        for note in result.notes:
            print(f"note ({result.field:,} riders): {note}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fields", type=int, nargs="+", default=[10_000, 50_000], help="riders per race (one race each)"
    )
    parser.add_argument("--seconds", type=int, default=60, help="simulated seconds sent as fast as possible")
    parser.add_argument("--commit-log", choices=["auto", "on", "off"], default="auto", help="SQLite's commit log")
    parser.add_argument(
        "--gc-young", type=int, default=HostConfig().gc_young,
        help="the race host's young-collection threshold (0: CPython's default; engine.gc_tuning)",
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=5_000, help="samples per ingest call")
    parser.add_argument("--window", type=int, default=4, help="ingest calls in flight")
    parser.add_argument("--live-seconds", type=int, default=20, help="seconds paced in real time for freshness")
    parser.add_argument("--tick", type=float, default=0.25, help="spectator cache refresh period, seconds")
    parser.add_argument("--reads", type=int, default=10_000, help="top-100 and rank reads from the cached view")
    parser.add_argument("--around", type=int, default=1_000, help="around-me reads from the cached view")
    parser.add_argument("--peer-ray-samples", type=int, default=20_000, help="samples sent one Ray call each")
    parser.add_argument("--peer-window", type=int, default=64, help="one-sample Ray calls in flight")
    parser.add_argument("--peer-queries", type=int, default=1_000, help="top-100 and rank queries per peer")
    parser.add_argument("--peer-timeout", type=float, default=120.0, help="seconds a peer may spend ingesting")
    parser.add_argument("--phase-timeout", type=float, default=300.0, help="seconds any phase may take before failing")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    for name in (
        "seconds",
        "batch",
        "window",
        "live_seconds",
        "reads",
        "around",
        "peer_ray_samples",
        "peer_window",
        "peer_queries",
    ):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(size < SLOTS_PER_SECOND for size in args.fields):
        parser.error(f"every field needs at least {SLOTS_PER_SECOND} riders")
    if not args.tick > 0:
        parser.error("--tick must be positive")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
