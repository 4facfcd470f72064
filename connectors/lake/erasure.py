"""Erasure in the data lake: every Parquet file that holds a person, rewritten without them (docs/privacy.md).

``LakePart`` is the lake's part of the eraser (``connectors/erasure.py``). ``erase`` goes through
every data file under the root:

- ``events/`` (``_quarantine`` included): a row about the person (its ``user_id``) goes; another row
  that names them in a text column (who approved a membership, an event id) gets the stand-in in
  their place, a quarantined msgpack body decoded and packed again; a column named after them (a
  map keyed by user ids, flattened) goes. The erasure notice (``account.erased``) is kept, as the
  outbox keeps it: it holds nothing but the account's random id.
- ``telemetry/``: the person's samples go from every race's archive; a race whose id names them
  goes whole.
- ``aggregates/`` and any other Parquet file under the root: the same rules, so ``daily_user``
  loses the person's rows. The per-region and per-sport sums name nobody and are kept: once the
  person is gone from everywhere else, no figure in them leads back to anyone.

A file keeps its name (for events, the positions it covers: the writer writes none of them again,
even into a file left empty) and is rewritten row group by row group into a hidden temporary file,
flushed, and renamed over itself, under the lock its writers take, so readers, compaction and
``arena lake status`` see the old file or the new one. The footer's facts (versions, newest row)
are made again from the rows left. A dictionary-encoded column (a race's athletes) is encoded
again: Parquet would otherwise keep the person's id in the dictionary of a row group that no
longer uses it. Compactions' leftovers and dead writers' temporary files go first (``cleanup``).

``remnants`` reads every Parquet file under the root (its text, binary and nested columns, the
dictionaries, the column names, the footer's metadata) and every file and folder name, and says
where the person is still named, and which files cannot be read (``erase`` leaves those as they are
and logs them: one broken file must not stop every erasure; an operator deletes it). Both run in a thread: the relay's loop keeps moving.

The person is looked for as their id and as JSON writes it (a list or a deep map is JSON text in
the lake, where a quote in an id is escaped).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.erasure import KEPT_EVENTS
from connectors.lake.compaction import cleanup
from connectors.lake.files import (
    COMPRESSION,
    EVENTS,
    META_KEY,
    TELEMETRY,
    fsync_dir,
    locked,
    meta_of,
    partitions,
    parts,
    replacing,
)
from engine.codec import pack, unpack
from engine.erasure import mentions, replace_all

__all__ = ["LakePart", "erase_lake", "lake_remnants"]

log = logging.getLogger(__name__)

_KEPT = frozenset(f"type={name}" for name in KEPT_EVENTS)  # partitions whose notices name the person on purpose
_META = frozenset({"position", "event_id", "source_kind", "source_id", "seq", "idx", "version", "at", "user_id",
                   "event_type", "reason", "body"})  # fmt: skip  # the writer's own columns: never dropped by name
_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


class LakePart:
    """The lake under ``root``: ``erase`` rewrites what holds the person, ``remnants`` says what still does."""

    name = "lake"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    async def erase(self, user_id: str, stand_in: str) -> int:
        return await asyncio.to_thread(erase_lake, self.root, user_id, stand_in)

    async def remnants(self, user_id: str) -> list[str]:
        return await asyncio.to_thread(lake_remnants, self.root, user_id)


def erase_lake(root: Path | str, user_id: str, stand_in: str) -> int:
    """Rewrite every file under ``root`` that names ``user_id``; how many files changed (or went)."""
    needles = _needles(user_id)
    if not isinstance(stand_in, str) or not stand_in or any(n in stand_in for n in needles):
        raise ValueError("the stand-in must be a non-empty string that does not contain the user id")
    root = Path(root)
    if not root.is_dir():
        return 0
    cleanup(root)  # leftovers hold what their merged file holds: gone rather than rewritten
    changed = 0
    for partition in partitions(root, EVENTS):
        keep = partition.parent.name in _KEPT
        with locked(partition):
            changed += sum(_rewrite(p.path, user_id, needles, stand_in, keep_notices=keep) for p in parts(partition))
    for race in _races(root):
        with locked(race):
            if _names(race.name.split("=", 1)[1], needles):
                changed += _clear(race)
                continue
            for partition in sorted(p for p in race.iterdir() if p.is_dir() and p.name.startswith("day=")):
                with locked(partition):
                    changed += sum(
                        _rewrite(p.path, user_id, needles, stand_in, telemetry=True) for p in parts(partition)
                    )
    for race in _races(root):
        if _names(race.name.split("=", 1)[1], needles):
            shutil.rmtree(race, ignore_errors=True)  # its lock file only, now that nobody holds it
    for path in _other_files(root):  # aggregates: their writer takes no lock, and a rerun rewrites them whole
        changed += _rewrite(path, user_id, needles, stand_in)
    return changed


def lake_remnants(root: Path | str, user_id: str) -> list[str]:
    """One line per file or folder under ``root`` that still names ``user_id`` (empty: clean)."""
    needles = _needles(user_id)
    root = Path(root)
    lines = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        here = Path(folder)
        for name in sorted(dirs + files):
            if _names(name, needles):
                lines.append(f"{(here / name).relative_to(root)}: its name names the person")
        for name in sorted(files):
            if not name.endswith(".parquet"):
                continue
            path = here / name
            relative = path.relative_to(root)
            keep = relative.parts[0] == EVENTS and len(relative.parts) > 1 and relative.parts[1] in _KEPT
            try:
                found = _scan(path, user_id, needles, keep_notices=keep)
            except (OSError, pa.ArrowException) as error:
                lines.append(f"{relative}: cannot be read as Parquet, so may hold anything ({error})")
                continue
            if found:
                lines.append(f"{relative}: {found}")
    return lines


# -- finding the person --------------------------------------------------------


def _needles(user_id: str) -> list[str]:
    """The person's id as the lake may hold it: as it is, and as JSON text escapes it; longest first."""
    if not isinstance(user_id, str):
        raise TypeError(f"a user id is a string, not {type(user_id).__name__}")
    if not user_id:
        raise ValueError("an empty user id would name everybody")
    forms = {user_id, json.dumps(user_id)[1:-1], json.dumps(user_id, ensure_ascii=False)[1:-1]}
    return sorted(forms, key=lambda n: (-len(n), n))


