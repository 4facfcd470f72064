"""The store on one SQLite file, shared by every host process on the machine.

sqlite3 blocks, so each store owns one worker thread that owns the connection:
every call runs there, in order, and the event loop only awaits it.

The journal holds segments, not entries: one row per run of consecutive seqs of an
entity in one append, its entries packed together. A row costs the same whether it
holds one entry or a thousand, so a hot entity's burst costs one row.

A batch that spans many entities would still cost a random-key row per entity; it is
written instead as one row of the commit log (``journal_log``, appended at the end of its
tree) and folded into the journal in bulk, an entity's runs of many commits joined into one
segment: a host's journal cost is per commit, not per entity (docs/engine.md, "The commit
log"). Every read of the journal folds what is pending first, so readers see one journal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any, TypeVar

from engine.codec import pack, unpack
from engine.erasure import replace_all
from engine.events import EventRecord
from engine.store import LOAD_CHUNK, DeadLetter, JournalConflict, JournalEntry, Mention, Reminder, Snapshot, StoreError
from persistence.migrations import SCHEMA_MIGRATIONS_DDL, Migration, pending
from persistence.segments import SEGMENT_BYTES, Segment, join_entries, loaded_entities, pack_segments, unpack_segments

__all__ = ["SQLiteStore"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
_COMMIT_LOG = ("auto", "on", "off")
_BUSY_TIMEOUT_MS = 10_000
_WAL_CHECKPOINT_PAGES = 10_000  # ~40 MiB of WAL between checkpoints
_CACHE_KIB = 64 * 1024

# The commit log (migrations/sqlite/0003_commit_log.sql). A batch of more segments than this is
# logged as one row; fewer are cheaper as journal rows at once (a race's batch is one segment).
_LOG_SEGMENTS = 32
# A store folds once it logged this many entries since its last fold, or its oldest is this old:
# a fold joins each entity's runs of all the commits it folds, so the fewer folds the fewer rows
# (a fold of 100,000 entries over 10,000 entities takes ~120 ms here; the next commit waits for it).
_FOLD_ENTRIES = 100_000
_FOLD_AGE_S = 2.0
# The log pays only if a fold joins runs: a store logs wide batches while, over the last
# _FOLD_ENTRIES entries of them, an entity had at least this many on average (else each entry
# is written twice for nothing: 100,000 athletes each once in a fold is 0.8x the journal alone).
_FOLD_GAIN = 2.0
_VOUCHED = 500_000  # entities a store vouches for from memory; past it, it forgets them all and probes

_INSERT_LOG = "INSERT INTO journal_log (owner, segments) VALUES (?, ?)"
_UPSERT_CLAIM = (
    "INSERT INTO journal_claims (kind, entity_id, owner) VALUES (?, ?, ?)"
    " ON CONFLICT (kind, entity_id) DO UPDATE SET owner = excluded.owner"
)
_GENERATION = "SELECT value FROM journal_meta WHERE name = 'claims_generation'"
_BUMP_GENERATION = "UPDATE journal_meta SET value = value + 1 WHERE name = 'claims_generation' RETURNING value"
_OVERLAP = (
    "SELECT 1 FROM journal WHERE kind = ? AND entity_id = ? AND last_seq >= ? AND first_seq <= ?"
    " ORDER BY last_seq LIMIT 1"
)

_SNAPSHOT_ROW = attrgetter("kind", "entity_id", "seq", "state", "taken_at", "schema_version")

# The journal_segments_do_not_overlap trigger rejects a segment that shares a seq with a journaled one.
_INSERT_SEGMENT = "INSERT INTO journal (kind, entity_id, first_seq, last_seq, entries) VALUES (?, ?, ?, ?, ?)"
_SELECT_SEGMENTS = (
    "SELECT first_seq, entries FROM journal WHERE kind = ? AND entity_id = ? AND last_seq > ? ORDER BY last_seq"
)
_SELECT_SEGMENTS_UP_TO = (
    "SELECT first_seq, entries FROM journal WHERE kind = ? AND entity_id = ? AND last_seq > ? AND first_seq <= ?"
    " ORDER BY last_seq"
)
_DELETE_SEGMENTS = (
    "DELETE FROM journal WHERE kind = ? AND entity_id = ? AND last_seq <= ? RETURNING last_seq - first_seq + 1"
)
_UPSERT_REMINDER = (
    "INSERT INTO reminders (kind, entity_id, due) VALUES (?, ?, ?)"
    " ON CONFLICT (kind, entity_id) DO UPDATE SET due = excluded.due"
)
_DELETE_REMINDER = "DELETE FROM reminders WHERE kind = ? AND entity_id = ?"
_UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (kind, entity_id, seq, state, taken_at, schema_version) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (kind, entity_id) DO UPDATE SET"
    " seq = excluded.seq, state = excluded.state, taken_at = excluded.taken_at,"
    " schema_version = excluded.schema_version"
    " WHERE snapshots.seq < excluded.seq"
)
_SELECT_SNAPSHOT = (
    "SELECT kind, entity_id, seq, state, taken_at, schema_version FROM snapshots WHERE kind = ? AND entity_id = ?"
)
_ENTITY_IDS = (
    "SELECT entity_id FROM snapshots WHERE kind = ?1 UNION SELECT entity_id FROM journal WHERE kind = ?1 ORDER BY 1"
)
_EVENT_COLUMNS = "source_kind, source_id, seq, idx, type, version, at, user_id, body"
_INSERT_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SELECT_EVENTS = f"SELECT {_EVENT_COLUMNS}, position FROM events WHERE position > ? ORDER BY position LIMIT ?"
_UPSERT_CURSOR = (
    "INSERT INTO event_cursors (name, position, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at"
)
_INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (subscription, target, position, event, error, attempts, failed_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class SQLiteStore:
    name = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", commit_log: str = "auto") -> None:
        """``commit_log``: ``"auto"`` logs wide batches while their entities repeat enough for folds to
        join runs, ``"on"`` always, ``"off"`` never (every batch straight into the journal, as before)."""
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}, not {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._worker: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        if commit_log not in _COMMIT_LOG:
            raise ValueError(f"commit_log must be one of {', '.join(_COMMIT_LOG)}, not {commit_log!r}")
        self._claims = _Claims(None if commit_log == "off" else _LOG_SEGMENTS, always=commit_log == "on")
        self._folding: asyncio.Future | None = None

    async def open(self) -> None:
        if self._worker is not None:
            return
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="arena-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(worker, _connect, self.path, self._synchronous)
        except (sqlite3.Error, OSError) as exc:
            worker.shutdown(wait=False)
            raise StoreError(f"could not open the SQLite store at {self.path}: {exc}") from exc
        self._worker, self._conn = worker, conn
        try:
            await self._run("apply schema migrations", _migrate)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        worker, conn = self._worker, self._conn
        if worker is None:
            return
        if self._claims.logged:  # fold what this store logged: readers need not (best effort)
            try:
                await self._run("fold the commit log", _fold_pending, self._claims)
            except StoreError as error:
                _log.warning("%s", error)
        self._worker = self._conn = None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(worker, conn.close)
        worker.shutdown(wait=False)

    async def append(
        self, entries: Sequence[JournalEntry], reminders: Sequence[Reminder] = (), events: Sequence[EventRecord] = ()
    ) -> None:
        if entries or reminders or events:
            await self._run("append to the journal", _append, self._claims, entries, reminders, events)
            if self._claims.fold_due() and (self._folding is None or self._folding.done()):
                # After the append's callers have their answer; the next append waits behind it.
                self._folding = asyncio.ensure_future(self._fold())

    async def _fold(self) -> None:
        if self._worker is None:  # closed meanwhile: close folded
            return
        try:
            await self._run("fold the commit log", _fold_pending, self._claims)
        except StoreError as error:  # the log stays; the next fold or read folds it
            _log.warning("%s", error)

    async def read_journal(
        self, kind: str, entity_id: str, after_seq: int = 0, up_to_seq: int | None = None
    ) -> list[JournalEntry]:
        return await self._run("read the journal", _read_journal, self._claims, kind, entity_id, after_seq, up_to_seq)

    async def save_snapshots(self, snapshots: Sequence[Snapshot]) -> None:
        if snapshots:
            await self._run("save snapshots", _in_transaction, _save_snapshots, snapshots)

    async def load(self, kind: str, entity_ids: Sequence[str]) -> dict[str, tuple[Snapshot | None, list[JournalEntry]]]:
        return await self._run("load entities", _load, self._claims, kind, list(dict.fromkeys(entity_ids)))

    async def load_snapshot(self, kind: str, entity_id: str) -> Snapshot | None:
        return await self._run("load a snapshot", _load_snapshot, kind, entity_id)

    async def compact(self, kind: str, entity_id: str, up_to_seq: int) -> int:
        return await self._run("compact the journal", _compact, self._claims, kind, entity_id, up_to_seq)

    async def reminders(self) -> list[Reminder]:
        return await self._run("list reminders", _reminders)

    async def delete_entity(self, kind: str, entity_id: str) -> None:
        await self._run("delete an entity", _in_transaction, _delete_entity, self._claims, kind, entity_id)

    async def entity_ids(self, kind: str) -> list[str]:
        return await self._run("list entity ids", _entity_ids, self._claims, kind)

    async def read_events(self, after: int, limit: int, types: Sequence[str] | None = None) -> list[EventRecord]:
        return await self._run("read events", _read_events, after, limit, None if types is None else list(types))

    async def last_event_position(self) -> int:
        return await self._run("read the last event position", _last_event_position)

    async def cursors(self) -> dict[str, int]:
        return await self._run("read cursors", _cursors)

    async def save_cursor(self, name: str, position: int) -> None:
        await self._run("save a cursor", _in_transaction, _save_cursor, name, position)

    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        if letters:
            await self._run("add dead letters", _in_transaction, _add_dead_letters, letters)

    async def dead_letters(self, subscription: str | None = None, limit: int = 100) -> list[DeadLetter]:
        return await self._run("read dead letters", _dead_letters, subscription, limit)

    async def remove_dead_letters(self, ids: Sequence[int]) -> int:
        return await self._run("remove dead letters", _in_transaction, _remove_dead_letters, list(ids))

    async def prune_events(self, up_to: int) -> int:
        return await self._run("prune events", _in_transaction, _prune_events, up_to)

    async def mentions(self, needle: str) -> list[Mention]:
        return await self._run("find mentions", _mentions, self._claims, needle)

    async def erase_events(self, user_id: str, stand_in: str, keep: Sequence[str] = ()) -> int:
        return await self._run("erase events", _in_transaction, _erase_events, user_id, stand_in, list(keep))

    async def health(self) -> dict:
        report: dict[str, Any] = {"store": self.name, "path": str(self.path)}
        try:
            version = await self._run("check health", _schema_version)
        except Exception as exc:
            return {**report, "ok": False, "error": str(exc)}
        return {**report, "ok": True, "schema_version": version}

    async def _run(self, what: str, work: Callable[..., _T], *args: Any) -> _T:
        if self._worker is None:
            raise StoreError(f"could not {what}: the SQLite store at {self.path} is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._worker, work, self._conn, *args)
        except sqlite3.Error as exc:
            raise StoreError(f"could not {what} in the SQLite store at {self.path}: {exc}") from exc


# Everything below runs on the store's worker thread.


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: sqlite3 opens no implicit transactions; _in_transaction does it.
    conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        _enable_wal(conn)
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        # Journal batches touch pages all over the primary key; a bigger WAL and cache let
        # one checkpoint copy a page once for many commits. Measured +10-40% append rate.
        conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
    except BaseException:
        conn.close()
        raise
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    # Hosts opening a new file at once all switch it to WAL; one that loses the race for the
    # exclusive lock gets SQLITE_BUSY at once, without the busy handler, so it retries here.
    deadline = time.monotonic() + _BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorname != "SQLITE_BUSY" or time.monotonic() > deadline:
                raise
        time.sleep(0.01)


def _in_transaction(conn: sqlite3.Connection, work: Callable[..., _T], *args: Any) -> _T:
    # IMMEDIATE takes the write lock up front: a deferred transaction that starts
    # writing after another process committed fails at once instead of waiting.
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(SCHEMA_MIGRATIONS_DDL["sqlite"])
    applied = [version for (version,) in conn.execute("SELECT version FROM schema_migrations")]
    for migration in pending("sqlite", applied):
        _in_transaction(conn, _apply, migration)


def _apply(conn: sqlite3.Connection, migration: Migration) -> None:
    # Checked again under the write lock: another host may have applied it meanwhile.
    if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)).fetchone():
        return
    for statement in _statements(migration.sql):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_migrations (version, name) VALUES (?, ?)", (migration.version, migration.name))
    _log.info("applied migration", extra={"store": "sqlite", "version": migration.version, "migration": migration.name})


def _statements(script: str) -> list[str]:
    """Split a script into statements; executescript would commit our transaction."""
    statements, current = [], ""
    for piece in script.split(";"):
        current += piece + ";"
        # A ';' inside a string literal or a trigger body does not end the statement.
        if sqlite3.complete_statement(current):
            if current.strip(" \t\r\n;"):
                statements.append(current)
            current = ""
    return statements


class _Claims:
    """One store's side of the commit log: its name in ``journal_claims``, the claims generation it
    last saw, the last seq it journaled of each entity it claimed (what it vouches for without a
    query), and what it logged since its last fold."""

    def __init__(self, log_segments: int | None, always: bool = False) -> None:
        self.log_segments = log_segments  # a batch of more segments may be logged; None: never
        self.always = always  # log every such batch, whatever ``observe`` finds
        self.owner = os.urandom(8).hex()
        self.generation = -1
        self.last_seq: dict[tuple[str, str], int] = {}
        self.logged = 0  # entries
        self.logged_since = 0.0
        self.pending: set[tuple[str, str]] = set()  # the entities of those entries
        self.logging = always  # whether wide batches go to the log (decided by ``observe``)
        self.window: set[tuple[str, str]] = set()  # the entities of the wide batches observed...
        self.window_entries = 0  # ...and their entries

    @property
    def on(self) -> bool:
        """Whether this store may log (``commit_log="off"``: never, and no claims: the journal as before)."""
        return self.log_segments is not None

    def wide(self, segments: list[Segment]) -> bool:
        return self.log_segments is not None and len(segments) > self.log_segments

    def observe(self, keys: Iterable[tuple[str, str]], entries: int) -> None:
        """A wide batch of ``entries`` for the entities ``keys`` was written: over each fold's worth of
        them, decide whether their entities repeat enough for a fold to join runs (then they go to the
        log) or not (straight into the journal)."""
        self.window.update(keys)
        self.window_entries += entries
        if self.window_entries >= _FOLD_ENTRIES:
            self.logging = self.always or self.window_entries >= _FOLD_GAIN * len(self.window)
            self.window.clear()
            self.window_entries = 0

    def folded(self) -> None:
        """A fold of this store's committed: nothing of its own is pending."""
        self.logged = 0
        self.pending.clear()

    def fold_due(self) -> bool:
        return self.logged >= _FOLD_ENTRIES or (self.logged > 0 and time.monotonic() - self.logged_since >= _FOLD_AGE_S)


