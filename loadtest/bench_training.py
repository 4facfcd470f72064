"""Training load: the incremental cost of one workout in the training entity, and a recompute of
N workouts' loads from Parquet (the lake's shape) with DuckDB and numpy.

    .venv/bin/python -m loadtest.bench_training                       # 300 workouts, 1,000,000 rows
    .venv/bin/python -m loadtest.bench_training --rows 10000000       # the issue's size
    .venv/bin/python -m loadtest.bench_training --job 1000000         # the Ray job into the entities

The incremental part runs a real host on SQLite (journal and group commit included): an athlete
with ``--history`` workouts over two years, then each new ``workout.recorded`` delivered alone.
The recompute writes synthetic workouts (user, sport, start, moving time, distance, heart rate,
power) to a Parquet file, then measures each one's load vectorised (power TSS, hrTSS, else session
RPE, with the athlete's thresholds as columns) and sums them per athlete and day.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actors.training import Training
from engine.config import HostConfig
from engine.events import EVENT_MESSAGE
from engine.host import Host
from engine.training import load
from persistence.sqlite import SQLiteStore

DAY = 86_400.0


def _summary(i: int, start: float) -> dict:
    return {"id": f"w{i}", "sport": "ride" if i % 3 else "run", "start": start, "moving_s": 3600.0,
            "elapsed_s": 3600.0, "distance_m": 30_000.0, "avg_hr": 140.0 + i % 20, "max_hr": 180,
            "avg_power": 180.0 + i % 40 if i % 3 else None, "best_efforts": {}}  # fmt: skip


async def incremental(folder: Path, history: int, fresh: int) -> dict:
    host = Host([Training], SQLiteStore(folder / "bench.db"), HostConfig(snapshot_interval=3600, passivate_after=3600))
    await host.start()
    now = time.time()
    seq = 0

    def event(i: int, start: float) -> list:
        nonlocal seq
        seq += 1
        fields = {"owner": "ana", "owner_name": "Ana", "region": None, "workout_id": f"w{i}",
                  "visibility": "public", "summary": _summary(i, start)}  # fmt: skip
        return ["workout.recorded", 3, "account", "ana", seq, 0, now, "ana", fields, seq]

    step = 700 * DAY / max(1, history)
    batch = [event(i, now - 700 * DAY + i * step) for i in range(history)]
    for chunk in range(0, len(batch), 500):
        await host.deliver([("training", "ana", EVENT_MESSAGE, {"events": batch[chunk : chunk + 500]}, None)])
    times = []
    for i in range(history, history + fresh):
        started = time.perf_counter()
        await host.deliver([("training", "ana", EVENT_MESSAGE, {"events": [event(i, now - 60)]}, None)])
        times.append(time.perf_counter() - started)
    status = await host.ask("training", "ana", "status")
    await host.stop()
    times.sort()
    return {"median_ms": statistics.median(times) * 1e3, "p99_ms": times[int(len(times) * 0.99) - 1] * 1e3,
            "kept": status["workouts"]}  # fmt: skip


def write_workouts(path: Path, rows: int, athletes: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    start = time.time() - 365 * DAY + rng.random(rows) * 365 * DAY
    sport = rng.integers(0, 3, rows)  # 0 run, 1 ride, 2 swim
    has_power = (sport == 1) & (rng.random(rows) < 0.6)
    has_hr = rng.random(rows) < 0.7
    table = pa.table({
        "user_id": pa.array(np.char.add("u", rng.integers(0, athletes, rows).astype(str))),
        "sport": pa.array(np.array(["run", "ride", "swim"])[sport]),
        "start": pa.array(start),
        "moving_s": pa.array(rng.uniform(1200, 10_800, rows)),
        "distance_m": pa.array(rng.uniform(3_000, 90_000, rows)),
        "avg_hr": pa.array(np.where(has_hr, rng.uniform(110, 175, rows), np.nan), from_pandas=True),
        "avg_power": pa.array(np.where(has_power, rng.uniform(120, 300, rows), np.nan), from_pandas=True),
    })  # fmt: skip
    pq.write_table(table, path, compression="zstd", row_group_size=1_000_000)


def recompute(path: Path) -> dict:
    """Every workout's load, vectorised, then per athlete and day (DuckDB)."""
    con = duckdb.connect(":memory:")
    con.execute("SET threads = 2")
    started = time.perf_counter()
    cols = con.sql(
        f"SELECT user_id, sport, start, moving_s, avg_hr, avg_power, "
        f"max(avg_power) OVER (PARTITION BY user_id) * 0.95 AS ftp, "
        f"max(avg_hr) OVER (PARTITION BY user_id) AS lthr FROM read_parquet('{path}')"
    ).arrow()
    cols = cols.read_all() if isinstance(cols, pa.RecordBatchReader) else cols
    read_s = time.perf_counter() - started
    seconds = cols["moving_s"].to_numpy()
    power = cols["avg_power"].to_numpy(zero_copy_only=False)
    hr = cols["avg_hr"].to_numpy(zero_copy_only=False)
    ftp = cols["ftp"].to_numpy(zero_copy_only=False)
    lthr = cols["lthr"].to_numpy(zero_copy_only=False)
    max_hr, rest = lthr / 0.89, load.DEFAULT_REST_HR
    with np.errstate(invalid="ignore", divide="ignore"):
        power_tss = seconds * power * (power / ftp) / (ftp * 3600.0) * 100.0
        reserve = np.clip((hr - rest) / (max_hr - rest), 0, 1)
        at_threshold = np.clip((lthr - rest) / (max_hr - rest), 0, 1)
        hour = 60.0 * at_threshold * 0.64 * np.exp(1.92 * at_threshold)
        hr_tss = seconds / 60.0 * reserve * 0.64 * np.exp(1.92 * reserve) / hour * 100.0
    rpe = np.select([cols["sport"].to_numpy(zero_copy_only=False) == s for s in ("run", "ride", "swim")], [6, 5, 5], 5)
    loads = np.where(~np.isnan(power_tss), power_tss, np.where(~np.isnan(hr_tss), hr_tss, rpe * seconds / 4.2 / 60))
    loads = np.minimum(loads, load.MAX_WORKOUT_LOAD)
    daily = pa.table({"user_id": cols["user_id"], "day": pa.array((cols["start"].to_numpy() // DAY).astype(np.int32)),
                      "load": pa.array(loads)})  # fmt: skip
    con.register("daily", daily)
    sums = con.sql("SELECT user_id, day, sum(load) AS load FROM daily GROUP BY ALL").arrow()
    sums = sums.read_all() if isinstance(sums, pa.RecordBatchReader) else sums
    total_s = time.perf_counter() - started
    return {"rows": len(cols), "read_s": read_s, "total_s": total_s, "user_days": sums.num_rows,
            "rows_per_s": len(cols) / total_s}  # fmt: skip


def write_lake(root: Path, rows: int, athletes: int, seed: int = 7) -> None:
    """``rows`` workouts of ``athletes`` over the last two years as the lake keeps ``workout.recorded``
    (through its own writer), a million events a batch."""
    from connectors.lake.writer import LakeWriter
    from engine.codec import pack
    from engine.events import EventRecord

    rng = np.random.default_rng(seed)
    now = time.time()
    writer = LakeWriter(root)
    seqs: dict[int, int] = {}
    for first in range(0, rows, 1_000_000):
        records = []
        for i in range(first, min(rows, first + 1_000_000)):
            user = int(rng.integers(athletes))
            seq = seqs[user] = seqs.get(user, 0) + 1
            start = now - float(rng.uniform(1, 720)) * DAY
            fields = {"owner": f"u{user}", "owner_name": "", "region": None, "workout_id": f"w{i}",
                      "visibility": "public", "summary": _summary(i, start)}  # fmt: skip
            records.append(EventRecord("account", f"u{user}", seq, 0, "workout.recorded", 3, start, f"u{user}",
                                       pack(fields), i + 1))  # fmt: skip
        writer.write(records)


async def job(root: Path, folder: Path) -> dict:
    """The recompute as Arena runs it (``arena lake training``): Ray tasks read pages of athletes from the
    lake, and each athlete's ``training`` entity (a host on SQLite here) takes its history in one message."""
    import ray

    from connectors.lake.training import recompute

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    host = Host([Training], SQLiteStore(folder / "job.db"), HostConfig(snapshot_interval=60, passivate_after=3600))
    await host.start()
    try:

        async def ask(kind: str, entity_id: str, message_type: str, body: dict) -> dict:
            return await host.ask(kind, entity_id, message_type, body)

        return await recompute(root, ask)
    finally:
        await host.stop()
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=300, help="workouts the athlete has before (two years)")
    parser.add_argument("--fresh", type=int, default=200, help="new workouts timed one by one")
    parser.add_argument("--rows", type=int, default=1_000_000, help="workouts recomputed from Parquet")
    parser.add_argument("--athletes", type=int, default=20_000)
    parser.add_argument("--job", type=int, default=0, help="workouts recomputed by the Ray job into entities (0: skip)")
    parser.add_argument("--job-athletes", type=int, default=2_000)
    args = parser.parse_args()
    if args.job:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            write_lake(Path(folder) / "lake", args.job, args.job_athletes)
            print(f"wrote {args.job:,} workout.recorded events to the lake in {time.perf_counter() - started:.1f} s")
            done = asyncio.run(job(Path(folder) / "lake", Path(folder)))
            print(f"job: {done['users']:,} athletes, {done['workouts']:,} workouts into their training entities in "
                  f"{done['seconds']} s ({done['workouts'] / done['seconds']:,.0f} workouts/s)")  # fmt: skip
        return
    with tempfile.TemporaryDirectory() as folder:
        inc = asyncio.run(incremental(Path(folder), args.history, args.fresh))
        print(f"incremental: {args.fresh} workouts onto {args.history}: median {inc['median_ms']:.2f} ms, "
              f"p99 {inc['p99_ms']:.2f} ms per workout (host on SQLite, commit included); kept {inc['kept']}")  # fmt: skip
        path = Path(folder) / "workouts.parquet"
        started = time.perf_counter()
        write_workouts(path, args.rows, args.athletes)
        print(f"wrote {args.rows:,} workouts in {time.perf_counter() - started:.1f} s")
        out = recompute(path)
        print(f"recompute: {out['rows']:,} workouts in {out['total_s']:.2f} s ({out['rows_per_s']:,.0f} workouts/s; "
              f"read {out['read_s']:.2f} s), {out['user_days']:,} athlete-days")  # fmt: skip


if __name__ == "__main__":
    main()
