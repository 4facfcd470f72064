"""A finished race's raw telemetry, archived column-wise: one Parquet file per race.

``connectors.lake.race_archive`` archives every settled race this way from its journal.
``archive_race`` takes the race's samples as columns (what the board already holds: numpy
arrays, no object per sample) and writes ``telemetry/race=<id>/day=<YYYY-MM-DD>/part-0.parquet``,
the day being the UTC day of its first sample. The file is written atomically, and a race whose
file exists is not written again, so archiving after a crash, or twice, leaves one file.

Every row carries the athlete's ``user_id`` (erasure finds a user's samples by it), dictionary
encoded: 50,000 athletes' ids are stored once per row group, not once per sample. Device time
``t`` is a UTC timestamp in milliseconds; absent float readings (NaN in the telemetry contract)
become nulls; integer readings (hr, power, cadence) stay as sent, where 0 means no reading, and
so does the device's ``seq`` of each sample (a sample a device sent twice is there twice: this is
what came in; ``(user_id, seq)`` tells them apart).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.lake.files import COMPRESSION, META_KEY, TELEMETRY, TEMP_SUFFIX, fsync_dir, locked, make_dirs

__all__ = ["TELEMETRY_VERSION", "TelemetryWriter", "archive_race", "race_file"]

# Of the archive's columns; a change is a new version, and old files stay readable (2: the device's
# sample ``seq``, which tells a redelivered sample from a new one).
TELEMETRY_VERSION = 2
ROW_GROUP = 1024 * 1024  # samples: about 20 MB of columns before compression, read and skipped whole
_RACE_ID = re.compile(r"^[A-Za-z0-9_-]{1,160}$")  # entity ids; anything else could be a path
_FLOATS = {"distance": pa.float32(), "speed": pa.float32(), "lat": pa.float64(), "lon": pa.float64()}
_INTS = {"seq": pa.uint32(), "hr": pa.uint16(), "power": pa.uint16(), "cadence": pa.uint16()}
_KNOWN = frozenset({"user_id", "entry", "t", *_FLOATS, *_INTS})


def race_file(root: Path | str, race_id: str) -> Path | None:
    """The race's archive file, if it has one."""
    _check_id(race_id)
    found = sorted((Path(root) / TELEMETRY / f"race={race_id}").glob("day=*/part-0.parquet"))
    return found[0] if found else None


def archive_race(
    root: Path | str,
    race_id: str,
    columns: Mapping[str, np.ndarray],
    *,
    athletes: Sequence[str] | None = None,
) -> Path:
    """Archive a race's samples; the file (the one already there, if the race was archived before).

    ``columns``: ``t`` (device time, unix seconds) and the athlete of each sample, either
    ``user_id`` (their ids) or ``entry`` (indices into ``athletes``, as the race's board keeps
    them: cheaper); optionally ``seq``, ``distance``, ``speed``, ``hr``, ``power``, ``cadence``,
    ``lat``, ``lon``, all of one length."""
    with TelemetryWriter(root, race_id, athletes=athletes) as writer:
        if writer.done is not None:
            return writer.done
        writer.add(columns)
        path = writer.finish()
    if path is None:
        raise ValueError(f"race {race_id} has no samples to archive")
    return path


