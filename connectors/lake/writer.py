"""Domain events into the lake: the relay's ``lake`` stream writes each batch as Parquet files.

The relay (``engine.relay``) hands ``publish`` every event of the outbox in position order, from
its own durable cursor; after a crash it hands the same positions again, perhaps cut into
different batches. A batch is grouped by event type and the UTC day of the event's instant, and
each group becomes one file named by the positions it holds (``connectors.lake.files``). Before
writing, a group drops every event whose position lies inside a file already in its partition,
so an event is written once however often the relay sends it (and no file is ever rewritten).

A row is the event's outbox metadata, then one column per field of its body: a scalar keeps its
type, a dict is flattened one level (``summary`` -> ``summary_sport``, ``summary_distance_m``…),
anything deeper, and lists, are JSON text. Versions of an event type may differ in fields; the
files of one table are read together by column name (``connectors.lake.query``).

What cannot be written where it says it belongs goes to ``type=_quarantine`` with the raw body
and the reason, rather than stopping the relay: an event type that is not a declared name (it
would be a path), an instant that is no date, a body that is not a msgpack map. Metadata of the
wrong type (a store's bug, not anybody's input) raises.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import accumulate
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa

from connectors.lake.files import EVENTS, Part, atomic_write, locked, part_name, parts
from engine.codec import unpack
from engine.events import EventRecord

__all__ = ["LakeWriter", "QUARANTINE", "columns_of", "is_type_name"]

log = logging.getLogger(__name__)

QUARANTINE = "_quarantine"
ROW_GROUP = 128 * 1024
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")  # as engine.events.declare accepts
_MAX_NAME = 128  # characters of a column name; a longer field name is cut and made unique with a hash
_MAX_FLATTEN = 64  # a dict field with more keys stays one JSON column, rather than becoming a wide table
_FIRST_DAY, _LAST_DAY = -62_135_596_800.0, 253_402_300_799.0  # 0001-01-01 .. 9999-12-31, what a date can say
_INT64 = (-(2**63), 2**63 - 1)

# The outbox's metadata, first in every file, then the hive keys a reader adds from the path.
_META = pa.schema(
    [
        ("position", pa.int64()),
        ("event_id", pa.string()),
        ("source_kind", pa.string()),
        ("source_id", pa.string()),
        ("seq", pa.int64()),
        ("idx", pa.int32()),
        ("version", pa.int32()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("user_id", pa.string()),
    ]
)
_QUARANTINED = pa.schema([("event_type", pa.string()), ("reason", pa.string()), ("body", pa.binary())])
_RESERVED = frozenset(n.casefold() for n in (*_META.names, *_QUARANTINED.names, "type", "day"))


class LakeWriter:
    """The relay's stream into ``root/events``: one file per (type, day) of each batch, each event once."""

    name = "lake"

    def __init__(self, root: Path | str, *, row_group_size: int = ROW_GROUP, compact_every: int = 64) -> None:
        """``compact_every``: after this many batches, merge each partition's small files (``compaction``)."""
        if row_group_size < 1:
            raise ValueError(f"row_group_size must be at least 1, not {row_group_size}")
        self.root = Path(root)
        self.row_group_size = row_group_size
        self.compact_every = compact_every
        self.rows_written = 0
        self.files_written = 0
        self._batches = 0

    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Write ``records`` durably; a thread does it, so the relay's other consumers keep moving.
        Every ``compact_every`` batches the small files are merged (crash-safe: ``compaction``). An athlete
        who withdrew consent to health data loses it from every row about them (``connectors.lake.health``)."""
        await asyncio.to_thread(self.write, records)
        for record in records:
            if record.type == "health.withdrawn" and record.user_id:  # docs/privacy.md
                from connectors.lake.health import strip_health  # it imports this module's neighbours

                await asyncio.to_thread(strip_health, self.root, record.user_id)
        self._batches += 1
        if self.compact_every and self._batches % self.compact_every == 0:
            from connectors.lake.compaction import compact_all  # it imports this module

            await asyncio.to_thread(compact_all, self.root)

    async def close(self) -> None:
        """Nothing to flush: every publish returned only once its files were on disk."""

    def write(self, records: Iterable[EventRecord]) -> list[Path]:
        """Write what ``records`` hold that the lake does not; the files written."""
        groups: dict[tuple[str, str], list[_Row]] = {}
        for record in records:
            row = _row(record)
            groups.setdefault((row.type, row.day), []).append(row)
        written = []
        for (type_, day), group in groups.items():
            partition = self.root / EVENTS / f"type={type_}" / f"day={day}"
            with locked(partition):
                for run in _new_runs(group, parts(partition)):
                    path = partition / part_name(run[0].record.position, run[-1].record.position)
                    table, facts = _table(run, quarantine=type_ == QUARANTINE)
                    atomic_write(path, table, facts, row_group_size=self.row_group_size)
                    written.append(path)
                    if type_ == QUARANTINE:
                        log.warning("lake: %d event(s) quarantined in %s: %s", len(run), path, run[0].reason)
                    self.rows_written += len(run)
        self.files_written += len(written)
        return written


class _Row(NamedTuple):
    record: EventRecord
    type: str  # the partition's: the event's type, or QUARANTINE
    day: str
    fields: dict
    reason: str | None  # why it is quarantined


def _row(record: EventRecord) -> _Row:
    ints = (record.position, record.seq, record.idx, record.version)
    if not all(type(v) is int for v in ints):
        raise ValueError(f"event at position {record.position!r}: its position, seq, idx and version must be ints")
    if not (
        0 <= record.position < 2**63 and -(2**63) <= record.seq < 2**63 and all(-(2**31) <= v < 2**31 for v in ints[2:])
    ):
        raise ValueError(f"event at position {record.position}: a position, seq, idx or version out of range")
    strings = (record.source_kind, record.source_id, record.type)
    if not all(type(v) is str for v in strings) or not (record.user_id is None or type(record.user_id) is str):
        raise ValueError(f"event at position {record.position}: its source, type and user must be strings")
    if type(record.body) is not bytes or type(record.at) not in (int, float):
        raise ValueError(f"event at position {record.position}: its body must be bytes and its instant a number")
    if not _valid_at(record.at):
        return _Row(record, QUARANTINE, "1970-01-01", {}, f"instant {record.at!r} is not a date")
    day = datetime.fromtimestamp(record.at, UTC).date().isoformat()
    if not is_type_name(record.type):
        return _Row(record, QUARANTINE, day, {}, "event type is not a declared name")
    try:
        fields = unpack(record.body)
    except Exception as error:
        return _Row(record, QUARANTINE, day, {}, f"body is not msgpack: {type(error).__name__}")
    if type(fields) is not dict:
        return _Row(record, QUARANTINE, day, {}, f"body is a msgpack {type(fields).__name__}, not a map")
    return _Row(record, record.type, day, fields, None)


def is_type_name(name: str) -> bool:
    """Whether ``name`` is an event type as ``engine.events.declare`` accepts it: safe as a folder name."""
    return len(name) <= 64 and _TYPE.match(name) is not None


def _valid_at(at: float) -> bool:
    return math.isfinite(at) and _FIRST_DAY <= at <= _LAST_DAY


def _new_runs(group: list[_Row], existing: list[Part]) -> list[list[_Row]]:
    """The group's events no file holds yet, cut so that no new file's range reaches over an old
    file: a reader would take the old one for a leftover of compaction and skip it."""
    starts = [p.first for p in existing]  # ``parts`` answers them sorted by first position
    reach = list(accumulate((p.last for p in existing), max))  # the furthest position files up to i hold
    seen: set[int] = set()
    runs: list[list[_Row]] = []
    run_at = -1  # how many old files start before the current run
    for row in sorted(group, key=lambda r: r.record.position):
        position = row.record.position
        before = bisect_right(starts, position)
        if position in seen or (before and reach[before - 1] >= position):
            continue
        seen.add(position)
        if runs and before == run_at:
            runs[-1].append(row)
        else:  # the first, or an old file starts between the previous event and this one
            runs.append([row])
            run_at = before
    return runs


def _table(run: list[_Row], *, quarantine: bool) -> tuple[pa.Table, dict]:
    records = [row.record for row in run]
    ats = [round(r.at * 1_000_000) if _valid_at(r.at) else None for r in records]
    arrays = [
        pa.array([r.position for r in records], pa.int64()),
        pa.array([r.id for r in records], pa.string()),
        pa.array([r.source_kind for r in records], pa.string()),
        pa.array([r.source_id for r in records], pa.string()),
        pa.array([r.seq for r in records], pa.int64()),
        pa.array([r.idx for r in records], pa.int32()),
        pa.array([r.version for r in records], pa.int32()),
        pa.array(ats, _META.field("at").type),
        pa.array([r.user_id for r in records], pa.string()),
    ]
    names = list(_META.names)
    if quarantine:
        arrays.append(pa.array([r.type for r in records], pa.string()))
        arrays.append(pa.array([row.reason for row in run], pa.string()))
        arrays.append(pa.array([r.body for r in records], pa.binary()))
        names += _QUARANTINED.names
    else:
        for name, values in columns_of([row.fields for row in run]).items():
            names.append(name)
            arrays.append(values)
    known = [at for at in ats if at is not None]
    facts = {
        "format": 1,
        "versions": sorted({r.version for r in records}),
        "newest": max(known) / 1_000_000 if known else None,
    }
    return pa.Table.from_arrays(arrays, names=names), facts


# -- fields to columns ---------------------------------------------------------


def columns_of(rows: Sequence[dict]) -> dict[str, pa.Array]:
    """One column per field name across ``rows`` (flattened one level), each as one Arrow type."""
    named: list[dict[str, Any]] = [_flatten(row) for row in rows]
    order: dict[str, None] = {}
    for row in named:
        order.update(dict.fromkeys(row))
    return {name: _array([row.get(name) for row in named]) for name in order}


def _flatten(fields: dict) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    taken = set(_RESERVED)
    for key, value in fields.items():
        if type(value) is dict and 0 < len(value) <= _MAX_FLATTEN:
            prefix = _column_name(key)
            for inner, inner_value in value.items():
                flat[_unique(f"{prefix}_{_column_name(inner)}", taken)] = inner_value
        else:
            flat[_unique(_column_name(key), taken)] = value
    return flat


def _column_name(key: Any) -> str:
    name = "".join("_" if unicodedata.category(c) == "Cc" else c for c in str(key)) or "_"
    if len(name) > _MAX_NAME:
        name = f"{name[:100]}~{hashlib.sha256(name.encode('utf-8', 'replace')).hexdigest()[:16]}"
    return name


def _unique(name: str, taken: set[str]) -> str:
    """DuckDB matches column names without case, so ``Name`` and ``name`` must differ by more."""
    while name.casefold() in taken:
        name += "_"
    taken.add(name.casefold())
    return name


def _array(values: list) -> pa.Array:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.nulls(len(values))
    if kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds == {float}:
        return pa.array(values, pa.float64())
    in_range = int not in kinds or all(_INT64[0] <= v <= _INT64[1] for v in values if type(v) is int)
    if kinds == {int} and in_range:
        return pa.array(values, pa.int64())
    if kinds == {int, float} and in_range:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if kinds == {str}:
        return pa.array(values, pa.string())
    if kinds == {bytes}:
        return pa.array(values, pa.binary())
    return pa.array([None if v is None else _json(v) for v in values], pa.string())


def _json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError):  # a map with keys JSON has no word for
        return repr(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)
