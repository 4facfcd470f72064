"""The lake's observability: per table, how fresh, how big, which versions, how complete.

Everything here comes from the files' footers, never from their data: the row count and each
column's null count are Parquet statistics, and the writer puts the versions present and the
newest row's instant in the footer too (``files.META_KEY``). So a status of a lake of
thousands of files costs milliseconds per hundred files, and Prometheus may scrape it.

Tables are the event types (``workout.recorded``, ``_quarantine`` when anything was put
aside) and ``telemetry`` (every race's archive together).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from connectors.lake.files import EVENTS, TELEMETRY, meta_of, partitions, parts, split_redundant, temp_files
from connectors.lake.query import WORKOUT_TYPE
from connectors.lake.writer import QUARANTINE, is_type_name

__all__ = ["KEY_FIELDS", "LakeCollector", "lake_status", "render_status"]

DAYS = 7  # rows per day are shown for this many days, today's included
# The fields whose null rate says whether a table is usable; user_id for every table (erasure needs it).
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    WORKOUT_TYPE: ("user_id", "summary_distance_m", "summary_elapsed_s"),
    TELEMETRY: ("user_id", "distance", "speed", "lat", "lon"),
}


def lake_status(root: Path | str, *, now: float | None = None) -> dict[str, Any]:
    """``{"root", "at", "tables": {name: {files, leftover_files, rows, bytes, newest, freshness_s,
    rows_per_day, versions, null_ratio}}}``; ``freshness_s``: seconds since the newest row's
    instant (None for an empty table); ``leftover_files``: redundant and half-written files that
    ``cleanup`` would delete."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, UTC).date()
    days = [(today - timedelta(days=n)).isoformat() for n in range(DAYS - 1, -1, -1)]
    tables: dict[str, _Table] = {}
    for table in (EVENTS, TELEMETRY):
        for partition in partitions(Path(root), table):
            key = partition.parent.name.split("=", 1)[1]
            if table == EVENTS and not (is_type_name(key) or key == QUARANTINE):
                continue
            name = key if table == EVENTS else TELEMETRY
            found = tables.setdefault(name, _Table(KEY_FIELDS.get(name, ("user_id",)), days))
            found.add(partition)
    return {
        "root": str(root),
        "at": now,
        "tables": {name: found.summary(now) for name, found in sorted(tables.items())},
    }


class _Table:
    def __init__(self, fields: tuple[str, ...], days: list[str]) -> None:
        self.fields = fields
        self.files = self.leftovers = self.rows = self.bytes = 0
        self.newest: float | None = None
        self.per_day = dict.fromkeys(days, 0)
        self.versions: set[int] = set()
        self.nulls = dict.fromkeys(fields, 0)

    def add(self, partition: Path) -> None:
        live, redundant = split_redundant(parts(partition))
        self.leftovers += len(redundant) + len(temp_files(partition))
        day = partition.name.split("=", 1)[1]
        for part in live:
            try:
                metadata = pq.read_metadata(part.path)
                size = part.path.stat().st_size
                nulls = {field: _nulls(part.path, metadata, field) for field in self.fields}
            except FileNotFoundError:  # a compaction replaced it since the listing: its rows are in the new file
                continue
            facts = meta_of(metadata)
            self.files += 1
            self.rows += metadata.num_rows
            self.bytes += size
            if day in self.per_day:
                self.per_day[day] += metadata.num_rows
            self.versions.update(v for v in facts.get("versions") or [] if isinstance(v, int))
            newest = facts.get("newest")
            if isinstance(newest, int | float) and (self.newest is None or newest > self.newest):
                self.newest = float(newest)
            for field, count in nulls.items():
                self.nulls[field] += count

    def summary(self, now: float) -> dict[str, Any]:
        return {
            "files": self.files,
            "leftover_files": self.leftovers,
            "rows": self.rows,
            "bytes": self.bytes,
            "newest": self.newest,
            "freshness_s": None if self.newest is None else max(0.0, now - self.newest),
            "rows_per_day": self.per_day,
            "versions": sorted(self.versions),
            "null_ratio": {f: (n / self.rows if self.rows else 0.0) for f, n in self.nulls.items()},
        }