def _names(text: str, needles: list[str]) -> bool:
    return any(n in text for n in needles)


@dataclass
class _Found:
    about: int = 0  # rows about the person
    naming: int = 0  # other rows that name them
    columns: list[str] = field(default_factory=list)  # columns named after them
    dictionary: bool = False  # a column's dictionary holds them, used or not
    footer: bool = False  # the footer's metadata names them

    def __bool__(self) -> bool:
        return bool(self.about or self.naming or self.columns or self.dictionary or self.footer)

    def __str__(self) -> str:
        said = []
        if self.about:
            said.append(f"{self.about} row(s) about the person")
        if self.naming:
            said.append(f"{self.naming} row(s) naming them")
        if self.columns:
            said.append(f"{len(self.columns)} column(s) named after them")
        if self.dictionary:
            said.append("a column's dictionary holds them")
        if self.footer:
            said.append("the footer's metadata names them")
        return ", ".join(said)


def _scan(path: Path, user_id: str, needles: list[str], *, keep_notices: bool = False) -> _Found:
    """Where ``path`` names the person, reading its text-like columns alone (a race's floats stay on disk)."""
    file = pq.ParquetFile(path)
    try:
        schema = file.schema_arrow
        found = _Found(
            columns=[f.name for f in schema if f.name not in _META and _names(f.name, needles)],
            footer=any(
                _names(v.decode("utf-8", "replace"), needles)
                for k, v in (file.metadata.metadata or {}).items()
                if k != b"ARROW:schema"
            ),  # fmt: skip
        )
        textual = [f.name for f in schema if _textual(f.type)]
        for group in range(file.num_row_groups):
            table = file.read_row_group(group, columns=textual)
            about, naming = _masks(table, user_id, needles)
            if not keep_notices:  # a notice names the person on purpose
                found.about += pc.sum(about).as_py() or 0
            found.naming += pc.sum(naming).as_py() or 0
            found.dictionary = found.dictionary or any(
                _names(str(word), needles)
                for column in table.columns
                if pa.types.is_dictionary(column.type)
                for chunk in column.chunks
                for word in chunk.dictionary.to_pylist()
            )
        return found
    finally:
        file.close()


