"""The contract every store keeps, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import random
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import asyncpg
import msgpack
import pytest

from engine.store import JournalConflict, JournalEntry, Reminder, Snapshot, Store, StoreError
from persistence import PostgresStore, SQLiteStore, open_store
from persistence.migrations import migrations, pending

HOSTILE_IDS = [
    "it's",
    'say "hi"',
    "'; DROP TABLE journal; --",
    '"; DROP TABLE snapshots; --',
    "back\\slash",
    "%s %(x)s ? ?1 $1 :name",
    "e\u0301",  # combining accent: must not be normalised into "é"
    "é",
    "\u202etxt.exe",  # right-to-left override
    "👩\u200d👩\u200d👧 \U0010fffd",
    "   ",
    "",
    "x" * 2000,
]


@dataclass(frozen=True)
class Backend:
    make: Callable[[], Store]  # a new, unopened store on this test's database
    ledger: Callable[[], Awaitable[list[tuple[int, str]]]]  # schema_migrations rows


def _sqlite_backend(path: Path, commit_log: str = "auto") -> Backend:
    async def ledger() -> list[tuple[int, str]]:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()

    return Backend(lambda: SQLiteStore(path, commit_log=commit_log), ledger)


def _postgres_backend(url: str) -> Backend:
    async def ledger() -> list[tuple[int, str]]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
            return [tuple(row) for row in rows]
        finally:
            await conn.close()

    return Backend(lambda: PostgresStore(url, max_size=4), ledger)


@pytest.fixture(params=["sqlite", "sqlite-log", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """SQLite as configured by default, SQLite logging every wide batch (its commit log: by default a
    store logs only once its batches' entities are seen to repeat), and PostgreSQL."""
    if request.param.startswith("sqlite"):
        commit_log = "on" if request.param == "sqlite-log" else "auto"
        return _sqlite_backend(tmp_path / "not-yet-created" / "arena.db", commit_log)
    # Resolved here, outside the event loop: the fixture creates the database with asyncio.run.
    return _postgres_backend(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = backend.make()
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
def kind() -> str:
    # Tests share one PostgreSQL database; a kind of their own keeps them apart.
    return f"k{uuid4().hex}"


def entry(
    kind: str, entity_id: str, seq: int, body: bytes = b"\x80", message_type: str = "Moved", at: float = 1.5, **fields
) -> JournalEntry:
    return JournalEntry(kind, entity_id, seq, message_type, body, at, **fields)


def snapshot(kind: str, entity_id: str, seq: int, state: bytes = b"\x90") -> Snapshot:
    return Snapshot(kind, entity_id, seq, state, taken_at=100.0 + seq)


async def test_store_satisfies_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)


async def test_append_then_read_journal_returns_entries_in_seq_order_with_every_field(store: Store, kind: str) -> None:
    entity_id = "joueur-é-中文-🏁"
    written = [
        entry(kind, entity_id, 3, msgpack.packb({"lap": 3, "t": 61.25}), "LapCompleted", at=1712345678.123456789),
        entry(kind, entity_id, 1, b"", message_type="Joined", at=0.1),
        entry(kind, entity_id, 2, b"\xff\xfe\x00\xc3\x28", message_type="Étape ✓", at=-1e-300, schema_version=7),
    ]
    await store.append(written)

    read = await store.read_journal(kind, entity_id)

    assert read == sorted(written, key=lambda e: e.seq)
    assert all(type(e.body) is bytes and type(e.at) is float for e in read)
    assert msgpack.unpackb(read[2].body) == {"lap": 3, "t": 61.25}


async def test_read_journal_after_seq_returns_only_later_entries(store: Store, kind: str) -> None:
    await store.append([entry(kind, "a", seq) for seq in range(1, 6)])

    assert [e.seq for e in await store.read_journal(kind, "a", after_seq=3)] == [4, 5]
    assert await store.read_journal(kind, "a", after_seq=5) == []
    assert await store.read_journal(kind, "unknown") == []


async def test_read_journal_up_to_seq_reads_a_long_journal_a_part_at_a_time(store: Store, kind: str) -> None:
    await store.append([entry(kind, "a", seq) for seq in range(1, 6)])  # one segment
    await store.append([entry(kind, "a", seq) for seq in range(6, 9)])  # another

    assert [e.seq for e in await store.read_journal(kind, "a", after_seq=0, up_to_seq=2)] == [1, 2]
    assert [e.seq for e in await store.read_journal(kind, "a", after_seq=2, up_to_seq=6)] == [3, 4, 5, 6]
    assert [e.seq for e in await store.read_journal(kind, "a", after_seq=6, up_to_seq=100)] == [7, 8]
    assert await store.read_journal(kind, "a", after_seq=3, up_to_seq=3) == []
    parts = [await store.read_journal(kind, "a", after, after + 3) for after in range(0, 9, 3)]
    assert [e for part in parts for e in part] == await store.read_journal(kind, "a")


async def test_duplicate_seq_within_one_batch_raises_conflict_and_writes_nothing(store: Store, kind: str) -> None:
    batch = [entry(kind, "a", 1), entry(kind, "b", 1), entry(kind, "a", 1, b"other")]

    with pytest.raises(JournalConflict):
        await store.append(batch, [Reminder(kind, "a", 10.0)])

    assert await store.read_journal(kind, "a") == []
    assert await store.read_journal(kind, "b") == []
    assert await store.entity_ids(kind) == []
    assert [r for r in await store.reminders() if r.kind == kind] == []


async def test_seq_already_journaled_raises_conflict_and_writes_nothing(store: Store, kind: str) -> None:
    first = entry(kind, "a", 1, b"first")
    await store.append([first], [Reminder(kind, "a", 10.0)])

    with pytest.raises(JournalConflict):
        await store.append(
            [entry(kind, "b", 1), entry(kind, "a", 2), entry(kind, "a", 1, b"second")],
            [Reminder(kind, "a", 99.0), Reminder(kind, "b", 5.0)],
        )

    assert await store.read_journal(kind, "a") == [first]
    assert await store.read_journal(kind, "b") == []
    assert [r for r in await store.reminders() if r.kind == kind] == [Reminder(kind, "a", 10.0)]


async def test_conflict_between_two_stores_on_one_database(backend: Backend, store: Store, kind: str) -> None:
    other = backend.make()
    await other.open()
    try:
        await store.append([entry(kind, "a", 1)])
        with pytest.raises(JournalConflict):
            await other.append([entry(kind, "a", 1, b"from the other host")])
        assert await other.read_journal(kind, "a") == [entry(kind, "a", 1)]
    finally:
        await other.close()


async def test_two_stores_racing_overlapping_batches_never_journal_a_seq_twice(
    backend: Backend, store: Store, kind: str
) -> None:
    other = backend.make()
    await other.open()
    try:
        for round_ in range(20):
            entity = f"raced-{round_}"
            outcomes = await asyncio.gather(
                store.append([entry(kind, entity, 1), entry(kind, entity, 2), entry(kind, entity, 3)]),
                other.append([entry(kind, entity, 2, b"late")]),
                return_exceptions=True,
            )
            assert all(o is None or isinstance(o, JournalConflict) for o in outcomes), outcomes
            seqs = [e.seq for e in await store.read_journal(kind, entity)]
            assert len(seqs) == len(set(seqs)), f"seq journaled twice: {seqs}"
    finally:
        await other.close()


async def test_store_usable_after_a_conflict(store: Store, kind: str) -> None:
    await store.append([entry(kind, "a", 1)])
    with pytest.raises(JournalConflict):
        await store.append([entry(kind, "a", 1)])

    await store.append([entry(kind, "a", 2)])

    assert [e.seq for e in await store.read_journal(kind, "a")] == [1, 2]


async def test_many_entries_of_one_entity_in_one_batch_round_trip_with_every_field(store: Store, kind: str) -> None:
    written = [
        entry(kind, "a", seq, seq.to_bytes(2, "big") * seq, f"Type{seq}", at=1712345678.0 + seq / 7, schema_version=seq)
        for seq in range(1, 41)
    ]
    await store.append(written)

    assert await store.read_journal(kind, "a") == written
    assert await store.read_journal(kind, "a", after_seq=17) == written[17:]


async def test_schema_version_and_at_of_each_entry_survive_a_read_from_inside_the_batch(
    store: Store, kind: str
) -> None:
    written = [
        entry(kind, "a", 1, at=0.1, schema_version=1),
        entry(kind, "a", 2, b"", at=-1e-300, schema_version=2**31 - 1),
        entry(kind, "a", 3, at=1712345678.123456789, schema_version=3),
        entry(kind, "a", 4, at=1.5, schema_version=1),
    ]
    await store.append(written)

    read = await store.read_journal(kind, "a", after_seq=1)

    assert read == written[1:]
    assert [(e.at, e.schema_version) for e in read] == [(-1e-300, 2**31 - 1), (1712345678.123456789, 3), (1.5, 1)]
    assert all(type(e.body) is bytes and type(e.at) is float for e in read)


async def test_a_batch_interleaving_two_entities_reads_back_in_seq_order_per_entity(store: Store, kind: str) -> None:
    a1, b1, a2, b2 = (entry(kind, entity_id, seq, f"{entity_id}{seq}".encode()) for seq in (1, 2) for entity_id in "ab")
    await store.append([a1, b1, a2, b2])

    assert await store.read_journal(kind, "a") == [a1, a2]
    assert await store.read_journal(kind, "b") == [b1, b2]


async def test_a_gap_in_one_batch_is_accepted_and_read_back(store: Store, kind: str) -> None:
    written = [entry(kind, "a", seq, bytes([seq])) for seq in (1, 2, 5, 6, 9)]
    await store.append(written)

    assert await store.read_journal(kind, "a") == written
    assert [e.seq for e in await store.read_journal(kind, "a", after_seq=2)] == [5, 6, 9]
    assert [e.seq for e in await store.read_journal(kind, "a", after_seq=5)] == [6, 9]
    assert [e.seq for e in await store.read_journal(kind, "a", after_seq=7)] == [9]


async def test_a_seq_inside_an_earlier_batch_raises_conflict_and_writes_nothing(store: Store, kind: str) -> None:
    earlier = [entry(kind, "a", seq) for seq in range(1, 6)]
    await store.append(earlier, [Reminder(kind, "a", 10.0)])

    with pytest.raises(JournalConflict):
        await store.append([entry(kind, "b", 1), entry(kind, "a", 3, b"again")], [Reminder(kind, "b", 5.0)])

    assert await store.read_journal(kind, "a") == earlier
    assert await store.read_journal(kind, "b") == []
    assert [r for r in await store.reminders() if r.kind == kind] == [Reminder(kind, "a", 10.0)]


async def test_the_next_seq_after_an_earlier_batch_is_appended(store: Store, kind: str) -> None:
    await store.append([entry(kind, "a", seq) for seq in range(1, 6)])

    await store.append([entry(kind, "a", 6, b"six")])

    assert [e.seq for e in await store.read_journal(kind, "a")] == [1, 2, 3, 4, 5, 6]
    assert (await store.read_journal(kind, "a", after_seq=5)) == [entry(kind, "a", 6, b"six")]


async def test_a_batch_may_fill_a_gap_but_not_run_over_the_entries_after_it(store: Store, kind: str) -> None:
    await store.append([entry(kind, "a", seq) for seq in (1, 2, 6, 7)])

    for overlapping in ([5, 6], [6], [7, 8], [3, 4, 5, 6, 7, 8], [0, 1]):
        with pytest.raises(JournalConflict):
            await store.append([entry(kind, "a", seq, b"late") for seq in overlapping])
    await store.append([entry(kind, "a", seq) for seq in (3, 4, 5)])

    assert [e.seq for e in await store.read_journal(kind, "a")] == [1, 2, 3, 4, 5, 6, 7]
    assert b"late" not in {e.body for e in await store.read_journal(kind, "a")}


async def test_a_batch_bigger_than_one_message_of_one_entity_round_trips(store: Store, kind: str) -> None:
    # 80 MiB in all, more than engine.codec will unpack at once.
    written = [entry(kind, "a", seq, bytes([seq]) * (16 * 1024 * 1024)) for seq in range(1, 6)]
    await store.append(written)

    assert await store.read_journal(kind, "a") == written


async def test_save_snapshots_upserts_the_latest(store: Store, kind: str) -> None:
    await store.save_snapshots([snapshot(kind, "a", 3, b"three"), snapshot(kind, "b", 1)])
    await store.save_snapshots([snapshot(kind, "a", 5, b"five")])

    assert await store.load_snapshot(kind, "a") == snapshot(kind, "a", 5, b"five")
    assert await store.load_snapshot(kind, "b") == snapshot(kind, "b", 1)


async def test_older_snapshot_does_not_replace_newer(store: Store, kind: str) -> None:
    await store.save_snapshots([snapshot(kind, "a", 5, b"five")])
    await store.save_snapshots([snapshot(kind, "a", 4, b"four"), snapshot(kind, "a", 5, b"five again")])
    await store.save_snapshots([snapshot(kind, "b", 9, b"nine"), snapshot(kind, "b", 2, b"two")])

    assert await store.load_snapshot(kind, "a") == snapshot(kind, "a", 5, b"five")
    assert await store.load_snapshot(kind, "b") == snapshot(kind, "b", 9, b"nine")


async def test_snapshot_round_trips_every_field(store: Store, kind: str) -> None:
    saved = Snapshot(kind, "ü", 12, b"", taken_at=1712345678.987654321, schema_version=3)
    await store.save_snapshots([saved])

    assert await store.load_snapshot(kind, "ü") == saved


async def test_load_snapshot_of_unknown_entity_is_none(store: Store, kind: str) -> None:
    assert await store.load_snapshot(kind, "nobody") is None


async def test_compact_keeps_every_entry_above_up_to_seq_and_counts_what_it_deleted(store: Store, kind: str) -> None:
    await store.append([entry(kind, "a", seq) for seq in range(1, 4)] + [entry(kind, "b", 1)])
    await store.append([entry(kind, "a", seq) for seq in range(4, 7)])

    deleted = await store.compact(kind, "a", 4)

    kept = [e.seq for e in await store.read_journal(kind, "a")]
    assert kept[-2:] == [5, 6]  # 4 may stay, written with entries above 4
    assert not {1, 2, 3} & set(kept)  # written apart from anything above 4
    assert deleted == 6 - len(kept)
    assert [e.seq for e in await store.read_journal(kind, "b")] == [1]
    assert await store.compact(kind, "a", 4) == 0
    assert await store.compact(kind, "a", 6) == len(kept)
    assert await store.read_journal(kind, "a") == []


async def test_append_after_compacting_everything_continues_the_journal(store: Store, kind: str) -> None:
    await store.append([entry(kind, "a", 1), entry(kind, "a", 2)])
    assert await store.compact(kind, "a", 2) == 2

    await store.append([entry(kind, "a", 3)])

    assert await store.read_journal(kind, "a") == [entry(kind, "a", 3)]


async def test_reminders_are_upserted_and_deleted_through_append(store: Store, kind: str) -> None:
    async def mine() -> list[Reminder]:
        return sorted((r for r in await store.reminders() if r.kind == kind), key=lambda r: r.entity_id)

    await store.append([entry(kind, "a", 1)], [Reminder(kind, "a", 10.0), Reminder(kind, "b", 20.0)])
    assert await mine() == [Reminder(kind, "a", 10.0), Reminder(kind, "b", 20.0)]

    await store.append([], [Reminder(kind, "a", 15.5), Reminder(kind, "b", None), Reminder(kind, "c", None)])
    assert await mine() == [Reminder(kind, "a", 15.5)]

    # Within one batch the last reminder of an entity wins.
    await store.append(
        [], [Reminder(kind, "a", 1.0), Reminder(kind, "a", None), Reminder(kind, "d", None), Reminder(kind, "d", 4.0)]
    )
    assert await mine() == [Reminder(kind, "d", 4.0)]


async def test_delete_entity_erases_journal_snapshot_and_reminder_of_that_entity_only(store: Store, kind: str) -> None:
    for entity_id in ("gone", "kept"):
        await store.append([entry(kind, entity_id, 1), entry(kind, entity_id, 2)], [Reminder(kind, entity_id, 7.0)])
        await store.save_snapshots([snapshot(kind, entity_id, 1)])

    await store.delete_entity(kind, "gone")

    assert await store.read_journal(kind, "gone") == []
    assert await store.load_snapshot(kind, "gone") is None
    assert [e.seq for e in await store.read_journal(kind, "kept")] == [1, 2]
    assert await store.load_snapshot(kind, "kept") == snapshot(kind, "kept", 1)
    assert [r for r in await store.reminders() if r.kind == kind] == [Reminder(kind, "kept", 7.0)]
    assert await store.entity_ids(kind) == ["kept"]


async def test_entity_ids_lists_entities_with_a_journal_entry_or_a_snapshot(store: Store, kind: str) -> None:
    await store.append([entry(kind, "journal-only", 1), entry(kind, "both", 1), entry(kind, "both", 2)])
    await store.save_snapshots([snapshot(kind, "snapshot-only", 4), snapshot(kind, "both", 1)])
    await store.append([entry(f"{kind}-other", "elsewhere", 1)])

    assert sorted(await store.entity_ids(kind)) == ["both", "journal-only", "snapshot-only"]
    assert await store.entity_ids(f"{kind}-unknown") == []


async def test_migrations_are_idempotent(backend: Backend, store: Store, kind: str) -> None:
    await store.append([entry(kind, "a", 1)])
    again = backend.make()
    await again.open()
    try:
        assert await again.read_journal(kind, "a") == [entry(kind, "a", 1)]
    finally:
        await again.close()
    await store.close()
    await store.open()

    assert await backend.ledger() == [(m.version, m.name) for m in migrations(store.name)]
    assert (await store.health())["schema_version"] == migrations(store.name)[-1].version


async def test_stores_opening_at_once_apply_each_migration_once(backend: Backend) -> None:
    hosts = [backend.make() for _ in range(4)]
    await asyncio.gather(*(host.open() for host in hosts))
    try:
        assert await backend.ledger() == [(m.version, m.name) for m in migrations(hosts[0].name)]
    finally:
        await asyncio.gather(*(host.close() for host in hosts))


def test_pending_lists_the_migrations_not_yet_applied() -> None:
    for dialect in ("sqlite", "postgresql"):
        shipped = migrations(dialect)
        assert [m.version for m in shipped] == list(range(1, len(shipped) + 1))
        assert pending(dialect, []) == list(shipped)
        assert pending(dialect, [m.version for m in shipped]) == []
    names = {dialect: [(m.version, m.name) for m in migrations(dialect)] for dialect in ("sqlite", "postgresql")}
    assert names["sqlite"] == names["postgresql"]


def test_migrations_reject_an_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="dialect"):
        migrations("mysql")  # type: ignore[arg-type]


