"""A finished race's raw telemetry, archived column-wise: one Parquet file per race.

``archive_race`` takes the race's samples as columns (what the board already holds: numpy
arrays, no object per sample) and writes ``telemetry/race=<id>/day=<YYYY-MM-DD>/part-0.parquet``,
the day being the UTC day of its first sample. The file is written atomically, and a race whose
file exists is not written again, so archiving after a crash, or twice, leaves one file.

Every row carries the athlete's ``user_id`` (erasure finds a user's samples by it), dictionary
encoded: 50,000 athletes' ids are stored once per row group, not once per sample. Device time
``t`` is a UTC timestamp in milliseconds; absent float readings (NaN in the telemetry contract)
become nulls; integer readings (hr, power, cadence) stay as sent, where 0 means no reading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from connectors.lake.files import TELEMETRY, atomic_write, locked

__all__ = ["TELEMETRY_VERSION", "archive_race", "race_file"]

TELEMETRY_VERSION = 1  # of the archive's columns; a change is a new version, and old files stay readable
ROW_GROUP = 1024 * 1024  # samples: about 20 MB of columns before compression, read and skipped whole
_RACE_ID = re.compile(r"^[A-Za-z0-9_-]{1,160}$")  # entity ids; anything else could be a path
_FLOATS = {"distance": pa.float32(), "speed": pa.float32(), "lat": pa.float64(), "lon": pa.float64()}
_INTS = {"hr": pa.uint16(), "power": pa.uint16(), "cadence": pa.uint16()}
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
    them: cheaper); optionally ``distance``, ``speed``, ``hr``, ``power``, ``cadence``, ``lat``,
    ``lon``, all of one length."""
    _check_id(race_id)
    unknown = set(columns) - _KNOWN
    if unknown:
        raise ValueError(f"unknown telemetry columns {sorted(unknown)}; known: {sorted(_KNOWN)}")
    if "t" not in columns:
        raise ValueError("a race's archive needs the device time of each sample, column 't'")
    t = np.asarray(columns["t"], dtype=np.float64)
    if t.ndim != 1 or not all(len(np.asarray(v)) == len(t) for v in columns.values()):
        raise ValueError("every telemetry column must be one-dimensional and as long as 't'")
    if len(t) == 0:
        raise ValueError(f"race {race_id} has no samples to archive")
    if not np.isfinite(t).all():
        raise ValueError("every sample needs a finite device time")
    existing = race_file(root, race_id)
    if existing is not None:
        return existing
    first = float(t.min())
    day = datetime.fromtimestamp(first, UTC).date().isoformat()
    path = Path(root) / TELEMETRY / f"race={race_id}" / f"day={day}" / "part-0.parquet"
    table = _table(columns, t, athletes)
    with locked(path.parent):
        if not path.exists():  # archived meanwhile by somebody else
            facts = {"format": 1, "versions": [TELEMETRY_VERSION], "newest": float(t.max())}
            # Floats split into byte streams compress better with zstd, and faster (measured: 4.1 M
            # samples/s and 21 bytes each, against 3.6 M/s and 24 bytes); only ids repeat enough
            # for a dictionary to pay.
            atomic_write(
                path,
                table,
                facts,
                row_group_size=ROW_GROUP,
                use_dictionary=["user_id"],
                use_byte_stream_split=list(_FLOATS),
            )
    return path


def _check_id(race_id: str) -> None:
    if not isinstance(race_id, str) or not _RACE_ID.match(race_id):
        raise ValueError(f"a race id is 1 to 160 letters, digits, '-' or '_', not {race_id!r}")


def _table(columns: Mapping[str, np.ndarray], t: np.ndarray, athletes: Sequence[str] | None) -> pa.Table:
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


def _athletes(columns: Mapping[str, np.ndarray], athletes: Sequence[str] | None) -> pa.Array:
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
    dictionary = pa.array(list(athletes), pa.string())
    if dictionary.null_count:
        raise ValueError("every athlete of the entry list needs a user id")
    return pa.DictionaryArray.from_arrays(pa.array(entry.astype(np.int32, copy=False)), dictionary)
