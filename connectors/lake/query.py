"""Reading the lake through DuckDB: a view per table, over the files that are the table's data.

``Lake(root)`` opens an in-memory DuckDB with one view per event type (``"workout.recorded"``,
quoted: the name has a dot), ``telemetry`` over every race's archive, and ``workouts``: the
recorded workouts with their summary's main figures as typed columns. Each view lists its files
by name: only live ones (a compaction's leftovers are skipped), read by column name
(``union_by_name``) so that every version of an event type reads as one table, old rows with
nulls in columns they never had. ``type``, ``race`` and ``day`` come from the folders.

A view holds the files there were when it was made: after a compaction deleted some, a query
fails to find them, and ``refresh`` makes the views again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.lake.files import EVENTS, TELEMETRY, partitions, parts, split_redundant
from connectors.lake.writer import QUARANTINE, is_type_name

__all__ = ["Lake", "live_files", "rows_of"]

WORKOUT_TYPE = "workout.recorded"
# The ``workouts`` view's typed columns: (column, the flattened summary field it reads, how).
_DOUBLE, _TEXT = "TRY_CAST({} AS DOUBLE)", "TRY_CAST({} AS VARCHAR)"
_WORKOUT_COLUMNS = (
    ("sport", "summary_sport", _TEXT),
    ("start", "summary_start", "TRY(to_timestamp(TRY_CAST({} AS DOUBLE)))"),  # unix seconds; nonsense is NULL
    ("distance_m", "summary_distance_m", _DOUBLE),
    ("elapsed_s", "summary_elapsed_s", _DOUBLE),
    ("moving_s", "summary_moving_s", _DOUBLE),
    ("elevation_gain_m", "summary_elevation_gain_m", _DOUBLE),
    ("avg_hr", "summary_avg_hr", _DOUBLE),
    ("source", "summary_source", _TEXT),
)


def live_files(root: Path | str, table: str) -> dict[str, list[Path]]:
    """Each of ``table``'s (``events`` or ``telemetry``) first-level names (event type, race)
    -> its live files, in position order."""
    found: dict[str, list[Path]] = {}
    for partition in partitions(Path(root), table):
        key = partition.parent.name.split("=", 1)[1]
        if table == EVENTS and not (is_type_name(key) or key == QUARANTINE):
            continue  # not a folder the writer made
        live, _ = split_redundant(parts(partition))
        found.setdefault(key, []).extend(p.path for p in live)
    return {key: files for key, files in found.items() if files}


class Lake:
    """The lake as SQL: ``Lake(root).sql("SELECT count(*) FROM workouts").fetchall()``."""

    def __init__(self, root: Path | str, *, threads: int | None = None) -> None:
        self.root = Path(root)
        self.con = duckdb.connect(":memory:")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be at least 1, not {threads}")
            self.con.execute(f"SET threads = {int(threads)}")
        self.tables: list[str] = []
        self.refresh()

    def refresh(self) -> None:
        """Make the views again over the files there are now."""
        for name in self.tables:
            self.con.execute(f"DROP VIEW IF EXISTS {_ident(name)}")
        tables = []
        for type_, files in sorted(live_files(self.root, EVENTS).items()):
            self._view(type_, files, "{'type': VARCHAR, 'day': DATE}")
            tables.append(type_)
        races = live_files(self.root, TELEMETRY)
        if races:
            self._view(TELEMETRY, [f for files in races.values() for f in files], "{'race': VARCHAR, 'day': DATE}")
            tables.append(TELEMETRY)
        if WORKOUT_TYPE in tables:
            self._workouts()
            tables.append("workouts")
        self.tables = tables

    def events(self, type_: str) -> duckdb.DuckDBPyRelation:
        """Every event of ``type_`` in the lake, all versions."""
        if type_ not in self.tables or type_ in (TELEMETRY, "workouts"):
            raise KeyError(f"the lake holds no events of type {type_!r}")
        return self.con.sql(f"SELECT * FROM {_ident(type_)}")

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> duckdb.DuckDBPyRelation:
        """A query over the views; ``params`` fill its ``?`` or ``$name`` placeholders."""
        return self.con.sql(query, params=params)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _view(self, name: str, files: list[Path], hive_types: str) -> None:
        listed = ", ".join(_literal(str(f)) for f in files)
        self.con.execute(
            f"CREATE VIEW {_ident(name)} AS SELECT * FROM read_parquet([{listed}], union_by_name = true, "
            f"hive_partitioning = true, hive_types = {hive_types})"
        )

    def _workouts(self) -> None:
        have = {row[0] for row in self.con.sql(f"DESCRIBE {_ident(WORKOUT_TYPE)}").fetchall()}
        plain = [_ident(c) for c in ("owner", "owner_name", "workout_id", "visibility") if c in have]
        plain.append(_ident("region") if "region" in have else "NULL AS region")  # v2 of the event
        typed = [
            f"{how.format(_ident(field)) if field in have else 'NULL'} AS {_ident(column)}"
            for column, field, how in _WORKOUT_COLUMNS
        ]
        meta = ", ".join(_ident(c) for c in ("at", "version", "position", "day"))  # "at" is a keyword of DuckDB's
        self.con.execute(
            f"CREATE VIEW workouts AS SELECT user_id, {', '.join(plain + typed)}, {meta} FROM {_ident(WORKOUT_TYPE)}"
        )


def rows_of(root: Path | str, user_id: str) -> list[Path]:
    """Every data file holding a row of ``user_id`` (redundant ones too: they still hold it), for
    erasure. Row groups whose statistics rule the user out are not read."""
    if not isinstance(user_id, str):
        raise TypeError(f"a user id is a string, not {type(user_id).__name__}")
    found = []
    for table in (EVENTS, TELEMETRY):
        for partition in partitions(Path(root), table):
            for part in parts(partition):
                rows = pq.read_table(part.path, columns=["user_id"], filters=pc.field("user_id") == user_id)
                if rows.num_rows:
                    found.append(part.path)
    return found


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