async def test_large_batch_round_trips(store: Store, kind: str) -> None:
    written = [entry(kind, f"e{i % 7}", i // 7 + 1, i.to_bytes(4, "big"), at=i / 3) for i in range(20_000)]
    await store.append(written)

    read = [e for entity_id in sorted(await store.entity_ids(kind)) for e in await store.read_journal(kind, entity_id)]

    assert sorted(read, key=lambda e: e.body) == sorted(written, key=lambda e: e.body)


async def test_hostile_ids_are_stored_verbatim(store: Store, kind: str) -> None:
    hostile_kind = f"{kind}'; DROP TABLE journal; --"
    await store.append(
        [entry(hostile_kind, entity_id, 1, entity_id.encode(), message_type=entity_id) for entity_id in HOSTILE_IDS],
        [Reminder(hostile_kind, entity_id, 1.0) for entity_id in HOSTILE_IDS],
    )
    await store.save_snapshots([snapshot(hostile_kind, entity_id, 1, entity_id.encode()) for entity_id in HOSTILE_IDS])

    assert sorted(await store.entity_ids(hostile_kind)) == sorted(HOSTILE_IDS)
    for entity_id in HOSTILE_IDS:
        assert await store.read_journal(hostile_kind, entity_id) == [
            entry(hostile_kind, entity_id, 1, entity_id.encode(), message_type=entity_id)
        ]
        saved = snapshot(hostile_kind, entity_id, 1, entity_id.encode())
        assert await store.load_snapshot(hostile_kind, entity_id) == saved
    assert sorted(r.entity_id for r in await store.reminders() if r.kind == hostile_kind) == sorted(HOSTILE_IDS)
    assert (await store.health())["ok"]


async def test_health_reports_ok_and_the_store_name(store: Store) -> None:
    report = await store.health()

    assert report["ok"] is True
    assert report["store"] == store.name
    assert report["schema_version"] == migrations(store.name)[-1].version


async def test_store_not_open_reports_unhealthy_and_refuses_work(backend: Backend, kind: str) -> None:
    unopened = backend.make()

    report = await unopened.health()
    assert report["store"] == unopened.name
    assert report["ok"] is False and "not open" in report["error"]
    with pytest.raises(StoreError, match="not open"):
        await unopened.append([entry(kind, "a", 1)])


async def test_closed_store_reports_unhealthy(store: Store) -> None:
    await store.close()

    assert (await store.health())["ok"] is False


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_postgres_store_on_a_closed_port_fails_to_open_and_reports_unhealthy() -> None:
    unreachable = PostgresStore(f"postgresql://arena:s3cret@127.0.0.1:{_closed_port()}/arena")

    with pytest.raises(StoreError, match="could not connect") as raised:
        await unreachable.open()
    report = await unreachable.health()

    assert report["ok"] is False and report["store"] == "postgresql"
    assert "s3cret" not in str(raised.value) + repr(report)


async def test_sqlite_store_on_an_unwritable_path_fails_to_open(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")

    with pytest.raises(StoreError, match="could not open"):
        await SQLiteStore(tmp_path / "file" / "arena.db").open()


def test_sqlite_store_rejects_an_unknown_synchronous_level(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(tmp_path / "arena.db", synchronous="sometimes")


def test_open_store_picks_the_store_by_scheme() -> None:
    relative = open_store("sqlite:///data/arena.db")
    absolute = open_store("sqlite:////var/lib/arena/arena.db")

    assert isinstance(relative, SQLiteStore) and relative.path == Path("data/arena.db")
    assert isinstance(absolute, SQLiteStore) and absolute.path == Path("/var/lib/arena/arena.db")
    assert isinstance(open_store("postgresql://postgres@127.0.0.1/arena"), PostgresStore)
    assert isinstance(open_store("postgres://postgres@127.0.0.1/arena"), PostgresStore)


def test_a_sqlite_url_may_set_the_commit_log_and_names_no_other_option() -> None:
    claims = {
        mode: open_store(f"sqlite:///data/arena.db?commit_log={mode}")._claims  # type: ignore[attr-defined]
        for mode in ("auto", "on", "off")
    }
    assert claims["off"].log_segments is None and not claims["off"].logging
    assert claims["on"].log_segments == 32 and claims["on"].logging and claims["on"].always
    assert claims["auto"].log_segments == 32 and not claims["auto"].logging and not claims["auto"].always
    assert open_store("sqlite:///data/arena.db")._claims.always is False  # type: ignore[attr-defined]
    for url in ("sqlite:///a.db?commit_log=maybe", "sqlite:///a.db?journal=off", "sqlite:///?commit_log=off"):
        with pytest.raises(ValueError, match="commit_log|three slashes"):
            open_store(url)


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://", "sqlite:///", "arena.db", ""])
def test_open_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        open_store(url)


async def test_load_returns_each_entitys_snapshot_and_the_journal_after_it(store: Store, kind: str) -> None:
    await store.append([entry(kind, "a", s) for s in (1, 2, 3)] + [entry(kind, "b", 1)] + [entry(kind, "it's", 1)])
    await store.save_snapshots([snapshot(kind, "a", 2)])
    loaded = await store.load(kind, ["a", "b", "nobody", "a", "it's"])
    assert set(loaded) == {"a", "b", "nobody", "it's"}
    assert loaded["a"] == (snapshot(kind, "a", 2), [entry(kind, "a", 3)])
    assert loaded["b"] == (None, [entry(kind, "b", 1)])
    assert loaded["nobody"] == (None, [])
    assert loaded["it's"] == (None, [entry(kind, "it's", 1)])
    assert await store.load(kind, []) == {}


async def test_load_of_more_ids_than_one_query_takes_finds_them_all(store: Store, kind: str) -> None:
    ids = [f"e{i}" for i in range(1_234)]
    await store.append([entry(kind, entity_id, 1) for entity_id in ids])
    loaded = await store.load(kind, ids)
    assert all(loaded[entity_id] == (None, [entry(kind, entity_id, 1)]) for entity_id in ids)


async def test_load_reads_the_journal_after_each_snapshot_across_many_segments_in_seq_order(
    store: Store, kind: str
) -> None:
    for first in range(1, 13, 3):  # four segments each, written interleaved
        await store.append([entry(kind, entity_id, s) for entity_id in ("b", "a") for s in range(first, first + 3)])
    await store.save_snapshots([snapshot(kind, "a", 5), snapshot(kind, "c", 2)])
    loaded = await store.load(kind, ["c", "b", "a"])
    assert loaded["a"] == (snapshot(kind, "a", 5), [entry(kind, "a", s) for s in range(6, 13)])
    assert loaded["b"] == (None, [entry(kind, "b", s) for s in range(1, 13)])
    assert loaded["c"] == (snapshot(kind, "c", 2), [])


async def test_mentions_find_every_row_that_names_a_person_and_erase_events_leaves_none(store):
    from engine.events import EventRecord
    from engine.store import DeadLetter

    person, other, stand_in = f"u-{uuid4().hex}", f"u-{uuid4().hex}", f"gone-{uuid4().hex}"
    body = msgpack.packb

    def event(source: str, seq: int, type_: str, user: str | None, fields: dict) -> EventRecord:
        return EventRecord("account", source, seq, 0, type_, 1, 1.0, user, body(fields))

    await store.append(
        [
            JournalEntry("feed", person, 1, "add", body({"x": 1}), 1.0),  # by id
            JournalEntry("group", "g1", 1, "join", body({"user_id": person}), 1.0),  # by bytes
            JournalEntry("group", "g2", 1, "join", body({"user_id": other}), 1.0),  # not them
        ],
        [Reminder("inbox", person, 5.0)],
        [
            event(person, 1, "workout.recorded", person, {"owner": person}),  # about them: deleted
            event(person, 2, "account.erased", person, {"user_id": person}),  # kept: the notice
            event(other, 1, "group.joined", other, {"user_id": other, "by": person}),  # names them: rewritten
            event(other, 2, "group.joined", other, {"user_id": other, "by": other}),  # untouched
        ],
    )
    await store.save_snapshots([Snapshot("group", "g1", 1, body({"members": [person, other]}), 1.0)])
    ours = {person, other}  # PostgreSQL's database is shared by the session's tests: only this test's events
    recorded = [r for r in await store.read_events(0, 1_000_000) if r.source_id in ours]
    await store.add_dead_letters([DeadLetter("feed.on_workout", person, recorded[0], "boom", 3, 1.0)])
    await store.save_cursor(f"export-{person}", 1)

    found = {(m.place, m.kind, m.key) for m in await store.mentions(person)}
    positions = [str(r.position) for r in recorded]
    (letter,) = [d for d in await store.dead_letters(limit=100_000) if d.target == person]
    assert found == {
        ("journal", "feed", person), ("journal", "group", "g1"), ("snapshot", "group", "g1"),
        ("reminder", "inbox", person), ("event", "workout.recorded", positions[0]),
        ("event", "account.erased", positions[1]), ("event", "group.joined", positions[2]),
        ("dead_letter", "feed.on_workout", str(letter.id)), ("cursor", f"export-{person}", ""),
    }  # fmt: skip

    changed = await store.erase_events(person, stand_in, keep=["account.erased"])
    assert changed == 3  # one deleted, one rewritten, one dead letter
    left = [r for r in await store.read_events(0, 1_000_000) if r.source_id in ours | {stand_in}]
    assert [(r.type, r.user_id) for r in left] == [
        ("account.erased", person), ("group.joined", other), ("group.joined", other),
    ]  # fmt: skip
    assert msgpack.unpackb(left[1].body) == {"user_id": other, "by": stand_in}
    assert msgpack.unpackb(left[2].body) == {"user_id": other, "by": other}
    assert [d for d in await store.dead_letters(limit=100_000) if d.target == person] == []
    assert {m.place for m in await store.mentions(person)} == {"journal", "snapshot", "reminder", "event", "cursor"}
    assert [m.kind for m in await store.mentions(person) if m.place == "event"] == ["account.erased"]


# A host's group commit that spans many entities (SQLite writes more than 32 segments as one row
# of its commit log and folds it into the journal later; every reader must see one journal).
WIDE = 100


def wide(kind: str, seq: int, body: bytes = b"\x80", count: int = WIDE) -> list[JournalEntry]:
    return [entry(kind, f"w{n}", seq, body) for n in range(count)]


async def test_wide_batches_read_back_whole_from_this_store_and_from_another(
    backend: Backend, store: Store, kind: str
) -> None:
    for seq in range(1, 6):
        await store.append(wide(kind, seq, bytes([seq])))
    other = backend.make()
    await other.open()
    try:
        for reader in (other, store):
            loaded = await reader.load(kind, [f"w{n}" for n in range(WIDE)])
            assert all(
                snap is None and journal == [entry(kind, entity_id, s, bytes([s])) for s in range(1, 6)]
                for entity_id, (snap, journal) in loaded.items()
            )
            assert await reader.read_journal(kind, "w7", after_seq=2, up_to_seq=4) == [
                entry(kind, "w7", s, bytes([s])) for s in (3, 4)
            ]
            assert await reader.entity_ids(kind) == sorted(f"w{n}" for n in range(WIDE))
        await store.append(wide(kind, 6, b"\x06"))  # logged again after the reads folded the rest
        await store.save_snapshots([snapshot(kind, "w3", 4)])
        assert (await other.load(kind, ["w3"]))["w3"][1] == [entry(kind, "w3", s, bytes([s])) for s in (5, 6)]
        await other.compact(kind, "w3", 4)
        assert [e.seq for e in await store.read_journal(kind, "w3") if e.seq > 4] == [5, 6]
        await other.delete_entity(kind, "w4")
        assert await store.read_journal(kind, "w4") == [] and "w4" not in await store.entity_ids(kind)
        await store.append([entry(kind, "w4", 1, b"again")])  # a deleted entity starts over
        assert await other.read_journal(kind, "w4") == [entry(kind, "w4", 1, b"again")]
    finally:
        await other.close()


async def test_a_wide_batch_conflicts_with_what_another_store_journaled_even_before_it_is_folded(
    backend: Backend, store: Store, kind: str
) -> None:
    other = backend.make()
    await other.open()
    try:
        await store.append(wide(kind, 1))
        with pytest.raises(JournalConflict):
            await other.append([entry(kind, "w5", 1, b"other")])
        with pytest.raises(JournalConflict):
            await other.append(wide(kind, 1, b"other"))
        await other.append([entry(kind, "w5", 2, b"other")])  # the other store takes w5 over
        with pytest.raises(JournalConflict):  # so this one may no longer vouch for w5 from memory
            await store.append(wide(kind, 2))
        assert [e.seq for e in await store.read_journal(kind, "w6")] == [1]  # the refused batch wrote nothing
        await store.append([e for e in wide(kind, 2) if e.entity_id != "w5"])
        for reader in (store, other):
            assert [(e.seq, e.body) for e in await reader.read_journal(kind, "w5")] == [(1, b"\x80"), (2, b"other")]
            assert [e.seq for e in await reader.read_journal(kind, "w6")] == [1, 2]
    finally:
        await other.close()


@pytest.mark.parametrize("seed", range(5))
async def test_two_stores_writing_wide_and_narrow_batches_agree_with_a_model_of_the_journal(
    backend: Backend, store: Store, kind: str, seed: int
) -> None:
    """Two stores (two hosts, or two activations of an entity) write batches of 1, 3 or 50 entities; one
    in ten entries repeats a seq already written (a stale activation): exactly those batches conflict,
    and every read from either store equals the model."""
    rng = random.Random(seed)
    other = backend.make()
    await other.open()
    stores = [store, other]
    model: dict[str, list[tuple[int, bytes]]] = {}
    ids = [f"e{n}" for n in range(60)]
    try:
        for step in range(100):
            batch, stale = [], False
            for entity_id in rng.sample(ids, rng.choice([1, 3, 50])):
                have = model.get(entity_id, [])
                seq = len(have) + 1
                if have and rng.random() < 0.1:  # mostly the newest seq: an activation one write behind
                    seq, stale = (len(have) if rng.random() < 0.7 else rng.randint(1, len(have))), True
                batch.append(entry(kind, entity_id, seq, f"{step}".encode()))
            writer = rng.choice(stores)
            if stale:
                with pytest.raises(JournalConflict):
                    await writer.append(batch)
            else:
                await writer.append(batch)
                for e in batch:
                    model.setdefault(e.entity_id, []).append((e.seq, e.body))
            if rng.random() < 0.25 or step == 99:
                loaded = await rng.choice(stores).load(kind, ids)
                read = {key: [(e.seq, e.body) for e in journal] for key, (_, journal) in loaded.items() if journal}
                assert read == model, f"step {step}"
    finally:
        await other.close()