def _append(
    conn: sqlite3.Connection,
    claims: _Claims,
    entries: Sequence[JournalEntry],
    reminders: Sequence[Reminder],
    events: Sequence[EventRecord],
) -> None:
    # Packed before the write lock is taken: other processes wait only for the writes.
    segments = pack_segments(entries)
    wide = claims.wide(segments)
    logged = pack(segments) if wide and claims.logging else None
    journaled, unclaimed = _in_transaction(conn, _write, claims, segments, logged, len(entries), reminders, events)
    if wide:
        claims.observe(journaled, len(entries))
    for key in unclaimed:  # written straight into the journal, not claimed: not vouched for
        del journaled[key]
    if len(claims.last_seq) + len(journaled) > _VOUCHED:
        claims.last_seq.clear()
    claims.last_seq.update(journaled)  # once durable
    if logged is not None:
        if not claims.logged:
            claims.logged_since = time.monotonic()
        claims.logged += len(entries)
        claims.pending.update(journaled)


def _write(
    conn: sqlite3.Connection,
    claims: _Claims,
    segments: list[Segment],
    logged: bytes | None,
    count: int,
    reminders: Sequence[Reminder],
    events: Sequence[EventRecord],
) -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
    journaled: dict[tuple[str, str], int] = {}
    unclaimed: set[tuple[str, str]] = set()
    if segments and claims.on:
        journaled, unclaimed = _vouch(conn, claims, segments, count, logged is not None)
    try:
        if logged is None:
            conn.executemany(_INSERT_SEGMENT, segments)
        else:
            conn.execute(_INSERT_LOG, (claims.owner, logged))
        if events:
            conn.executemany(_INSERT_EVENT, (event[:9] for event in events))
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorname not in ("SQLITE_CONSTRAINT_TRIGGER", "SQLITE_CONSTRAINT_UNIQUE"):
            raise
        raise JournalConflict(
            f"the journal already holds a seq of an entity in this batch of {count} entries; nothing was written"
        ) from exc
    if reminders:
        # The last reminder of an entity in the batch wins, as if applied one by one.
        latest = {(reminder.kind, reminder.entity_id): reminder.due for reminder in reminders}
        conn.executemany(_UPSERT_REMINDER, ((*key, due) for key, due in latest.items() if due is not None))
        conn.executemany(_DELETE_REMINDER, (key for key, due in latest.items() if due is None))
    return journaled, unclaimed


