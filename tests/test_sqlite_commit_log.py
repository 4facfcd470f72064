"""SQLite's commit log (persistence/sqlite.py): a group commit across many entities is one log row,
folded into one journal row per entity for many commits, and nothing is lost when a host dies before
the fold. The store contract (tests/test_store_contract.py) checks what readers see; this checks the rows."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import persistence.sqlite
from engine.store import JournalEntry
from persistence import SQLiteStore


@pytest.fixture(autouse=True)
def no_fold_by_age(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folds here come from reads alone, however slow the machine."""
    monkeypatch.setattr(persistence.sqlite, "_FOLD_AGE_S", 3600.0)


def batch(seq: int, entities: int = 100, body: bytes = b"\x80") -> list[JournalEntry]:
    return [JournalEntry("tally", f"athlete-{n}", seq, "record", body, 1.0) for n in range(entities)]


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


async def test_many_commits_across_many_entities_fold_into_one_row_per_entity(tmp_path: Path) -> None:
    path = tmp_path / "arena.db"
    store = SQLiteStore(path, commit_log="on")
    await store.open()
    try:
        for seq in range(1, 21):
            await store.append(batch(seq))
        assert rows(path, "journal") == 0 and rows(path, "journal_log") == 20  # one row per commit
        journal = await store.read_journal("tally", "athlete-7")  # a read folds first
        assert [e.seq for e in journal] == list(range(1, 21))
        assert rows(path, "journal_log") == 0 and rows(path, "journal") == 100  # 2,000 entries, 100 rows
    finally:
        await store.close()


async def test_a_fold_keeps_each_row_under_the_segment_size(tmp_path: Path) -> None:
    path = tmp_path / "arena.db"
    store = SQLiteStore(path, commit_log="on")
    await store.open()
    try:
        for seq in range(1, 6):  # athlete-0 gets 300 kB a commit: five commits are 1.5 MB, two rows
            entries = batch(seq, entities=40)
            entries[0] = entries[0]._replace(body=bytes(300_000))
            await store.append(entries)
        assert [e.seq for e in await store.read_journal("tally", "athlete-0")] == [1, 2, 3, 4, 5]
        with sqlite3.connect(path) as conn:
            spans = conn.execute(
                "SELECT first_seq, last_seq, length(entries) FROM journal WHERE entity_id = 'athlete-0' ORDER BY 1"
            ).fetchall()
        assert [span[:2] for span in spans] == [(1, 3), (4, 5)] and all(span[2] <= 1 << 20 for span in spans)
    finally:
        await store.close()


def test_a_host_killed_before_its_fold_loses_nothing(tmp_path: Path) -> None:
    """The log row is the commit: a process that dies right after its appends, without closing its
    store, leaves them in the log, and the next reader folds them."""
    path = tmp_path / "arena.db"
    script = textwrap.dedent(
        f"""
        import asyncio, os
        import persistence.sqlite
        from engine.store import JournalEntry
        from persistence import SQLiteStore

        persistence.sqlite._FOLD_AGE_S = 3600.0

        async def main():
            store = SQLiteStore({str(path)!r}, commit_log="on")
            await store.open()
            for seq in (1, 2, 3):
                await store.append([JournalEntry("tally", f"athlete-{{n}}", seq, "record", b"x", 1.0) for n in range(100)])
            os._exit(0)  # no close, no fold

        asyncio.run(main())
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert rows(path, "journal_log") == 3

    async def read() -> dict:
        store = SQLiteStore(path)
        await store.open()
        try:
            return await store.load("tally", [f"athlete-{n}" for n in range(100)])
        finally:
            await store.close()

    loaded = asyncio.run(read())
    assert all([e.seq for e in journal] == [1, 2, 3] for _, journal in loaded.values())
    assert rows(path, "journal_log") == 0


async def test_by_default_a_store_logs_only_the_batches_whose_entities_repeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``commit_log="auto"``: over each fold's worth of wide batches (1,000 entries here) the store
    counts their entities; it logs while each had two entries or more on average, since a fold then
    joins runs, and writes straight into the journal otherwise (each entry would be written twice)."""
    monkeypatch.setattr(persistence.sqlite, "_FOLD_ENTRIES", 1_000)
    path = tmp_path / "arena.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        for seq in range(1, 11):  # 100 athletes, 10 entries each in 1,000: it starts logging after them
            await store.append(batch(seq))
        await store.append(batch(11))
        assert rows(path, "journal_log") == 1
        for seq in range(12, 32):  # now 40,000 others, once each: 0.025 entries an athlete in 1,000
            for part in range(40):
                entries = [JournalEntry("tally", f"once-{seq}-{part}-{n}", 1, "once", b"\x80", 1.0) for n in range(50)]
                await store.append(entries)
        await store.entity_ids("tally")  # folds what is logged
        assert rows(path, "journal_log") == 0
        await store.append([JournalEntry("tally", f"late-{n}", 1, "once", b"\x80", 1.0) for n in range(50)])
        assert rows(path, "journal_log") == 0  # back to the journal itself
        assert [e.seq for e in await store.read_journal("tally", "athlete-3")] == list(range(1, 12))
    finally:
        await store.close()


@pytest.mark.parametrize("sizes", [(1, 1), (15, 1), (8, 8), (16, 3), (65_535, 1), (40_000, 30_000), (3, 70_000, 2)])
def test_runs_join_into_one_without_unpacking_across_every_msgpack_array_header(sizes: tuple[int, ...]) -> None:
    """A fold joins runs byte-wise (fixarray, array16 and array32 headers, and crossing between them)."""
    from engine.codec import pack, unpack
    from persistence.segments import join_entries

    runs = [[["m", bytes([n % 256]), float(n), 1] for n in range(start, start + size)] for start, size in
            zip([sum(sizes[:i]) for i in range(len(sizes))], sizes, strict=True)]  # fmt: skip
    assert unpack(join_entries([pack(run) for run in runs])) == [entry for run in runs for entry in run]


def test_a_run_that_is_not_an_array_is_refused() -> None:
    from persistence.segments import join_entries

    with pytest.raises(ValueError, match="not a msgpack array"):
        join_entries([b"\x91\x01", b"\x81\xa1a\x01"])
