"""Ray Data over the lake: the files DuckDB reads, as datasets for jobs spread over a cluster.

DuckDB (``connectors.lake.query``) answers questions on one machine; a job too big for one (a
model's training set, aggregates over years) reads the same files with Ray Data, in blocks, on
every node that sees the lake's folder. Only live files are read (``live_files``: a compaction's
leftovers are skipped), with one schema unified over all of them, so that every version of an
event type reads as one dataset, old rows with nulls in columns they never had, as in DuckDB.
``type``/``race`` and ``day`` come from the folders.

``workouts(root)`` is the ``workouts`` view of ``connectors.lake.query`` as a dataset: the user,
the main typed figures of each workout's summary, its visibility and its region.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.lake.files import EVENTS
from connectors.lake.query import WORKOUT_TYPE, live_files

__all__ = ["read", "workouts", "WORKOUT_FIELDS"]

# The workouts dataset's columns from the flattened summary: (column, field, type).
WORKOUT_FIELDS = (
    ("sport", "summary_sport", pa.string()),
    ("start", "summary_start", pa.float64()),  # unix seconds
    ("distance_m", "summary_distance_m", pa.float64()),
    ("elapsed_s", "summary_elapsed_s", pa.float64()),
    ("moving_s", "summary_moving_s", pa.float64()),
    ("elevation_gain_m", "summary_elevation_gain_m", pa.float64()),
    ("avg_hr", "summary_avg_hr", pa.float64()),
    ("source", "summary_source", pa.string()),
)
_WORKOUT_PLAIN = ("user_id", "workout_id", "visibility", "region", "version", "position")


def read(root: Path | str, table: str, key: str | None = None, *, columns: list[str] | None = None) -> Any:
    """A Ray Data dataset of ``table`` (``events`` or ``telemetry``), of one event type or race
    (``key``) or all; ``LookupError`` when there is no file of it. Ray must be initialised."""
    import ray.data

    files = live_files(root, table)
    paths = [str(p) for name, found in sorted(files.items()) if key is None or name == key for p in found]
    if not paths:
        raise LookupError(f"the lake at {root} has no {table} files" + (f" of {key!r}" if key else ""))
    schema = _unified([pq.read_schema(p) for p in paths])
    return ray.data.read_parquet(paths, schema=schema, columns=columns)


def _unified(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for every file: types widened where they can be (int to float), and a field that
    two files wrote with types that cannot meet (a number here, text there) read as text."""
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    fields: dict[str, pa.Field] = {}
    for schema in schemas:
        for field in schema:
            known = fields.get(field.name)
            if known is None or known.type == field.type:
                fields.setdefault(field.name, field)
                continue
            try:
                merged = pa.unify_schemas([pa.schema([known]), pa.schema([field])], promote_options="permissive")
                fields[field.name] = merged.field(field.name)
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                fields[field.name] = pa.field(field.name, pa.string())
    return pa.schema(list(fields.values()))


def workouts(root: Path | str) -> Any:
    """The recorded workouts as a dataset, one row each (an event a relay sent twice is one row)."""
    dataset = read(root, EVENTS, WORKOUT_TYPE)
    return dataset.map_batches(_workout_rows, batch_format="pyarrow")


def _workout_rows(batch: pa.Table) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for name in _WORKOUT_PLAIN:
        columns[name] = batch.column(name) if name in batch.column_names else pa.nulls(batch.num_rows)
    for name, field, type_ in WORKOUT_FIELDS:
        if field not in batch.column_names:
            columns[name] = pa.nulls(batch.num_rows, type_)
            continue
        column = batch.column(field)
        columns[name] = pc.cast(column, type_, safe=False) if _castable(column.type, type_) else _nulls(column, type_)
    return pa.table(columns)


def _castable(source: pa.DataType, target: pa.DataType) -> bool:
    if pa.types.is_string(target):
        return pa.types.is_string(source) or pa.types.is_large_string(source)
    return pa.types.is_integer(source) or pa.types.is_floating(source)


def _nulls(column: pa.ChunkedArray, type_: pa.DataType) -> pa.Array:
    """A field some events wrote with another type (files then unify it as text): what reads as the
    column's type keeps its value, the rest is null, as DuckDB's TRY_CAST does."""
    if pa.types.is_string(type_):
        return pa.array([None if v is None else str(v) for v in column.to_pylist()], type_)
    return pa.array([_number(v) for v in column.to_pylist()], type_)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None
