"""The lake's two targets, each beside the peer a user would pick instead, in the same run.

``archive``: a 50,000-rider race's telemetry archived as Parquet (``archive_race``) on one core,
against the same samples written as CSV by pyarrow and by Python's ``csv`` module (each file
flushed to disk, as the archive is). Target: >= 1,000,000 samples/s.

``journal``: the same, the way Arena does it: the race's ingest batches (10,000 samples each, as
a gateway sends them) journaled by a real race host on SQLite, then the ``race-archive`` stream
reading the journal, decoding each batch and writing the race's Parquet file, on one core;
against ``archive_race`` from the same samples already in memory (what it costs to read them
back from the journal).

``percentile``: "this athlete's percentile among runners of the same region, sex and age group
for 10 km this month" over ``--rows`` workouts, in DuckDB over a Parquet file and in PostgreSQL
(the same rows COPYed into a database of its own, indexed for the query, vacuumed and analyzed),
the same SQL, median of 5 runs after a warm-up. Target: DuckDB under 200 ms at 10,000,000 rows.

Run: ``.venv/bin/python -m loadtest.bench_lake [archive|journal|percentile|all] [--rows N] [--samples N]``
(PostgreSQL on 127.0.0.1:5432, user postgres, for ``percentile``; ``--postgres-url`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from connectors.lake import archive_race

# -- the race archive -----------------------------------------------------------


def _race(riders: int, samples: int, seed: int = 7) -> tuple[dict[str, np.ndarray], list[str]]:
    """``samples`` samples of ``riders`` riders at 1 Hz, in the order a race's batches hold them."""
    rng = np.random.default_rng(seed)
    seconds = -(-samples // riders)
    tick = np.repeat(np.arange(seconds), riders)[:samples]
    entry = np.tile(np.arange(riders, dtype=np.uint32), seconds)[:samples]
    pace = rng.normal(3.5, 0.4, riders).astype(np.float32)[entry]
    columns = {
        "entry": entry,
        "t": 1_714_555_800.0 + tick + rng.random(samples) * 0.2,
        "distance": (tick * pace).astype(np.float32),
        "speed": pace + rng.normal(0, 0.1, samples).astype(np.float32),
        "hr": rng.integers(120, 185, samples).astype(np.uint16),
        "power": rng.integers(150, 320, samples).astype(np.uint16),
        "cadence": rng.integers(80, 100, samples).astype(np.uint16),
        "lat": 48.85 + tick * 2e-5 + rng.normal(0, 1e-5, samples),
        "lon": 2.35 + tick * 2e-5 + rng.normal(0, 1e-5, samples),
    }
    return columns, [f"user-{n:07d}" for n in range(riders)]


def _arrow(columns: dict[str, np.ndarray], athletes: list[str]) -> pa.Table:
    ids = pa.DictionaryArray.from_arrays(pa.array(columns["entry"].astype(np.int32)), pa.array(athletes))
    rest = {name: pa.array(values) for name, values in columns.items() if name != "entry"}
    return pa.table({"user_id": ids, **rest})


def _synced(path: Path) -> None:
    with open(path, "rb+") as file:
        os.fsync(file.fileno())


def _timed(work: Callable[[], object], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_archive(samples: int, riders: int, python_samples: int) -> None:
    cores, arrow_cores, arrow_io = os.sched_getaffinity(0), pa.cpu_count(), pa.io_thread_count()
    os.sched_setaffinity(0, {min(cores)})  # one core, for Arrow's threads too
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    try:
        _archive(samples, riders, python_samples)
    finally:
        os.sched_setaffinity(0, cores)
        pa.set_cpu_count(arrow_cores)
        pa.set_io_thread_count(arrow_io)


def _archive(samples: int, riders: int, python_samples: int) -> None:
    columns, athletes = _race(riders, samples)
    with tempfile.TemporaryDirectory(prefix="arena-lake-bench-") as folder:
        root = Path(folder)
        races = iter(range(1_000))
        lake_s = _timed(lambda: archive_race(root / "lake", f"race-{next(races)}", columns, athletes=athletes))
        size = next((root / "lake").rglob("part-0.parquet")).stat().st_size

        def arrow_csv() -> None:
            pa_csv.write_csv(_arrow(columns, athletes), root / "race.csv")
            _synced(root / "race.csv")

        arrow_s = _timed(arrow_csv)
        csv_size = (root / "race.csv").stat().st_size
        part = {name: values[:python_samples] for name, values in columns.items()}

        def python_csv() -> None:
            ids = [athletes[i] for i in part["entry"].tolist()]
            rest = [part[name].tolist() for name in columns if name != "entry"]
            with open(root / "race-py.csv", "w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["user_id", *(name for name in columns if name != "entry")])
                writer.writerows(zip(ids, *rest))
                file.flush()
                os.fsync(file.fileno())

        python_s = _timed(python_csv, runs=1)
    rates = {"lake": samples / lake_s, "arrow_csv": samples / arrow_s, "python_csv": python_samples / python_s}
    print(f"archive of {samples:,} samples of {riders:,} riders, one core:")
    print(f"  lake (Parquet, zstd)   {rates['lake']:>12,.0f} samples/s   {size / samples:5.1f} bytes/sample")
    print(f"  pyarrow CSV            {rates['arrow_csv']:>12,.0f} samples/s   {csv_size / samples:5.1f} bytes/sample")
    print(f"  Python csv module      {rates['python_csv']:>12,.0f} samples/s   (on {python_samples:,} samples)")
    print(
        f"  ratio: lake / pyarrow CSV {rates['lake'] / rates['arrow_csv']:.1f}x, "
        f"lake / Python csv {rates['lake'] / rates['python_csv']:.1f}x; "
        f"target >= 1,000,000 samples/s: {'met' if rates['lake'] >= 1_000_000 else 'MISSED'}"
    )


# -- the race archive from a race's journal -------------------------------------------


def bench_journal(samples: int, riders: int, batch: int = 10_000) -> None:
    asyncio.run(_journal(samples, riders, batch))


async def _journal(samples: int, riders: int, batch: int) -> None:
    from actors.race import Race, RaceRef
    from connectors.lake import RaceArchive
    from engine.config import HostConfig
    from engine.host import Host
    from engine.telemetry import SAMPLE_DTYPE
    from persistence import open_store

    columns, athletes = _race(riders, samples)
    now = time.time()
    columns["t"] = columns["t"] - columns["t"].max() + now - 1.0  # measured up to a second ago
    packed = np.zeros(samples, SAMPLE_DTYPE)
    for name, values in columns.items():
        packed[name] = values
    packed["seq"] = np.arange(samples) // riders
    with tempfile.TemporaryDirectory(prefix="arena-lake-bench-") as folder:
        store = open_store(f"sqlite:///{folder}/arena.db")
        host = Host([Race, RaceRef], store, HostConfig(archived_kinds=("race",), max_uncommitted=10_000_000))
        await host.start()
        race = "bench"
        ride = {"name": "Bench", "sport": "ride", "kind": "time", "duration_s": 7200, "capacity": riders}
        await host.ask("race", race, "create", {"organizer": "org", "config": ride})
        await host.ask("race", race, "open", {"by": "org"})
        await host.ask("race", race, "join_many", {"athletes": [{"user_id": a, "name": a} for a in athletes]})
        await host.ask("race", race, "start", {"by": "org"})
        started = time.perf_counter()
        for start in range(0, samples, batch):
            await host.ask("race", race, "ingest", {"samples": packed[start : start + batch].tobytes()})
        ingest_s = time.perf_counter() - started
        await host.ask("race", race, "cancel", {"by": "org"})
        (settled,) = await store.read_events(0, 1, ["race.settled"])
        cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(cores)})  # the archive on one core; the host has done its part
        pa.set_cpu_count(1)
        try:
            archive = RaceArchive(Path(folder) / "lake")
            archive.bind(store, host.ask)
            started = time.perf_counter()
            path = await archive.archive(race, settled.seq)
            journal_s = time.perf_counter() - started
            assert path is not None and pq.read_metadata(path).num_rows == samples, "samples lost or doubled"
            memory_s = _timed(lambda: archive_race(Path(folder) / "memory", f"m{time.monotonic_ns()}", columns,
                                                   athletes=athletes))  # fmt: skip
        finally:
            os.sched_setaffinity(0, cores)
        await host.stop()
        await store.close()
    rate, memory_rate = samples / journal_s, samples / memory_s
    print(f"race archive from the race's journal, {samples:,} samples of {riders:,} riders in batches of {batch:,}:")
    print(f"  journaled by the race host (SQLite, fair play on): {samples / ingest_s:>12,.0f} samples/s")
    print(f"  journal -> Parquet (race-archive stream, one core): {rate:>12,.0f} samples/s")
    print(f"  archive_race from memory (one core):               {memory_rate:>12,.0f} samples/s")
    print(
        f"  ratio journal / memory {rate / memory_rate:.2f}x; target >= 1,000,000 samples/s: "
        f"{'met' if rate >= 1_000_000 else 'MISSED'}"
    )


# -- the percentile query ---------------------------------------------------------

PERCENTILE = """
WITH me AS (
    SELECT region, sex, age_group FROM workouts WHERE user_id = $1 LIMIT 1
), best AS (
    SELECT w.user_id, min(w.elapsed_s) AS best_s
    FROM workouts w JOIN me ON w.region = me.region AND w.sex = me.sex AND w.age_group = me.age_group
    WHERE w.sport = 'run' AND w.distance_m >= 10000 AND w.distance_m < 10500
      AND w.start >= $2 AND w.start < $3
    GROUP BY w.user_id
)
SELECT count(*) AS athletes,
       min(best_s) FILTER (WHERE user_id = $1) AS my_best_s,
       100.0 * count(*) FILTER (WHERE best_s > (SELECT best_s FROM best WHERE user_id = $1)) / count(*) AS percentile
FROM best
"""
_REGIONS = [f"region-{n:02d}" for n in range(50)]
_SEXES = ["F", "M", "X"]
_AGE_GROUPS = ["18-29", "30-39", "40-49", "50-59", "60-69", "70+"]
_SPORTS = ["run", "ride", "swim", "walk"]


def _workouts(rows: int, now: datetime, seed: int = 11) -> pa.Table:
    """``rows`` workouts of ``rows // 10`` athletes over the year before ``now``, in time order."""
    rng = np.random.default_rng(seed)
    users = max(1, rows // 10)
    region = rng.integers(0, len(_REGIONS), users)
    sex = rng.choice(len(_SEXES), users, p=[0.48, 0.48, 0.04])
    age = rng.integers(0, len(_AGE_GROUPS), users)
    user = rng.integers(0, users, rows)
    sport = rng.choice(len(_SPORTS), rows, p=[0.5, 0.3, 0.1, 0.1])
    tenk = rng.random(rows) < 0.3
    distance = np.where(tenk, 10_000 + rng.random(rows) * 400, rng.lognormal(8.8, 0.6, rows))
    elapsed = distance / np.clip(rng.normal(3.2, 0.5, rows), 1.5, 6.5)
    start = np.sort(int(now.timestamp() * 1e6) - rng.integers(0, 365 * 86_400 * 1_000_000, rows))

    def labels(values: list[str], index: np.ndarray) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(index.astype(np.int32)), pa.array(values))

    return pa.table(
        {
            "user_id": labels([f"user-{n:07d}" for n in range(users)], user),
            "sport": labels(_SPORTS, sport),
            "distance_m": distance,
            "elapsed_s": elapsed,
            "start": pa.array(start, pa.timestamp("us", tz="UTC")),
            "region": labels(_REGIONS, region[user]),
            "sex": labels(_SEXES, sex[user]),
            "age_group": labels(_AGE_GROUPS, age[user]),
        }
    )


def _athlete(table: pa.Table, month: datetime) -> str:
    """An athlete with a 10 km run this month: the one the question is about."""
    import pyarrow.compute as pc

    runs = table.filter(
        pc.and_(
            pc.and_(pc.equal(table["sport"].cast(pa.string()), "run"), pc.greater_equal(table["distance_m"], 10_000)),
            pc.and_(pc.less(table["distance_m"], 10_500), pc.greater_equal(table["start"], pa.scalar(month))),
        )
    )
    return runs["user_id"].cast(pa.string())[0].as_py()


def _median_ms(run: Callable[[], object]) -> tuple[float, object]:
    answer = run()  # warm-up: caches, plans
    times = []
    for _ in range(5):
        started = time.perf_counter()
        answer = run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), answer