def _nulls(path: Path, metadata: pq.FileMetaData, field: str) -> int:
    """Nulls of ``field`` in a file, from its statistics; a file without the column has only nulls."""
    schema = metadata.schema.to_arrow_schema()
    index = schema.get_field_index(field)
    if index < 0 or schema.field(index).type == pa.null():
        return metadata.num_rows
    count = 0
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_null_count:  # a writer that kept no statistics: count them
            return pq.read_table(path, columns=[field]).column(0).null_count
        count += stats.null_count
    return count


# -- for people and for Prometheus ---------------------------------------------


def render_status(status: dict[str, Any]) -> str:
    """What ``arena lake status`` prints: one line per table, then rows per day."""
    at = datetime.fromtimestamp(status["at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"lake {status['root']} at {at}"]
    tables = status["tables"]
    if not tables:
        return "\n".join([*lines, "no tables yet"])
    width = max(len("table"), *(len(name) for name in tables))
    lines.append(
        f"{'table':<{width}}  {'files':>6}  {'rows':>13}  {'size':>9}  {'newest row':>10}  {'versions':<8}  nulls"
    )
    for name, t in tables.items():
        nulls = ", ".join(f"{field} {ratio:.1%}" for field, ratio in t["null_ratio"].items())
        leftovers = f"  ({t['leftover_files']} leftover files)" if t["leftover_files"] else ""
        versions = ",".join(map(str, t["versions"])) or "-"
        lines.append(
            f"{name:<{width}}  {t['files']:>6,}  {t['rows']:>13,}  {_size(t['bytes']):>9}  "
            f"{_age(t['freshness_s']):>10}  {versions:<8}  {nulls}{leftovers}"
        )
    days = list(next(iter(tables.values()))["rows_per_day"])
    lines += ["", f"rows per day (UTC), {days[0]} to {days[-1]}"]
    lines.append(f"{'table':<{width}}  " + "  ".join(f"{date.fromisoformat(d):%m-%d}".rjust(11) for d in days))
    for name, t in tables.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{n:>11,}" for n in t["rows_per_day"].values()))
    return "\n".join(lines)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable: GiB ends the loop")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, length in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f}{unit} ago"
    return f"{seconds:.0f}s ago"


class LakeCollector(Collector):
    """The lake's status as Prometheus gauges, read from the footers at each scrape:
    ``REGISTRY.register(LakeCollector(root))``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The metrics without reading the lake: registering should not scan it."""
        return iter(_families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = lake_status(self.root)
        rows, fresh, files, nulls, size, leftovers = _families()
        for name, t in status["tables"].items():
            rows.add_metric([name], t["rows"])
            files.add_metric([name], t["files"])
            size.add_metric([name], t["bytes"])
            leftovers.add_metric([name], t["leftover_files"])
            if t["freshness_s"] is not None:
                fresh.add_metric([name], t["freshness_s"])
            for field, ratio in t["null_ratio"].items():
                nulls.add_metric([name, field], ratio)
        return iter((rows, fresh, files, nulls, size, leftovers))


def _families() -> tuple[GaugeMetricFamily, ...]:
    return (
        GaugeMetricFamily("arena_lake_rows", "Rows in a lake table's live files", labels=["table"]),
        GaugeMetricFamily(
            "arena_lake_freshness_seconds", "Seconds since the instant of a lake table's newest row", labels=["table"]
        ),
        GaugeMetricFamily("arena_lake_files", "Live Parquet files of a lake table", labels=["table"]),
        GaugeMetricFamily(
            "arena_lake_null_ratio", "Share of a lake table's rows with a key field null", labels=["table", "field"]
        ),
        GaugeMetricFamily("arena_lake_bytes", "Bytes of a lake table's live files", labels=["table"]),
        GaugeMetricFamily(
            "arena_lake_leftover_files", "Redundant or half-written files cleanup would delete", labels=["table"]
        ),
    )