def _textual(type_: pa.DataType) -> bool:
    if pa.types.is_dictionary(type_):
        return _textual(type_.value_type)
    return (
        pa.types.is_string(type_) or pa.types.is_large_string(type_) or pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_) or pa.types.is_nested(type_)
    )  # fmt: skip


def _masks(table: pa.Table, user_id: str, needles: list[str]) -> tuple[pa.Array, pa.Array]:
    """(rows about the person, other rows that name them) of ``table``."""
    none = pa.array([False] * table.num_rows, pa.bool_())
    about = none
    if "user_id" in table.column_names and _textual(table.schema.field("user_id").type):
        ids = _plain(table.column("user_id"))
        if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
            about = pc.fill_null(pc.equal(ids, user_id), False).combine_chunks()
    naming = none
    for column in table.columns:
        if _textual(column.type):
            naming = pc.or_(naming, _hits(column, needles))
    return about, pc.and_(naming, pc.invert(about))


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _hits(column: pa.ChunkedArray, needles: list[str]) -> pa.Array:
    column = _plain(column)
    if pa.types.is_nested(column.type):
        return pa.array([v is not None and any(mentions(v, n) for n in needles) for v in column.to_pylist()])
    found = pa.array([False] * len(column), pa.bool_())
    for needle in needles:
        found = pc.or_(found, pc.fill_null(pc.match_substring(column, needle), False).combine_chunks())
    return found


# -- rewriting a file ----------------------------------------------------------


def _rewrite(path: Path, user_id: str, needles: list[str], stand_in: str, *, keep_notices: bool = False,
             telemetry: bool = False) -> int:  # fmt: skip
    """Write ``path`` again without the person, whole or not at all (1), or leave it (0: it does not name them).
    The caller holds the locks its writers take."""
    try:
        if not _scan(path, user_id, needles, keep_notices=keep_notices):
            return 0
    except pa.ArrowException as error:  # not Parquet: nothing to rewrite, and stopping would stop every erasure
        log.error("lake erasure: %s is no readable Parquet and is left as it is (remnants lists it): %s", path, error)
        return 0
    file = pq.ParquetFile(path)
    try:
        with replacing(path) as temp:
            facts = meta_of(file.metadata)
            schema = file.schema_arrow
            dropped = {f.name for f in schema if f.name not in _META and _names(f.name, needles)}
            schema = pa.schema([f for f in schema if f.name not in dropped])  # metadata too: the facts are new
            options: dict[str, Any] = {}
            if telemetry:  # as the archive writes them (``archive.TelemetryWriter``)
                options = {"use_dictionary": [f.name for f in schema if pa.types.is_dictionary(f.type)],
                           "use_byte_stream_split": [f.name for f in schema if pa.types.is_floating(f.type)]}  # fmt: skip
            versions: set[int] = set()
            newest: float | None = None
            with pq.ParquetWriter(temp, schema, compression=COMPRESSION, **options) as sink:
                for group in range(file.num_row_groups):
                    table = file.read_row_group(group).select(schema.names)
                    about, _ = _masks(table, user_id, needles)
                    spare = about if keep_notices else None  # the notices stay as they are
                    if spare is None:
                        table = table.filter(pc.invert(about))
                    table = pa.table([_scrubbed(c, needles, stand_in, spare) for c in table.columns], schema=schema)
                    versions |= _versions(table)
                    newest = _newest(table, newest)
                    sink.write_table(table, row_group_size=max(1, table.num_rows))
                if "versions" in facts and "version" in schema.names:
                    facts["versions"] = sorted(versions)
                if "newest" in facts:
                    facts["newest"] = newest
                sink.add_key_value_metadata({META_KEY: json.dumps(facts, separators=(",", ":")).encode()})
    finally:
        file.close()
    return 1


