"""Compaction: a partition's many small files merged into few, in the background.

The relay's writer leaves one file per (type, day) per batch, so a busy day has thousands of
small files, and a reader opens each. ``compact`` merges consecutive small files of a partition
into one named by the whole range they cover, written atomically, and only then deletes them.
Killed between the two, it leaves the inputs beside the merged file: their ranges lie inside
its range, so every reader already skips them as redundant (``files.split_redundant``) and
``cleanup`` deletes them later. No row is ever read twice or lost.

Only *consecutive* files are merged (no other file's range between them), so a merged range
never reaches over a file it did not take in; files already ``target_bytes`` or larger are left
alone, so a day's partition is not rewritten whole each time a few new files arrive.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.lake.files import (
    EVENTS,
    TELEMETRY,
    Part,
    atomic_write,
    locked,
    meta_of,
    part_name,
    partitions,
    parts,
    split_redundant,
    temp_files,
)
from connectors.lake.writer import ROW_GROUP

__all__ = ["cleanup", "compact", "compact_all"]

log = logging.getLogger(__name__)

TARGET_BYTES = 64 * 1024 * 1024


def compact(partition: Path | str, *, target_bytes: int = TARGET_BYTES) -> list[Path]:
    """Merge each run of consecutive small files of ``partition``; the merged files."""
    partition = Path(partition)
    if target_bytes < 1:
        raise ValueError(f"target_bytes must be at least 1, not {target_bytes}")
    merged = []
    with locked(partition):
        live, _ = split_redundant(parts(partition))
        for run in _runs(live, target_bytes):
            path = _merge(partition, run)
            if path is None:
                continue
            merged.append(path)
            for part in run:  # redundant already: a crash here leaves them for ``cleanup``
                with contextlib.suppress(FileNotFoundError):
                    part.path.unlink()
    return merged


def compact_all(root: Path | str, *, min_files: int = 8, target_bytes: int = TARGET_BYTES) -> dict[str, int]:
    """Compact every events partition with at least ``min_files`` live files, then ``cleanup``:
    what a background task runs now and then. Counts of what it did."""
    if min_files < 2:
        raise ValueError(f"min_files must be at least 2 (one file is already compact), not {min_files}")
    done = {"partitions": 0, "merged_files": 0}
    for partition in partitions(Path(root), EVENTS):
        live, _ = split_redundant(parts(partition))
        if len(live) >= min_files:
            merged = compact(partition, target_bytes=target_bytes)
            done["partitions"] += bool(merged)
            done["merged_files"] += len(merged)
    done["deleted_files"] = cleanup(root)
    return done


def cleanup(root: Path | str) -> int:
    """Delete redundant files and writers' half-written temporary files; how many it deleted.

    A temporary file is only ever written by the holder of its partition's lock, so one found
    while holding the lock belongs to a writer that died."""
    deleted = 0
    for table in (EVENTS, TELEMETRY):
        for partition in partitions(Path(root), table):
            with locked(partition):
                _, redundant = split_redundant(parts(partition))
                for path in [p.path for p in redundant] + temp_files(partition):
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        deleted += 1
    return deleted


def _runs(live: list[Part], target_bytes: int) -> list[list[Part]]:
    runs: list[list[Part]] = [[]]
    size = 0
    for part in live:
        bytes_ = part.path.stat().st_size
        if bytes_ >= target_bytes or size + bytes_ > target_bytes:
            runs.append([])
            size = 0
        if bytes_ < target_bytes:
            runs[-1].append(part)
            size += bytes_
    return [run for run in runs if len(run) >= 2]


def _merge(partition: Path, run: list[Part]) -> Path | None:
    tables: list[pa.Table] = []
    versions: set[int] = set()
    newest: list[float] = []
    for part in run:
        table = pq.read_table(part.path)
        facts = meta_of(pq.read_metadata(part.path))
        versions.update(facts.get("versions") or [])
        if facts.get("newest") is not None:
            newest.append(facts["newest"])
        tables.append(table.replace_schema_metadata(None))
    try:  # versions of a type differ in columns, and a field may be an int in one file and a float in the next
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        log.warning("lake: %s not compacted, its files disagree on a column's type: %s", partition, error)
        return None
    path = partition / part_name(run[0].first, run[-1].last)
    facts = {"format": 1, "versions": sorted(versions), "newest": max(newest) if newest else None}
    atomic_write(path, table, facts, row_group_size=ROW_GROUP)
    return path
