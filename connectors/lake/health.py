"""Withdrawn consent to health data in the lake (docs/privacy.md): the athlete's heart rates, HRV and
weight leave every row about them, events and raw telemetry alike, the rest of each row stays.

A column is health data when its name is one of ``HEALTH_COLUMNS`` or ends with ``_`` and one of them
(an event's flattened ``summary_avg_hr``, ``before_max_hr``). Each file holding a row of the athlete with
such a value is written again, whole or not at all, under the lock its writers take.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.lake.files import COMPRESSION, EVENTS, TELEMETRY, locked, partitions, parts, replacing

__all__ = ["HEALTH_COLUMNS", "health_columns", "strip_health"]

log = logging.getLogger(__name__)

HEALTH_COLUMNS = ("hr", "avg_hr", "max_hr", "hrv", "weight_kg")


def health_columns(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema
            if (f.name in HEALTH_COLUMNS or any(f.name.endswith(f"_{h}") for h in HEALTH_COLUMNS))
            and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type))]  # fmt: skip


def strip_health(root: Path | str, user_id: str) -> int:
    """Null every health value of ``user_id``'s rows under ``root``; how many files were written again."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("a user id is a non-empty string")
    root = Path(root)
    if not root.is_dir():
        return 0
    changed = 0
    for table in (EVENTS, TELEMETRY):
        for partition in partitions(root, table):
            with locked(partition):
                changed += sum(_strip(part.path, user_id) for part in parts(partition))
    return changed


def _strip(path: Path, user_id: str) -> int:
    try:
        file = pq.ParquetFile(path)
    except pa.ArrowException as error:
        log.error("health withdrawal: %s is no readable Parquet and is left as it is: %s", path, error)
        return 0
    try:
        schema = file.schema_arrow
        columns = health_columns(schema)
        if not columns or "user_id" not in schema.names:
            return 0
        probe = file.read(columns=["user_id", *columns])
        mine = pc.equal(probe["user_id"], pa.scalar(user_id, probe.schema.field("user_id").type))
        mine = pc.fill_null(mine, False)
        if not any(pc.any(pc.and_(mine, pc.is_valid(probe[c]))).as_py() for c in columns):
            return 0
        with replacing(path) as temp, pq.ParquetWriter(temp, schema, compression=COMPRESSION) as sink:
            for group in range(file.num_row_groups):
                table = file.read_row_group(group)
                kind = table.schema.field("user_id").type
                about = pc.fill_null(pc.equal(table["user_id"], pa.scalar(user_id, kind)), False)
                for name in columns:
                    column = table[name]
                    nulls = pc.if_else(about, pa.nulls(len(column), column.type), column)
                    table = table.set_column(table.schema.get_field_index(name), name, nulls)
                sink.write_table(table, row_group_size=max(1, table.num_rows))
    finally:
        file.close()
    return 1