def _scrubbed(column: pa.ChunkedArray, needles: list[str], stand_in: str, spare: pa.Array | None) -> pa.ChunkedArray:
    """``column`` with the stand-in for the person, but in the rows ``spare`` leaves as they are."""
    type_ = column.type
    if pa.types.is_dictionary(type_):  # encoded again: the old dictionary may hold the person unused
        plain = _scrubbed(_plain(column), needles, stand_in, spare).combine_chunks()
        return pa.chunked_array([plain.dictionary_encode().cast(type_)], type_)
    scrubbed = column
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        for needle in needles:
            scrubbed = pc.replace_substring(scrubbed, needle, stand_in)
    elif pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
        scrubbed = pa.chunked_array([pa.array([_bytes(v, needles, stand_in) for v in column.to_pylist()], type_)])
    elif pa.types.is_nested(type_):
        scrubbed = pa.chunked_array([pa.array([_all(v, needles, stand_in) for v in column.to_pylist()], type_)])
    return scrubbed if spare is None or scrubbed is column else pc.if_else(spare, column, scrubbed)


def _all(value: Any, needles: list[str], stand_in: str) -> Any:
    for needle in needles:
        value = replace_all(value, needle, stand_in)
    return value


def _bytes(value: bytes | None, needles: list[str], stand_in: str) -> bytes | None:
    """A binary value without the person: a msgpack body (a quarantined event's) decoded and packed
    again, so that it still decodes; anything else replaced byte for byte."""
    if value is None or not any(n.encode() in value for n in needles):
        return value
    try:
        decoded = unpack(value)
    except Exception:  # not msgpack: the bytes are all there is
        decoded = None
    if decoded is not None and any(mentions(decoded, n) for n in needles):
        value = pack(_all(decoded, needles, stand_in))
    for needle in needles:
        value = value.replace(needle.encode(), stand_in.encode())
    return value


def _versions(table: pa.Table) -> set[int]:
    if "version" not in table.column_names or not pa.types.is_integer(table.schema.field("version").type):
        return set()
    return {v for v in pc.unique(table.column("version")).to_pylist() if v is not None}


def _newest(table: pa.Table, newest: float | None) -> float | None:
    """The newest instant of the rows (``at`` of an event, ``t`` of a sample), in unix seconds."""
    for name in ("at", "t"):
        if name in table.column_names and pa.types.is_timestamp(table.schema.field(name).type):
            top = pc.max(table.column(name))
            if top.is_valid:
                at = top.cast(pa.int64()).as_py() / _UNITS[table.schema.field(name).type.unit]
                return at if newest is None else max(newest, at)
            return newest
    return newest


# -- where files are -----------------------------------------------------------


def _races(root: Path) -> list[Path]:
    base = root / TELEMETRY
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink() and p.name.startswith("race="))


def _clear(race: Path) -> int:
    """Delete a race's archive, all of it but the lock its holder keeps; how many files went."""
    gone = 0
    for entry in sorted(race.iterdir()):
        if entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            gone += sum(1 for p in entry.rglob("*.parquet"))
            shutil.rmtree(entry)
        else:
            gone += entry.name.endswith(".parquet")
            entry.unlink()
    fsync_dir(race)
    return gone


def _other_files(root: Path) -> Iterator[Path]:
    """The Parquet files outside ``events`` and ``telemetry``: the aggregates, and whatever else is kept there."""
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d not in (EVENTS, TELEMETRY)]
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".parquet") and not name.startswith("."):
                yield here / name
