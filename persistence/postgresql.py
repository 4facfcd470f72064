"""The store on PostgreSQL, shared by every host of a cluster, through an asyncpg pool.

The journal holds segments (``persistence.segments``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from operator import attrgetter
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from engine.codec import pack, unpack
from engine.erasure import replace_all
from engine.events import EventRecord
from engine.store import LOAD_CHUNK, DeadLetter, JournalConflict, JournalEntry, Mention, Reminder, Snapshot, StoreError
from persistence.migrations import SCHEMA_MIGRATIONS_DDL, pending
from persistence.segments import Segment, loaded_entities, pack_segments, unpack_segments

__all__ = ["PostgresStore"]

# Erasure's full scans ($1 the id as text, $2 its UTF-8 bytes): what Store.mentions reports.
_MENTIONS = (
    ("snapshot", "SELECT kind, entity_id FROM snapshots"
     " WHERE strpos(entity_id, $1) > 0 OR position($2::bytea IN state) > 0"),
    ("journal", "SELECT DISTINCT kind, entity_id FROM journal"
     " WHERE strpos(entity_id, $1) > 0 OR position($2::bytea IN entries) > 0"),
    ("reminder", "SELECT kind, entity_id FROM reminders WHERE strpos(entity_id, $1) > 0 AND $2::bytea IS NOT NULL"),
    ("event", "SELECT type, position FROM events WHERE user_id = $1 OR strpos(source_id, $1) > 0"
     " OR position($2::bytea IN body) > 0 ORDER BY position"),
    ("dead_letter", "SELECT subscription, id FROM dead_letters"
     " WHERE strpos(target, $1) > 0 OR position($2::bytea IN event) > 0"),
    ("cursor", "SELECT name, '' FROM event_cursors WHERE strpos(name, $1) > 0 AND $2::bytea IS NOT NULL"),
)  # fmt: skip

_log = logging.getLogger(__name__)

# Any fixed number will do, as long as every Arena host uses the same one.
_MIGRATION_LOCK = 0x41_72_65_6E_61  # "Arena"
_HEALTH_TIMEOUT_S = 5.0
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)

_SEGMENT_COLUMNS = ("kind", "entity_id", "first_seq", "last_seq", "entries")
_SNAPSHOT_ROW = attrgetter("kind", "entity_id", "seq", "state", "taken_at", "schema_version")

# Writers of one entity take its lock, in a fixed order so two batches cannot deadlock;
# without it two hosts could both pass the overlap probe under READ COMMITTED.
_LOCK_ENTITIES = (
    "SELECT pg_advisory_xact_lock(key) FROM (SELECT DISTINCT hashtextextended(length(kind) || ':' || kind || entity_id, 0) AS key"
    " FROM unnest($1::text[], $2::text[]) AS batch (kind, entity_id) ORDER BY key) AS keys"
)
# One index range scan per new segment, which finds nothing when it goes past the
# entity's last one, as appends do.
_FIRST_OVERLAP = (
    "SELECT new.kind, new.entity_id, new.first_seq, new.last_seq"
    " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS new (kind, entity_id, first_seq, last_seq)"
    " WHERE EXISTS (SELECT 1 FROM journal WHERE journal.kind = new.kind AND journal.entity_id = new.entity_id"
    " AND journal.last_seq >= new.first_seq AND journal.first_seq <= new.last_seq)"
    " LIMIT 1"
)
_SELECT_SEGMENTS = (
    "SELECT first_seq, entries FROM journal WHERE kind = $1 AND entity_id = $2 AND last_seq > $3 ORDER BY last_seq"
)
_SELECT_SEGMENTS_UP_TO = (
    "SELECT first_seq, entries FROM journal WHERE kind = $1 AND entity_id = $2 AND last_seq > $3 AND first_seq <= $4"
    " ORDER BY last_seq"
)
_DELETE_SEGMENTS = (
    "WITH deleted AS (DELETE FROM journal WHERE kind = $1 AND entity_id = $2 AND last_seq <= $3"
    " RETURNING last_seq - first_seq + 1 AS entries)"
    " SELECT coalesce(sum(entries), 0)::bigint FROM deleted"
)
_UPSERT_REMINDERS = (
    "INSERT INTO reminders (kind, entity_id, due) SELECT * FROM unnest($1::text[], $2::text[], $3::float8[])"
    " ON CONFLICT (kind, entity_id) DO UPDATE SET due = EXCLUDED.due"
)
_DELETE_REMINDERS = (
    "DELETE FROM reminders USING unnest($1::text[], $2::text[]) AS gone (kind, entity_id)"
    " WHERE reminders.kind = gone.kind AND reminders.entity_id = gone.entity_id"
)
_UPSERT_SNAPSHOT = (
    "INSERT INTO snapshots (kind, entity_id, seq, state, taken_at, schema_version) VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT (kind, entity_id) DO UPDATE SET"
    " seq = EXCLUDED.seq, state = EXCLUDED.state, taken_at = EXCLUDED.taken_at,"
    " schema_version = EXCLUDED.schema_version"
    " WHERE snapshots.seq < EXCLUDED.seq"
)
_LOAD_SNAPSHOTS = (
    "SELECT kind, entity_id, seq, state, taken_at, schema_version FROM snapshots"
    " WHERE kind = $1 AND entity_id = ANY($2::text[])"
)
_LOAD_SEGMENTS = (
    "SELECT j.entity_id, j.first_seq, j.entries FROM journal AS j"
    " LEFT JOIN snapshots AS s ON s.kind = j.kind AND s.entity_id = j.entity_id"
    " WHERE j.kind = $1 AND j.entity_id = ANY($2::text[]) AND j.last_seq > coalesce(s.seq, 0)"
    " ORDER BY j.entity_id, j.last_seq"
)
_SELECT_SNAPSHOT = (
    "SELECT kind, entity_id, seq, state, taken_at, schema_version FROM snapshots WHERE kind = $1 AND entity_id = $2"
)
_ENTITY_IDS = (
    "SELECT entity_id FROM snapshots WHERE kind = $1 UNION SELECT entity_id FROM journal WHERE kind = $1 ORDER BY 1"
)
# Held from the events' insert to the commit: positions become visible in the order they are given.
_EVENTS_LOCK = 0x41_72_65_6E_62  # "Arenb"
_EVENT_COLUMNS = "source_kind, source_id, seq, idx, type, version, at, user_id, body"
_INSERT_EVENTS = (
    f"INSERT INTO events ({_EVENT_COLUMNS})"
    f" SELECT {_EVENT_COLUMNS} FROM unnest($1::text[], $2::text[], $3::bigint[], $4::int[], $5::text[], $6::int[],"
    " $7::float8[], $8::text[], $9::bytea[]) WITH ORDINALITY"
    f" AS batch ({_EVENT_COLUMNS}, n) ORDER BY n"
)
_SELECT_EVENTS = f"SELECT {_EVENT_COLUMNS}, position FROM events WHERE position > $1 ORDER BY position LIMIT $2"
_SELECT_EVENTS_OF = (
    f"SELECT {_EVENT_COLUMNS}, position FROM events WHERE type = ANY($3::text[]) AND position > $1"
    " ORDER BY position LIMIT $2"
)
_UPSERT_CURSOR = (
    "INSERT INTO event_cursors (name, position, updated_at) VALUES ($1, $2, extract(epoch FROM clock_timestamp()))"
    " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at"
)
_INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letters (subscription, target, position, event, error, attempts, failed_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
)


class PostgresStore:
    name = "postgresql"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(f"need 0 <= min_size <= max_size and max_size >= 1, not {min_size} and {max_size}")
        self._dsn = dsn
        self._where = _without_password(dsn)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(self._dsn, min_size=self._min_size, max_size=self._max_size)
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"could not connect to PostgreSQL at {self._where}: {exc}") from exc
        self._pool = pool
        try:
            async with self._connection("apply schema migrations") as conn:
                await _migrate(conn)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def append(
        self, entries: Sequence[JournalEntry], reminders: Sequence[Reminder] = (), events: Sequence[EventRecord] = ()
    ) -> None:
        if not entries and not reminders and not events:
            return
        segments = pack_segments(entries)
        # The last reminder of an entity in the batch wins, as if applied one by one.
        latest = {(reminder.kind, reminder.entity_id): reminder.due for reminder in reminders}
        upserts = [(*key, due) for key, due in latest.items() if due is not None]
        deletes = [key for key, due in latest.items() if due is None]
        async with self._connection("append to the journal") as conn, conn.transaction():
            if segments:
                await _write_segments(conn, segments, len(entries))
            if upserts:
                await conn.execute(_UPSERT_REMINDERS, *zip(*upserts))
            if deletes:
                await conn.execute(_DELETE_REMINDERS, *zip(*deletes))
            if events:  # last: the lock is held from here to the commit
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _EVENTS_LOCK)
                try:
                    await conn.execute(_INSERT_EVENTS, *zip(*(event[:9] for event in events)))
                except asyncpg.UniqueViolationError as exc:
                    raise JournalConflict(
                        f"the outbox already holds an event of this batch ({exc.detail or exc})"
                    ) from exc

    async def read_journal(
        self, kind: str, entity_id: str, after_seq: int = 0, up_to_seq: int | None = None
    ) -> list[JournalEntry]:
        async with self._connection("read the journal") as conn:
            if up_to_seq is None:
                rows = await conn.fetch(_SELECT_SEGMENTS, kind, entity_id, after_seq)
            else:
                rows = await conn.fetch(_SELECT_SEGMENTS_UP_TO, kind, entity_id, after_seq, up_to_seq)
        return unpack_segments(kind, entity_id, after_seq, rows, up_to_seq)

    async def save_snapshots(self, snapshots: Sequence[Snapshot]) -> None:
        if not snapshots:
            return
        # executemany runs one statement per snapshot, so two of one entity in a batch
        # are compared like any other pair instead of failing one multi-row upsert.
        async with self._connection("save snapshots") as conn, conn.transaction():
            await conn.executemany(_UPSERT_SNAPSHOT, map(_SNAPSHOT_ROW, snapshots))

    async def load(self, kind: str, entity_ids: Sequence[str]) -> dict[str, tuple[Snapshot | None, list[JournalEntry]]]:
        ids = list(dict.fromkeys(entity_ids))
        loaded: dict[str, tuple[Snapshot | None, list[JournalEntry]]] = {}
        async with self._connection("load entities") as conn:
            for start in range(0, len(ids), LOAD_CHUNK):
                chunk = ids[start : start + LOAD_CHUNK]
                snapshots = {row[1]: Snapshot(*row) for row in await conn.fetch(_LOAD_SNAPSHOTS, kind, chunk)}
                segments: dict[str, list[tuple[int, bytes]]] = {}
                for entity_id, first_seq, packed in await conn.fetch(_LOAD_SEGMENTS, kind, chunk):
                    segments.setdefault(entity_id, []).append((first_seq, packed))
                loaded.update(loaded_entities(kind, chunk, snapshots, segments))
        return loaded

    async def load_snapshot(self, kind: str, entity_id: str) -> Snapshot | None:
        async with self._connection("load a snapshot") as conn:
            row = await conn.fetchrow(_SELECT_SNAPSHOT, kind, entity_id)
        return None if row is None else Snapshot(*row)

    async def compact(self, kind: str, entity_id: str, up_to_seq: int) -> int:
        async with self._connection("compact the journal") as conn:
            return await conn.fetchval(_DELETE_SEGMENTS, kind, entity_id, up_to_seq)

    async def reminders(self) -> list[Reminder]:
        async with self._connection("list reminders") as conn:
            rows = await conn.fetch("SELECT kind, entity_id, due FROM reminders ORDER BY due, kind, entity_id")
        return [Reminder(*row) for row in rows]

    async def delete_entity(self, kind: str, entity_id: str) -> None:
        async with self._connection("delete an entity") as conn, conn.transaction():
            for table in ("journal", "snapshots", "reminders"):
                await conn.execute(f"DELETE FROM {table} WHERE kind = $1 AND entity_id = $2", kind, entity_id)

    async def entity_ids(self, kind: str) -> list[str]:
        async with self._connection("list entity ids") as conn:
            rows = await conn.fetch(_ENTITY_IDS, kind)
        return [entity_id for (entity_id,) in rows]

    async def read_events(self, after: int, limit: int, types: Sequence[str] | None = None) -> list[EventRecord]:
        async with self._connection("read events") as conn:
            if types is None:
                rows = await conn.fetch(_SELECT_EVENTS, after, limit)
            else:
                rows = await conn.fetch(_SELECT_EVENTS_OF, after, limit, list(types))
        return [EventRecord(*row) for row in rows]

    async def last_event_position(self) -> int:
        async with self._connection("read the last event position") as conn:
            return await conn.fetchval("SELECT coalesce(max(position), 0) FROM events")

    async def cursors(self) -> dict[str, int]:
        async with self._connection("read cursors") as conn:
            return dict(await conn.fetch("SELECT name, position FROM event_cursors"))

    async def save_cursor(self, name: str, position: int) -> None:
        async with self._connection("save a cursor") as conn:
            await conn.execute(_UPSERT_CURSOR, name, position)

    async def add_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        async with self._connection("add dead letters") as conn:
            await conn.executemany(
                _INSERT_DEAD_LETTER,
                [
                    (d.subscription, d.target, d.event.position, pack(list(d.event)), d.error, d.attempts, d.failed_at)
                    for d in letters
                ],
            )

    async def dead_letters(self, subscription: str | None = None, limit: int = 100) -> list[DeadLetter]:
        query = "SELECT id, subscription, target, event, error, attempts, failed_at FROM dead_letters"
        async with self._connection("read dead letters") as conn:
            if subscription is None:
                rows = await conn.fetch(query + " ORDER BY id LIMIT $1", limit)
            else:
                rows = await conn.fetch(query + " WHERE subscription = $2 ORDER BY id LIMIT $1", limit, subscription)
        return [
            DeadLetter(subscription, target, EventRecord(*unpack(event)), error, attempts, failed_at, id)
            for id, subscription, target, event, error, attempts, failed_at in rows
        ]

    async def remove_dead_letters(self, ids: Sequence[int]) -> int:
        async with self._connection("remove dead letters") as conn:
            return await conn.fetchval(
                "WITH gone AS (DELETE FROM dead_letters WHERE id = ANY($1::bigint[]) RETURNING 1) SELECT count(*) FROM gone",
                list(ids),
            )

    async def prune_events(self, up_to: int) -> int:
        async with self._connection("prune events") as conn:
            return await conn.fetchval(
                "WITH gone AS (DELETE FROM events WHERE position <= $1 RETURNING 1) SELECT count(*) FROM gone", up_to
            )

    async def mentions(self, needle: str) -> list[Mention]:
        found: list[Mention] = []
        async with self._connection("find mentions") as conn:
            for place, query in _MENTIONS:
                rows = await conn.fetch(query, needle, needle.encode())
                found.extend(Mention(place, kind, str(key)) for kind, key in rows)
        return found

    async def erase_events(self, user_id: str, stand_in: str, keep: Sequence[str] = ()) -> int:
        needle = user_id.encode()
        async with self._connection("erase events") as conn, conn.transaction():
            changed = await conn.fetchval(
                "WITH gone AS (DELETE FROM events WHERE user_id = $1 AND NOT (type = ANY($2::text[])) RETURNING 1)"
                " SELECT count(*) FROM gone",
                user_id,
                list(keep),
            )
            rows = await conn.fetch(
                "SELECT position, source_id, user_id, body FROM events"
                " WHERE strpos(source_id, $1) > 0 OR position($2::bytea IN body) > 0",
                user_id,
                needle,
            )
            for position, source_id, about, body in rows:
                if about == user_id:
                    continue  # a kept notice: it names the person on purpose
                await conn.execute(
                    "UPDATE events SET source_id = $1, body = $2 WHERE position = $3",
                    source_id.replace(user_id, stand_in),
                    pack(replace_all(unpack(body), user_id, stand_in)),
                    position,
                )
                changed += 1
            changed += await conn.fetchval(
                "WITH gone AS (DELETE FROM dead_letters WHERE strpos(target, $1) > 0 OR position($2::bytea IN event) > 0"
                " RETURNING 1) SELECT count(*) FROM gone",
                user_id,
                needle,
            )
        return changed

    async def health(self) -> dict:
        report: dict[str, Any] = {"store": self.name, "dsn": self._where}
        try:
            async with asyncio.timeout(_HEALTH_TIMEOUT_S), self._connection("check health") as conn:
                version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
        except Exception as exc:
            return {**report, "ok": False, "error": str(exc) or type(exc).__name__}
        return {**report, "ok": True, "schema_version": version}

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise StoreError(f"could not {what}: the PostgreSQL store at {self._where} is not open")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _DRIVER_ERRORS as exc:
            raise StoreError(f"could not {what} in PostgreSQL at {self._where}: {exc}") from exc


async def _write_segments(conn: asyncpg.Connection, segments: list[Segment], count: int) -> None:
    kinds, entity_ids, first_seqs, last_seqs, _ = zip(*segments)
    await conn.execute(_LOCK_ENTITIES, kinds, entity_ids)
    overlap = await conn.fetchrow(_FIRST_OVERLAP, kinds, entity_ids, first_seqs, last_seqs)
    if overlap is not None:
        kind, entity_id, first_seq, last_seq = overlap
        raise JournalConflict(
            f"the journal already holds a seq from {first_seq} to {last_seq} of {kind} {entity_id!r},"
            f" in this batch of {count} entries; nothing was written"
        )
    try:
        await conn.copy_records_to_table("journal", records=segments, columns=_SEGMENT_COLUMNS)
    except asyncpg.UniqueViolationError as exc:
        # Another host wrote a segment ending at the same seq since the probe.
        raise JournalConflict(
            f"the journal already holds a seq of an entity in this batch of {count} entries;"
            f" nothing was written ({exc.detail or exc})"
        ) from exc


async def _migrate(conn: asyncpg.Connection) -> None:
    # A session lock, not a transaction one: it must outlast each migration's own transaction
    # so that two hosts starting at once apply them one after the other.
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(SCHEMA_MIGRATIONS_DDL["postgresql"])
        applied = [row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")]
        for migration in pending("postgresql", applied):
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", migration.version, migration.name
                )
            _log.info(
                "applied migration",
                extra={"store": "postgresql", "version": migration.version, "migration": migration.name},
            )
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


def _without_password(dsn: str) -> str:
    """The DSN as it may appear in logs and health reports."""
    try:
        password = urlsplit(dsn).password
    except ValueError:
        return "the configured DSN"
    return dsn.replace(f":{password}@", ":***@", 1) if password else dsn