def _vouch(
    conn: sqlite3.Connection, claims: _Claims, segments: list[Segment], count: int, logging: bool
) -> tuple[dict[tuple[str, str], int], set[tuple[str, str]]]:
    """Check ``segments`` against what is journaled or logged (``JournalConflict`` if one shares a seq);
    answer each entity's last seq once they are written, and the entities this store leaves
    unclaimed. The log is not in the journal's key, so the trigger cannot see it: a store vouches for
    the entities it claimed and wrote past (no query) and checks the others, folding the log first
    where another store claimed them (its log may hold them)."""
    generation = conn.execute(_GENERATION).fetchone()[0]
    if generation != claims.generation:  # a store took a claim over or an entity was deleted: check again
        claims.last_seq.clear()
        claims.generation = generation
    known = claims.last_seq
    journaled: dict[tuple[str, str], int] = {}
    unsure: list[Segment] = []
    for segment in segments:  # an entity's segments come in seq order (pack_segments)
        key = segment[:2]
        last = journaled.get(key)
        if last is None:
            last = known.get(key)
        if last is None or segment[2] <= last:
            unsure.append(segment)
        journaled[key] = segment[3]
    return journaled, _probe(conn, claims, unsure, count, logging) if unsure else set()


def _probe(
    conn: sqlite3.Connection, claims: _Claims, unsure: list[Segment], count: int, logging: bool
) -> set[tuple[str, str]]:
    """Check the segments this store cannot vouch for; answer the entities it leaves unclaimed."""
    keys = list(dict.fromkeys(segment[:2] for segment in unsure))
    anyone = conn.execute("SELECT 1 FROM journal_claims LIMIT 1").fetchone() is not None
    owners = _owners(conn, keys) if anyone else {}
    if owners:  # claimed: the claimer's log may hold its seqs (an entity never claimed was never logged)
        _fold(conn)
    if logging:  # the journal's trigger will not see them: probe, and claim them all
        for kind, entity_id, first_seq, last_seq, _ in unsure:
            if conn.execute(_OVERLAP, (kind, entity_id, first_seq, last_seq)).fetchone() is not None:
                raise JournalConflict(
                    f"the journal already holds a seq of {kind} {entity_id!r} in {first_seq}..{last_seq}"
                    f" (a batch of {count} entries); nothing was written"
                )
        claimed, unclaimed = keys, set()
    else:  # straight into the journal, whose trigger checks them: only what another store may log is claimed
        claimed, unclaimed = list(owners), set(keys) - set(owners)
    conn.executemany(_UPSERT_CLAIM, ((kind, entity_id, claims.owner) for kind, entity_id in claimed))
    if any(owner != claims.owner for owner in owners.values()):  # taken over: the old claimer must not vouch again
        claims.generation = conn.execute(_BUMP_GENERATION).fetchone()[0]
    return unclaimed


