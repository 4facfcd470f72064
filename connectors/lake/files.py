"""The lake's layout on disk: where a table's files live, what their names say, and how one is written.

A table is a folder of partitions (``events/type=<type>/day=<YYYY-MM-DD>/``, or
``telemetry/race=<id>/day=<YYYY-MM-DD>/``), each a folder of Parquet files named by the range of
outbox positions they hold: ``part-<first:012d>-<last:012d>.parquet`` (a race's archive, one
file, is ``part-0.parquet``). The name is the file's
identity. A writer that finds a position already inside a file's range knows it wrote that event
before, and a file whose range lies inside another file's range is a leftover of a compaction
that stopped before deleting its inputs (*redundant*): readers skip it and ``cleanup`` deletes
it. Nothing else in a partition is data; a writer's unfinished file has a hidden ``.tmp`` name.

Every file is written under a temporary name in its own folder, flushed to disk, and renamed over
its final name (atomic on POSIX), and the folder is flushed too: a reader, and a writer after a
crash, sees either the whole file or none of it. Writers of one partition (the relay's writer,
a compaction) hold the partition's lock (``flock`` on ``.lock``), so they never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "COMPRESSION",
    "EVENTS",
    "META_KEY",
    "TELEMETRY",
    "TEMP_SUFFIX",
    "Part",
    "atomic_write",
    "fsync_dir",
    "locked",
    "make_dirs",
    "meta_of",
    "partitions",
    "parts",
    "part_name",
    "replacing",
    "split_redundant",
    "temp_files",
]

EVENTS = "events"
TELEMETRY = "telemetry"
COMPRESSION = "zstd"
META_KEY = b"arena.lake"  # the file's own facts, in its footer: versions, newest row (status reads no data)

_PART = re.compile(r"^part-(\d{1,20})(?:-(\d{1,20}))?\.parquet$")  # a race's archive is ``part-0``
TEMP_SUFFIX = ".tmp"


@dataclass(frozen=True, order=True)
class Part:
    """One data file of a partition, and the positions it holds (``first``..``last``, inclusive)."""

    first: int
    last: int
    path: Path

    def holds(self, position: int) -> bool:
        return self.first <= position <= self.last

    def contains(self, other: Part) -> bool:
        return self.first <= other.first and other.last <= self.last


def part_name(first: int, last: int) -> str:
    return f"part-{first:012d}-{last:012d}.parquet"


def parts(partition: Path) -> list[Part]:
    """Every data file of ``partition``, redundant ones included, in position order."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(partition):
            match = _PART.match(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                first = int(match[1])
                found.append(Part(first, first if match[2] is None else int(match[2]), Path(entry.path)))
    return sorted(found, key=lambda p: (p.first, -p.last))


def split_redundant(found: list[Part]) -> tuple[list[Part], list[Part]]:
    """(live, redundant): a file is redundant when another file's range holds its whole range.

    Sorted by first position, then by the widest range first, a file is inside an earlier one
    exactly when an earlier one reaches as far as it does."""
    live: list[Part] = []
    redundant: list[Part] = []
    reach = -1
    for part in sorted(found, key=lambda p: (p.first, -p.last)):
        if part.last <= reach:
            redundant.append(part)
        else:
            live.append(part)
            reach = part.last
    return live, redundant


def temp_files(partition: Path) -> list[Path]:
    """Files a writer left half-written when it was killed (only a partition's lock holder may delete them)."""
    with contextlib.suppress(FileNotFoundError):
        return [Path(e.path) for e in os.scandir(partition) if e.name.startswith(".") and e.name.endswith(TEMP_SUFFIX)]
    return []


def partitions(root: Path, table: str) -> Iterator[Path]:
    """Every ``<key>=<value>/day=<day>`` folder of ``table`` (``events`` or ``telemetry``)."""
    base = Path(root) / table
    if not base.is_dir():
        return
    for outer in sorted(base.iterdir()):
        if outer.is_dir() and not outer.is_symlink() and "=" in outer.name:
            for inner in sorted(outer.iterdir()):
                if inner.is_dir() and not inner.is_symlink() and inner.name.startswith("day="):
                    yield inner


@contextlib.contextmanager
def locked(partition: Path) -> Iterator[None]:
    """Hold ``partition``'s lock: one writer (relay writer, compaction, cleanup) at a time, across processes."""
    make_dirs(partition)
    fd = os.open(partition / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def make_dirs(path: Path) -> None:
    """Create ``path`` and flush each new folder's parent, so a crash cannot lose a folder a file is renamed into."""
    missing = []
    at = Path(path)
    while not at.exists():
        missing.append(at)
        at = at.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        fsync_dir(folder.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, table: pa.Table, facts: dict, *, row_group_size: int, **options) -> None:
    """Write ``table`` as the Parquet file ``path``, whole or not at all; ``facts`` go in its footer."""
    make_dirs(path.parent)
    metadata = dict(table.schema.metadata or {})
    metadata[META_KEY] = json.dumps(facts, separators=(",", ":")).encode()
    table = table.replace_schema_metadata(metadata)
    with replacing(path) as temp, open(temp, "wb") as sink:
        pq.write_table(table, sink, row_group_size=row_group_size, compression=COMPRESSION, **options)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A hidden temporary name beside ``path`` to write its new content under: once the block ends the file
    is flushed and renamed over ``path`` (atomic), and the folder flushed; if the block raises, it is removed
    and ``path`` stays as it was."""
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        yield temp
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    fsync_dir(path.parent)


def meta_of(metadata: pq.FileMetaData) -> dict:
    """The facts ``atomic_write`` put in a file's footer ({} for a file from elsewhere)."""
    raw = (metadata.metadata or {}).get(META_KEY)
    if raw is None:
        return {}
    try:
        facts = json.loads(raw)
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}
