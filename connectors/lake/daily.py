"""The daily aggregates: each day's workouts summed per user, per region and per sport.

Read from the lake's ``workout.recorded`` events (DuckDB over their Parquet), written back to
the lake as ``aggregates/<name>/day=<YYYY-MM-DD>/part-0.parquet``, whole or not at all. A day is
the workouts' start day (UTC), whenever they were recorded. Running a day again rewrites its
files from the events, so a rerun, or a rebuild of the lake from the outbox, gives the same
numbers: sums are taken in fixed point (millimetres, milliseconds), so the order in which rows
are added, which depends on how the files were cut, cannot change a digit. ``run_daily`` runs it as a Ray task, on any node that sees the lake's folder.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from connectors.lake.files import atomic_write
from connectors.lake.query import WORKOUT_TYPE, Lake, live_files

__all__ = ["AGGREGATES", "daily_aggregates", "run_daily"]

AGGREGATES = "aggregates"
_GROUPS = {  # aggregate -> the columns it groups by
    "daily_user": ("user_id", "sport"),
    "daily_region": ("region", "sport"),
    "daily_sport": ("sport",),
}


def _exact_sum(column: str) -> str:
    """A sum that does not depend on the order of its rows (files cut differently by a replay add
    floats in another order): in fixed point, to the millimetre or millisecond, then as a double."""
    return f"CAST(sum(CAST({column} AS DECIMAL(18, 3))) AS DOUBLE) AS {column}"


def daily_aggregates(root: Path | str, day: date) -> dict[str, int]:
    """Sum ``day``'s workouts per user, region and sport into the lake; rows written per aggregate."""
    root = Path(root)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    written: dict[str, int] = {}
    tables: dict[str, pa.Table | None] = dict.fromkeys(_GROUPS)
    if WORKOUT_TYPE in live_files(root, "events"):
        tables = {}
        with Lake(root) as lake:
            for name, keys in _GROUPS.items():
                answer = lake.sql(
                    f"SELECT {', '.join(keys)}, count(*) AS workouts, {_exact_sum('distance_m')},"
                    f" {_exact_sum('elapsed_s')} FROM workouts WHERE start >= ? AND start < ?"
                    f" GROUP BY ALL ORDER BY ALL",
                    [start, start + timedelta(days=1)],
                ).arrow()
                # DuckDB answers a reader: read it whole before the connection's next query.
                tables[name] = answer.read_all() if isinstance(answer, pa.RecordBatchReader) else answer
    for name, table in tables.items():
        if table is None:
            columns = {key: pa.array([], pa.string()) for key in _GROUPS[name]}
            table = pa.table({**columns, "workouts": pa.array([], pa.int64()),
                              "distance_m": pa.array([], pa.float64()), "elapsed_s": pa.array([], pa.float64())})  # fmt: skip
        path = root / AGGREGATES / name / f"day={day.isoformat()}" / "part-0.parquet"
        atomic_write(path, table, {"aggregate": name, "day": day.isoformat()}, row_group_size=100_000)
        written[name] = table.num_rows
    return written


def run_daily(root: Path | str, day: date) -> dict[str, int]:
    """``daily_aggregates`` as a Ray task (Ray must be initialised), waiting for its answer."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=3)(daily_aggregates)  # a rerun rewrites the same files
    return ray.get(task.remote(str(root), day))