def _owners(conn: sqlite3.Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """The claimer of each of ``keys`` that has one: a query per 500, not per entity."""
    owners: dict[tuple[str, str], str] = {}
    for start in range(0, len(keys), LOAD_CHUNK):
        chunk = keys[start : start + LOAD_CHUNK]
        rows = conn.execute(
            f"WITH wanted (kind, entity_id) AS (VALUES {', '.join(['(?, ?)'] * len(chunk))})"
            " SELECT c.kind, c.entity_id, c.owner FROM wanted CROSS JOIN journal_claims AS c"
            " WHERE c.kind = wanted.kind AND c.entity_id = wanted.entity_id",
            [value for key in chunk for value in key],
        )
        owners.update(((kind, entity_id), owner) for kind, entity_id, owner in rows)
    return owners


def _fold(conn: sqlite3.Connection) -> int:
    """Every logged segment into the journal, in the caller's transaction; an entity's consecutive
    runs, of however many commits, become one row (up to the segment size). Returns the rows written."""
    rows = conn.execute("SELECT id, segments FROM journal_log ORDER BY id").fetchall()
    if not rows:
        return 0
    runs: dict[tuple[str, str], list[list]] = {}
    for _, logged in rows:
        for kind, entity_id, first_seq, last_seq, packed in unpack(logged):
            entity = runs.get((kind, entity_id))
            if entity is None:
                runs[kind, entity_id] = [[first_seq, last_seq, [packed], len(packed)]]
                continue
            run = entity[-1]
            if first_seq == run[1] + 1 and run[3] + len(packed) <= SEGMENT_BYTES:
                run[1] = last_seq
                run[2].append(packed)
                run[3] += len(packed)
            else:
                entity.append([first_seq, last_seq, [packed], len(packed)])
    folded = [
        (kind, entity_id, first_seq, last_seq, join_entries(packed))
        for (kind, entity_id), entity in runs.items()
        for first_seq, last_seq, packed, _ in entity
    ]
    conn.executemany(_INSERT_SEGMENT, folded)
    conn.execute("DELETE FROM journal_log WHERE id <= ?", (rows[-1][0],))
    return len(folded)


def _fold_pending(conn: sqlite3.Connection, claims: _Claims) -> None:
    """Fold the log if it holds anything: before a read of the journal, readers see every durable entry."""
    if conn.execute("SELECT 1 FROM journal_log LIMIT 1").fetchone() is not None:
        _in_transaction(conn, _fold)
    claims.folded()


def _fold_for(conn: sqlite3.Connection, claims: _Claims, kind: str, entity_ids: Sequence[str]) -> None:
    """Fold the log before reading these entities' journals if it may hold some of their entries:
    this store's log holds only the entities it logged since its last fold, and another store's only
    entities it claimed. A host activating its own entities mostly folds nothing."""
    if any((kind, entity_id) in claims.pending for entity_id in entity_ids):
        _fold_pending(conn, claims)
        return
    if conn.execute("SELECT 1 FROM journal_log LIMIT 1").fetchone() is None:
        return
    for start in range(0, len(entity_ids), LOAD_CHUNK):
        chunk = entity_ids[start : start + LOAD_CHUNK]
        foreign = conn.execute(
            f"SELECT 1 FROM journal_claims WHERE kind = ? AND entity_id IN ({', '.join('?' * len(chunk))})"
            " AND owner != ? LIMIT 1",
            (kind, *chunk, claims.owner),
        ).fetchone()
        if foreign is not None:
            _fold_pending(conn, claims)
            return


def _read_journal(
    conn: sqlite3.Connection, claims: _Claims, kind: str, entity_id: str, after_seq: int, up_to_seq: int | None
) -> list[JournalEntry]:
    _fold_for(conn, claims, kind, [entity_id])
    if up_to_seq is None:
        return unpack_segments(kind, entity_id, after_seq, conn.execute(_SELECT_SEGMENTS, (kind, entity_id, after_seq)))
    rows = conn.execute(_SELECT_SEGMENTS_UP_TO, (kind, entity_id, after_seq, up_to_seq))
    return unpack_segments(kind, entity_id, after_seq, rows, up_to_seq)


def _save_snapshots(conn: sqlite3.Connection, snapshots: Sequence[Snapshot]) -> None:
    conn.executemany(_UPSERT_SNAPSHOT, map(_SNAPSHOT_ROW, snapshots))


def _load(
    conn: sqlite3.Connection, claims: _Claims, kind: str, entity_ids: list[str]
) -> dict[str, tuple[Snapshot | None, list[JournalEntry]]]:
    _fold_for(conn, claims, kind, entity_ids)
    loaded: dict[str, tuple[Snapshot | None, list[JournalEntry]]] = {}
    for start in range(0, len(entity_ids), LOAD_CHUNK):
        chunk = entity_ids[start : start + LOAD_CHUNK]
        marks = ", ".join("?" * len(chunk))
        snapshots = {
            row[1]: Snapshot(*row)
            for row in conn.execute(
                f"SELECT kind, entity_id, seq, state, taken_at, schema_version FROM snapshots"
                f" WHERE kind = ? AND entity_id IN ({marks})",
                (kind, *chunk),
            )
        }
        # Each entity's journal after its snapshot's seq, read as a range of the primary key. A join
        # on the snapshots table read a snapshot's row once per journal row: a 47 MB board's recovery
        # spent seconds there. No ORDER BY: a sort would copy every segment; each list is sorted below.
        after = [(entity_id, snapshots[entity_id].seq if entity_id in snapshots else 0) for entity_id in chunk]
        segments: dict[str, list[tuple[int, bytes]]] = {}
        for entity_id, first_seq, packed in conn.execute(
            f"WITH after (entity_id, seq) AS (VALUES {', '.join(['(?, ?)'] * len(chunk))})"
            f" SELECT j.entity_id, j.first_seq, j.entries FROM after CROSS JOIN journal AS j"
            f" WHERE j.kind = ? AND j.entity_id = after.entity_id AND j.last_seq > after.seq",
            (*(value for row in after for value in row), kind),
        ):
            segments.setdefault(entity_id, []).append((first_seq, packed))
        for rows in segments.values():
            rows.sort(key=itemgetter(0))
        loaded.update(loaded_entities(kind, chunk, snapshots, segments))
    return loaded


def _load_snapshot(conn: sqlite3.Connection, kind: str, entity_id: str) -> Snapshot | None:
    row = conn.execute(_SELECT_SNAPSHOT, (kind, entity_id)).fetchone()
    return None if row is None else Snapshot(*row)


def _compact(conn: sqlite3.Connection, claims: _Claims, kind: str, entity_id: str, up_to_seq: int) -> int:
    _fold_for(conn, claims, kind, [entity_id])  # erasure compacts to leave no entry naming the person
    return sum(count for (count,) in conn.execute(_DELETE_SEGMENTS, (kind, entity_id, up_to_seq)))


def _reminders(conn: sqlite3.Connection) -> list[Reminder]:
    rows = conn.execute("SELECT kind, entity_id, due FROM reminders ORDER BY due, kind, entity_id")
    return [Reminder(*row) for row in rows]


def _delete_entity(conn: sqlite3.Connection, claims: _Claims, kind: str, entity_id: str) -> None:
    _fold(conn)
    for table in ("journal", "snapshots", "reminders", "journal_claims"):
        conn.execute(f"DELETE FROM {table} WHERE kind = ? AND entity_id = ?", (kind, entity_id))
    claims.generation = conn.execute(_BUMP_GENERATION).fetchone()[0]  # no other store vouches for it any more
    claims.last_seq.pop((kind, entity_id), None)


def _entity_ids(conn: sqlite3.Connection, claims: _Claims, kind: str) -> list[str]:
    _fold_pending(conn, claims)
    return [entity_id for (entity_id,) in conn.execute(_ENTITY_IDS, (kind,))]


def _read_events(conn: sqlite3.Connection, after: int, limit: int, types: list[str] | None) -> list[EventRecord]:
    if types is None:
        rows = conn.execute(_SELECT_EVENTS, (after, limit))
    else:  # one index range per type, merged by position
        marks = ", ".join("?" * len(types))
        rows = conn.execute(
            f"SELECT {_EVENT_COLUMNS}, position FROM events INDEXED BY events_by_type"
            f" WHERE type IN ({marks}) AND position > ? ORDER BY position LIMIT ?",
            (*types, after, limit),
        )
    return [EventRecord(*row) for row in rows]


def _last_event_position(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0]


def _cursors(conn: sqlite3.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT name, position FROM event_cursors"))


def _save_cursor(conn: sqlite3.Connection, name: str, position: int) -> None:
    conn.execute(_UPSERT_CURSOR, (name, position, time.time()))


def _add_dead_letters(conn: sqlite3.Connection, letters: Sequence[DeadLetter]) -> None:
    conn.executemany(
        _INSERT_DEAD_LETTER,
        (
            (d.subscription, d.target, d.event.position, pack(list(d.event)), d.error, d.attempts, d.failed_at)
            for d in letters
        ),
    )


def _dead_letters(conn: sqlite3.Connection, subscription: str | None, limit: int) -> list[DeadLetter]:
    query = "SELECT id, subscription, target, event, error, attempts, failed_at FROM dead_letters"
    args: tuple = (limit,)
    if subscription is not None:
        query += " WHERE subscription = ?"
        args = (subscription, limit)
    rows = conn.execute(query + " ORDER BY id LIMIT ?", args)
    return [
        DeadLetter(subscription, target, EventRecord(*unpack(event)), error, attempts, failed_at, id)
        for id, subscription, target, event, error, attempts, failed_at in rows
    ]


def _remove_dead_letters(conn: sqlite3.Connection, ids: list[int]) -> int:
    return sum(conn.execute("DELETE FROM dead_letters WHERE id = ?", (i,)).rowcount for i in ids)


def _prune_events(conn: sqlite3.Connection, up_to: int) -> int:
    return conn.execute("DELETE FROM events WHERE position <= ?", (up_to,)).rowcount


# instr() on a BLOB and a BLOB compares bytes: a msgpack string is its UTF-8 bytes.
_MENTIONS = (
    ("snapshot", "SELECT kind, entity_id FROM snapshots WHERE instr(entity_id, ?1) OR instr(state, ?2)"),
    ("journal", "SELECT DISTINCT kind, entity_id FROM journal WHERE instr(entity_id, ?1) OR instr(entries, ?2)"),
    ("reminder", "SELECT kind, entity_id FROM reminders WHERE instr(entity_id, ?1) AND ?2 IS NOT NULL"),
    ("event", "SELECT type, position FROM events"
     " WHERE user_id = ?1 OR instr(source_id, ?1) OR instr(body, ?2) ORDER BY position"),
    ("dead_letter", "SELECT subscription, id FROM dead_letters WHERE instr(target, ?1) OR instr(event, ?2)"),
    ("cursor", "SELECT name, '' FROM event_cursors WHERE instr(name, ?1) AND ?2 IS NOT NULL"),
)  # fmt: skip


def _mentions(conn: sqlite3.Connection, claims: _Claims, needle: str) -> list[Mention]:
    _fold_pending(conn, claims)
    found: list[Mention] = []
    for place, query in _MENTIONS:
        found.extend(Mention(place, kind, str(key)) for kind, key in conn.execute(query, (needle, needle.encode())))
    return found


def _erase_events(conn: sqlite3.Connection, user_id: str, stand_in: str, keep: list[str]) -> int:
    marks = ", ".join("?" * len(keep))
    changed = conn.execute(
        f"DELETE FROM events WHERE user_id = ? AND type NOT IN ({marks})", (user_id, *keep)
    ).rowcount
    rows = conn.execute(
        "SELECT position, source_id, user_id, body FROM events WHERE instr(source_id, ?) OR instr(body, ?)",
        (user_id, user_id.encode()),
    ).fetchall()
    for position, source_id, about, body in rows:
        if about == user_id:
            continue  # a kept notice: it names the person on purpose
        conn.execute(
            "UPDATE events SET source_id = ?, body = ? WHERE position = ?",
            (source_id.replace(user_id, stand_in), pack(replace_all(unpack(body), user_id, stand_in)), position),
        )
        changed += 1
    changed += conn.execute(
        "DELETE FROM dead_letters WHERE instr(target, ?) OR instr(event, ?)", (user_id, user_id.encode())
    ).rowcount
    return changed


def _schema_version(conn: sqlite3.Connection) -> int | None:
    return conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
