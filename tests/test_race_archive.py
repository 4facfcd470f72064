"""A settled race's raw telemetry reaches the lake from its journal (connectors.lake.race_archive):
the host keeps the race's journal until then, the archive holds every sample the race took with
its athlete, nothing twice, and the journal is compacted once it is archived. On a real race host
over SQLite and PostgreSQL, and a real relay, without Ray."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from actors.race import Race, RaceRef
from connectors.lake import Lake, RaceArchive, race_file
from connectors.lake.archive import TelemetryWriter
from engine.codec import unpack
from engine.config import HostConfig
from engine.errors import Forbidden
from engine.host import Host
from engine.relay import Relay
from engine.telemetry import SAMPLE_DTYPE
from persistence import open_store

RIDE = {"name": "Hour", "sport": "ride", "kind": "time", "duration_s": 3600}
ATHLETES = ["ann", "bob", "cy"]


def _batch(entries: list[int], t0: float, n: int, base: float, hr: dict[int, int]) -> bytes:
    """``n`` samples a second apart from ``t0`` for each of ``entries``, at 4 m/s since ``base``;
    ``hr``: each entry's heart rate, which tells the athletes apart in the archive."""
    samples = np.zeros(n * len(entries), SAMPLE_DTYPE)
    for k, entry in enumerate(entries):
        rows = slice(k * n, (k + 1) * n)
        t = t0 + np.arange(n)
        samples["entry"][rows] = entry
        samples["seq"][rows] = t - base
        samples["t"][rows] = t
        samples["distance"][rows] = (t - base) * 4.0
        samples["speed"][rows] = 4.0
        samples["hr"][rows] = hr[entry]
        samples["lat"][rows] = np.nan
        samples["lon"][rows] = np.nan
    return samples.tobytes()