async def _postgres(url: str, csv_path: Path, params: tuple) -> tuple[float, object, float]:
    import asyncpg

    name = f"arena_lake_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        conn = await asyncpg.connect(url.rsplit("/", 1)[0] + f"/{name}")
        try:
            started = time.perf_counter()
            await conn.execute(
                "CREATE TABLE workouts (user_id text, sport text, distance_m double precision, "
                "elapsed_s double precision, start timestamptz, region text, sex text, age_group text)"
            )
            await conn.copy_to_table("workouts", source=csv_path, format="csv", header=True)
            # What a user who knows the question indexes: the cohort and the month, and the athlete.
            await conn.execute("CREATE INDEX ON workouts (region, sex, age_group, sport, start)")
            await conn.execute("CREATE INDEX ON workouts (user_id)")
            await conn.execute("VACUUM ANALYZE workouts")
            load_s = time.perf_counter() - started
            statement = await conn.prepare(PERCENTILE)
            times = []
            answer = await statement.fetchrow(*params)  # warm-up
            for _ in range(5):
                begun = time.perf_counter()
                answer = await statement.fetchrow(*params)
                times.append((time.perf_counter() - begun) * 1000)
            return statistics.median(times), tuple(answer) if answer else None, load_s
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def bench_percentile(rows: int, postgres_url: str) -> None:
    import duckdb

    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = (month + timedelta(days=32)).replace(day=1)
    with tempfile.TemporaryDirectory(prefix="arena-lake-bench-") as folder:
        started = time.perf_counter()
        table = _workouts(rows, now)
        athlete = _athlete(table, month)
        # Labels as plain strings, as the lake writes them: an Arrow dictionary of a million user ids
        # would be written whole into every row group (measured: the query took 1.7 s instead of 0.09).
        table = table.cast(pa.schema([(f.name, pa.string() if pa.types.is_dictionary(f.type) else f.type)
                                      for f in table.schema]))  # fmt: skip
        parquet = Path(folder) / "workouts.parquet"
        pq.write_table(table, parquet, row_group_size=128 * 1024, compression="zstd")
        print(f"{rows:,} workouts generated and written in {time.perf_counter() - started:.1f} s; athlete {athlete}")
        params = (athlete, month, following)

        con = duckdb.connect()
        con.execute(f"CREATE VIEW workouts AS SELECT * FROM read_parquet('{parquet}')")
        duck_ms, duck_answer = _median_ms(lambda: con.execute(PERCENTILE, list(params)).fetchall()[0])

        csv_path = Path(folder) / "workouts.csv"
        pa_csv.write_csv(table, csv_path)
        del table
        pg_ms, pg_answer, load_s = asyncio.run(_postgres(postgres_url, csv_path, params))
    print(f"percentile of {athlete}'s best 10 km this month in their cohort, median of 5:")
    print(f"  DuckDB over Parquet   {duck_ms:9.1f} ms   {duck_answer}")
    print(f"  PostgreSQL, indexed   {pg_ms:9.1f} ms   {pg_answer}   (COPY + indexes + analyze: {load_s:.0f} s)")
    print(
        f"  ratio DuckDB / PostgreSQL: {duck_ms / pg_ms:.1f}x the time; "
        f"target DuckDB < 200 ms: {'met' if duck_ms < 200 else 'MISSED'}"
    )
    if duck_answer is None or pg_answer is None or abs(duck_answer[2] - float(pg_answer[2])) > 1e-6:
        raise SystemExit(f"the two answers differ: DuckDB {duck_answer}, PostgreSQL {pg_answer}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("which", nargs="?", choices=("archive", "journal", "percentile", "all"), default="all")
    parser.add_argument("--samples", type=int, default=5_000_000, help="samples in the race (default 5,000,000)")
    parser.add_argument("--riders", type=int, default=50_000, help="riders in the race (default 50,000)")
    parser.add_argument(
        "--python-samples", type=int, default=500_000, help="samples the Python csv peer writes (default 500,000)"
    )
    parser.add_argument("--rows", type=int, default=10_000_000, help="workouts for the percentile (default 10M)")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    if args.which in ("archive", "all"):
        bench_archive(args.samples, args.riders, min(args.python_samples, args.samples))
    if args.which in ("journal", "all"):
        bench_journal(args.samples, args.riders)
    if args.which in ("percentile", "all"):
        bench_percentile(args.rows, args.postgres_url)


if __name__ == "__main__":
    main()