class TelemetryWriter:
    """A race's archive written in parts, for a race too big to hold in memory at once.

    ``add`` takes columns as ``archive_race`` does and writes them as row groups of a hidden file in
    the race's folder; ``finish`` puts the footer's facts, flushes, and renames the file to
    ``day=<UTC day of the earliest sample>/part-0.parquet`` (``None`` when no sample was added).
    The race's folder is locked meanwhile; a file a killed writer left half-written is deleted
    when the next one starts. ``done``: the race's archive when it already has one (then add
    nothing)."""

    def __init__(self, root: Path | str, race_id: str, *, athletes: Sequence[str] | None = None) -> None:
        _check_id(race_id)
        self.root, self.race_id = Path(root), race_id
        self.folder = self.root / TELEMETRY / f"race={race_id}"
        self.done: Path | None = None
        self.samples = 0
        self._athletes = None if athletes is None else _dictionary(athletes)
        self._lock: contextlib.ExitStack | None = None
        self._sink: pq.ParquetWriter | None = None
        self._temp: Path | None = None
        self._first = math.inf
        self._newest = -math.inf
        self._buffered: list[pa.Table] = []  # until a row group's worth
        self._buffered_rows = 0

    def __enter__(self) -> TelemetryWriter:
        stack = contextlib.ExitStack()
        stack.enter_context(locked(self.folder))
        self._lock = stack
        self.done = race_file(self.root, self.race_id)
        if self.done is None:
            for stale in self.folder.glob(f".*{TEMP_SUFFIX}"):
                stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._sink is not None:  # not finished: an error on the way
                self._sink.close()
            if self._temp is not None:
                self._temp.unlink(missing_ok=True)
        finally:
            assert self._lock is not None
            self._lock.close()

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        if self.done is not None:
            raise ValueError(f"race {self.race_id} is archived already: {self.done}")
        t = _checked(columns)
        if len(t) == 0:
            return
        table = _table(columns, t, self._athletes)
        if self._sink is None:
            self._temp = self.folder / f".part-0.{uuid.uuid4().hex}{TEMP_SUFFIX}"
            # Floats split into byte streams compress better with zstd, and faster (measured: 4.1 M
            # samples/s and 21 bytes each, against 3.6 M/s and 24 bytes); only ids repeat enough
            # for a dictionary to pay.
            self._sink = pq.ParquetWriter(
                self._temp,
                table.schema,
                compression=COMPRESSION,
                use_dictionary=["user_id"],
                use_byte_stream_split=list(_FLOATS),
            )
        self._buffered.append(table)
        self._buffered_rows += len(t)
        if self._buffered_rows >= ROW_GROUP:
            self._flush()
        self.samples += len(t)
        self._first = min(self._first, float(t.min()))
        self._newest = max(self._newest, float(t.max()))

    def finish(self) -> Path | None:
        """The archive, renamed into its partition; ``None`` if no sample was added."""
        if self.done is not None:
            return self.done
        if self._sink is None or self._temp is None:
            return None
        self._flush()
        facts = {"format": 1, "versions": [TELEMETRY_VERSION], "newest": self._newest}
        self._sink.add_key_value_metadata({META_KEY: json.dumps(facts, separators=(",", ":")).encode()})
        self._sink.close()
        self._sink = None
        with open(self._temp, "rb+") as written:
            os.fsync(written.fileno())
        day = datetime.fromtimestamp(self._first, UTC).date().isoformat()
        path = self.folder / f"day={day}" / "part-0.parquet"
        make_dirs(path.parent)
        os.replace(self._temp, path)
        self._temp = None
        fsync_dir(path.parent)
        fsync_dir(self.folder)
        self.done = path
        return path

    def _flush(self) -> None:
        if self._buffered and self._sink is not None:
            self._sink.write_table(pa.concat_tables(self._buffered), row_group_size=ROW_GROUP)
        self._buffered, self._buffered_rows = [], 0


def _check_id(race_id: str) -> None:
    if not isinstance(race_id, str) or not _RACE_ID.match(race_id):
        raise ValueError(f"a race id is 1 to 160 letters, digits, '-' or '_', not {race_id!r}")


def _checked(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    unknown = set(columns) - _KNOWN
    if unknown:
        raise ValueError(f"unknown telemetry columns {sorted(unknown)}; known: {sorted(_KNOWN)}")
    if "t" not in columns:
        raise ValueError("a race's archive needs the device time of each sample, column 't'")
    t = np.asarray(columns["t"], dtype=np.float64)
    if t.ndim != 1 or not all(len(np.asarray(v)) == len(t) for v in columns.values()):
        raise ValueError("every telemetry column must be one-dimensional and as long as 't'")
    if not np.isfinite(t).all():
        raise ValueError("every sample needs a finite device time")
    return t


def _table(columns: Mapping[str, np.ndarray], t: np.ndarray, athletes: pa.Array | None) -> pa.Table:
    arrays = {"user_id": _athletes(columns, athletes)}
    arrays["t"] = pa.array(np.rint(t * 1000.0).astype(np.int64), pa.timestamp("ms", tz="UTC"))
    for name, type_ in _FLOATS.items():
        values = columns.get(name)
        arrays[name] = (
            pa.nulls(len(t), type_)
            if values is None
            else pa.array(np.asarray(values, dtype=type_.to_pandas_dtype()), type_, from_pandas=True)
        )
    for name, type_ in _INTS.items():
        values = columns.get(name)
        arrays[name] = (
            pa.nulls(len(t), type_) if values is None else pa.array(np.asarray(values, type_.to_pandas_dtype()), type_)
        )
    return pa.table(arrays)


def _dictionary(athletes: Sequence[str]) -> pa.Array:
    dictionary = pa.array(list(athletes), pa.string())
    if dictionary.null_count:
        raise ValueError("every athlete of the entry list needs a user id")
    return dictionary


def _athletes(columns: Mapping[str, np.ndarray], athletes: pa.Array | None) -> pa.Array:
    if ("entry" in columns) == ("user_id" in columns):
        raise ValueError("give each sample's athlete once: 'user_id', or 'entry' with athletes=")
    if "user_id" in columns:
        ids = pa.array(np.asarray(columns["user_id"]), pa.string())
        if ids.null_count:
            raise ValueError("every sample needs its athlete's user id")
        return ids.dictionary_encode()
    if athletes is None:
        raise ValueError("'entry' indexes athletes=: give the race's entry list")
    entry = np.asarray(columns["entry"])
    if entry.dtype.kind not in "iu" or (len(entry) and (entry.min() < 0 or entry.max() >= len(athletes))):
        raise ValueError(f"'entry' must hold indices into the {len(athletes)} athletes")
    return pa.DictionaryArray.from_arrays(pa.array(entry.astype(np.int32, copy=False)), athletes)