async def _settle_snapshots(host: Host, store, race_id: str) -> None:
    """Until the race's latest state is in a snapshot (the host snapshots every 50 ms here): one saved
    through the race's last journal entry, not an older one still on disk while the new one is written."""
    for _ in range(200):
        snapshot = await store.load_snapshot("race", race_id)
        journal = await store.read_journal("race", race_id)
        last = journal[-1].seq if journal else 0
        if snapshot is not None and snapshot.seq >= last and not host.metrics()["snapshot_lag_entities"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the host took no snapshot")


async def _until_compacted(store, race_id: str) -> None:
    """Until the race's journal holds no ``ingest`` entry: the host compacts it right after the snapshot
    it saves, so a saved snapshot alone does not mean the journal is compacted yet."""
    for _ in range(200):
        if "ingest" not in [e.message_type for e in await store.read_journal("race", race_id)]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the host never compacted the archived race's journal")


def _host(store, archived: bool) -> Host:
    config = HostConfig(
        snapshot_interval=0.05, compact_every=1, timer_resolution=0.01, archived_kinds=("race",) if archived else ()
    )
    return Host([Race, RaceRef], store, config)


async def _race_with_telemetry(host: Host, race_id: str) -> int:
    """A live race of three that took two batches (one by entry, one by user id with a stranger);
    how many samples it took."""
    await host.ask("race", race_id, "create", {"organizer": "org", "config": RIDE})
    await host.ask("race", race_id, "open", {"by": "org"})
    await host.ask("race", race_id, "join_many", {"athletes": [{"user_id": u, "name": u} for u in ATHLETES]})
    await host.ask("race", race_id, "start", {"by": "org"})
    base = time.time() - 120  # the samples were measured in the last two minutes
    await host.ask("race", race_id, "ingest", {"samples": _batch([0, 1], base, 30, base, {0: 150, 1: 141})})
    # A gateway's batch: positions in its own list; "zed" is in no race and is refused.
    late = _batch([0, 1, 2], base + 30, 20, base, {0: 140, 1: 199, 2: 150})
    await host.ask("race", race_id, "ingest", {"samples": late, "athletes": ["cy", "zed", "ann"]})
    with pytest.raises(Forbidden):
        await host.ask(
            "race", race_id, "ingest", {"samples": _batch([0], base, 5, base, {0: 150}), "athletes": ["zed"]}
        )
    return 30 * 2 + 20 * 2


async def test_a_settled_race_is_archived_whole_from_its_kept_journal_then_compacted(store_url, tmp_path):
    store = open_store(store_url)
    host = _host(store, archived=True)
    await host.start()
    archive = RaceArchive(tmp_path / "lake", entries_per_read=2)  # several reads of the journal
    relay = Relay(store, host.deliver, host.ask, [], streams=[archive])
    # PostgreSQL's database is the session's: this relay reads from this test's start, not other tests' races.
    start = relay.progress["stream:race-archive"].position = await store.last_event_position()
    try:
        taken = await _race_with_telemetry(host, "r1")
        await _settle_snapshots(host, store, "r1")
        journal = await store.read_journal("race", "r1")
        assert [e.message_type for e in journal].count("ingest") == 2, "the host compacted a kept journal"
        await host.ask("race", "r1", "end", {"by": "org"})
        await host.ask("race", "r1", "finalize", {"by": "org"})

        await relay.drain(timeout=30)

        path = race_file(tmp_path / "lake", "r1")
        assert path is not None and archive.archived == 1 and archive.samples == taken
        table = pq.read_table(path).to_pylist()
        assert len(table) == taken
        by_user: dict[str, list[dict]] = {}
        for row in table:
            by_user.setdefault(row["user_id"], []).append(row)
        assert {u: len(rows) for u, rows in by_user.items()} == {"ann": 50, "bob": 30, "cy": 20}
        cy = by_user["cy"]  # sent as position 0 of the gateway's list: the race's entry 2
        assert {r["hr"] for r in cy} == {140} and [r["distance"] for r in cy[:3]] == [120.0, 124.0, 128.0]
        assert {r["hr"] for r in by_user["bob"]} == {141} and {r["hr"] for r in by_user["ann"]} == {150}
        assert all(r["lat"] is None and r["power"] == 0 for r in table)
        with Lake(tmp_path / "lake") as lake:
            assert lake.sql("SELECT count(*) FROM telemetry WHERE race = 'r1'").fetchall() == [(taken,)]

        # Told, the race lets its host compact the journal: the samples are in the lake now.
        assert (await host.ask("race", "r1", "info"))["status"] == "final"
        await _until_compacted(store, "r1")

        # A relay that lost its cursor sends race.settled again: nothing is written twice.
        stamp = (path.stat().st_ino, path.stat().st_mtime_ns)
        relay.progress["stream:race-archive"].position = start
        await relay.drain(timeout=30)
        assert race_file(tmp_path / "lake", "r1") == path and (path.stat().st_ino, path.stat().st_mtime_ns) == stamp
        assert archive.archived == 2 and archive.samples == taken and not archive.failed
    finally:
        await host.stop()
        await store.close()


async def test_without_the_lake_the_race_journal_is_compacted_as_before(store_url):
    store = open_store(store_url)
    host = _host(store, archived=False)
    await host.start()
    try:
        await _race_with_telemetry(host, "r2")
        await host.ask("race", "r2", "end", {"by": "org"})  # a change after the batches, then a snapshot
        await _until_compacted(store, "r2")
    finally:
        await host.stop()
        await store.close()


async def test_an_archive_killed_midway_is_written_again_whole_and_a_cancelled_race_without_samples_is_let_go(
    tmp_path, monkeypatch
):
    store = open_store(f"sqlite:///{tmp_path}/arena.db")
    host = _host(store, archived=True)
    await host.start()
    root = tmp_path / "lake"
    archive = RaceArchive(root, entries_per_read=1)
    relay = Relay(store, host.deliver, host.ask, [], streams=[archive])
    try:
        taken = await _race_with_telemetry(host, "r3")
        await host.ask("race", "r3", "cancel", {"by": "org", "reason": "storm"})
        # A writer SIGKILLed earlier left half a file; this one dies after its first part.
        leftover = root / "telemetry" / "race=r3" / ".part-0.dead.tmp"
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"PAR1 half a file")
        real_add, calls = TelemetryWriter.add, []

        def dying_add(self, columns):
            calls.append(len(columns["t"]))
            if len(calls) == 2:
                raise OSError("disk gone")
            real_add(self, columns)

        monkeypatch.setattr(TelemetryWriter, "add", dying_add)
        with pytest.raises(OSError):
            await relay.drain(timeout=30)
        assert race_file(root, "r3") is None and list(leftover.parent.glob(".*.tmp")) == []
        monkeypatch.setattr(TelemetryWriter, "add", real_add)

        await relay.drain(timeout=30)

        path = race_file(root, "r3")
        assert path is not None and pq.read_metadata(path).num_rows == taken
        assert archive.archived == 1

        # A race cancelled before it went live has no telemetry: no file, and its host is told.
        await host.ask("race", "r4", "create", {"organizer": "org", "config": RIDE})
        await host.ask("race", "r4", "cancel", {"by": "org"})
        await relay.drain(timeout=30)
        assert race_file(root, "r4") is None and archive.archived == 2
        snapshot = await _state(host, store, "r4")
        assert snapshot["archived"] is True
    finally:
        await host.stop()
        await store.close()


async def _state(host: Host, store, race_id: str) -> dict:
    await _settle_snapshots(host, store, race_id)
    snapshot = await store.load_snapshot("race", race_id)
    assert snapshot is not None
    return unpack(snapshot.state)["state"]


def test_the_archive_folder_holds_nothing_but_the_race_file(tmp_path):
    """No stray file where readers look: the writer's temporary file lives beside the day folders."""
    with TelemetryWriter(tmp_path, "r5", athletes=["u1"]) as writer:
        writer.add({"entry": np.zeros(3, np.uint32), "t": 1.7e9 + np.arange(3.0)})
        assert [p.name for p in Path(tmp_path, "telemetry", "race=r5").glob("day=*")] == []
        path = writer.finish()
    assert path is not None and path.name == "part-0.parquet"
    assert sorted(p.name for p in path.parent.iterdir()) == ["part-0.parquet"]
