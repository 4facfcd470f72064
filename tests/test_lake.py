"""The data lake on real files: the relay's writer, compaction, the race archive, DuckDB, status."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from prometheus_client import CollectorRegistry, generate_latest

import actors.events  # noqa: F401  (declares workout.recorded and race.result)
from connectors.lake import (
    QUARANTINE,
    Lake,
    LakeCollector,
    LakeWriter,
    archive_race,
    cleanup,
    compact,
    compact_all,
    lake_status,
    live_files,
    render_status,
    rows_of,
)
from connectors.lake.archive import TELEMETRY_VERSION
from engine.codec import pack
from engine.events import CATALOGUE, EventRecord
from engine.relay import Relay
from persistence import open_store

DAY = datetime(2024, 5, 1, 9, 30, tzinfo=UTC).timestamp()  # 2024-05-01
NEXT_DAY = DAY + 86_400


def _workout(position: int, owner: str = "u1", at: float = DAY, **summary) -> EventRecord:
    fields = {
        "owner": owner,
        "owner_name": f"name of {owner}",
        "workout_id": f"w{position}",
        "visibility": "public",
        "summary": {"id": f"w{position}", "sport": "run", "start": at, "distance_m": 10_000.0 + position,
                    "elapsed_s": 2_400.0, "best_efforts": {"5k": 1_190.0}, **summary},
    }  # fmt: skip
    return EventRecord("account", owner, position, 0, "workout.recorded", 1, at, owner, pack(fields), position)


def _event(position: int, type_: str = "test.changed", version: int = 1, at: float = DAY, body=None, **fields):
    data = pack(fields) if body is None else body
    return EventRecord("test", "s1", position, 0, type_, version, at, "u9", data, position)


def _files(root: Path) -> dict[Path, tuple[int, int]]:
    """Every data file under the lake with its inode and mtime: a file rewritten changes them."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(root.rglob("part-*.parquet"))}


def test_the_declared_workout_type_is_the_one_the_lake_views():
    assert CATALOGUE["workout.recorded"].user_field == "owner"


async def test_published_events_read_back_once_each_by_type_and_day(tmp_path):
    writer = LakeWriter(tmp_path)
    records = [_workout(1), _workout(2, owner="u2"), _workout(3, at=NEXT_DAY), _event(4, note="hello")]
    await writer.publish(records)
    await writer.close()

    assert sorted(p.relative_to(tmp_path).as_posix() for p in _files(tmp_path)) == [
        "events/type=test.changed/day=2024-05-01/part-000000000004-000000000004.parquet",
        "events/type=workout.recorded/day=2024-05-01/part-000000000001-000000000002.parquet",
        "events/type=workout.recorded/day=2024-05-02/part-000000000003-000000000003.parquet",
    ]
    with Lake(tmp_path) as lake:
        assert set(lake.tables) == {"test.changed", "workout.recorded", "workouts"}
        rows = lake.sql(
            "SELECT position, event_id, user_id, owner, summary_sport, summary_distance_m, summary_best_efforts, "
            'CAST(day AS VARCHAR), type, "at" FROM "workout.recorded" ORDER BY position'
        ).fetchall()
        assert [r[:8] for r in rows] == [
            (1, "account/u1/1/0", "u1", "u1", "run", 10_001.0, '{"5k":1190.0}', "2024-05-01"),
            (2, "account/u2/2/0", "u2", "u2", "run", 10_002.0, '{"5k":1190.0}', "2024-05-01"),
            (3, "account/u1/3/0", "u1", "u1", "run", 10_003.0, '{"5k":1190.0}', "2024-05-02"),
        ]
        assert {r[8] for r in rows} == {"workout.recorded"}
        assert rows[2][9] == datetime.fromtimestamp(NEXT_DAY, UTC)
        workouts = lake.sql("SELECT user_id, sport, start, distance_m, elapsed_s FROM workouts ORDER BY position")
        assert workouts.fetchall()[0] == ("u1", "run", datetime.fromtimestamp(DAY, UTC), 10_001.0, 2_400.0)
        assert lake.events("test.changed").fetchall()[0][-3:] == ("hello", datetime(2024, 5, 1).date(), "test.changed")
        with pytest.raises(KeyError):
            lake.events("nothing.here")
    assert writer.rows_written == 4 and writer.files_written == 3


async def test_a_batch_sent_again_or_cut_differently_writes_no_row_twice_and_rewrites_no_file(tmp_path):
    writer = LakeWriter(tmp_path)
    first = [_workout(n) for n in range(1, 11)]
    assert len(writer.write(first)) == 1
    before = _files(tmp_path)

    assert writer.write(first) == []  # the relay crashed before saving its cursor
    assert writer.write([_workout(n) for n in range(5, 8)]) == []  # a smaller batch, inside what was written
    written = writer.write([_workout(n) for n in range(6, 16)])  # overlapping, reaching further

    assert [p.name for p in written] == ["part-000000000011-000000000015.parquet"]
    after = _files(tmp_path)
    assert {p: after[p] for p in before} == before  # the first file was not touched
    with Lake(tmp_path) as lake:
        positions = [r[0] for r in lake.sql("SELECT position FROM workouts ORDER BY position").fetchall()]
    assert positions == list(range(1, 16))


async def test_an_event_between_old_files_gets_a_file_that_does_not_reach_over_them(tmp_path):
    """A position that arrives after later ones (a store whose positions became visible out of
    order) must not make a file whose range covers an older file: readers would skip the older one."""
    writer = LakeWriter(tmp_path)
    writer.write([_workout(1), _workout(5)])
    writer.write([_workout(9)])
    written = writer.write([_workout(n) for n in (2, 3, 7, 8, 10)])
    assert [p.name for p in written] == [
        "part-000000000007-000000000008.parquet",
        "part-000000000010-000000000010.parquet",
    ]
    with Lake(tmp_path) as lake:
        positions = [r[0] for r in lake.sql("SELECT position FROM workouts ORDER BY position").fetchall()]
    assert positions == [1, 5, 7, 8, 9, 10]  # 2 and 3 lie inside the first file's range: taken as written


async def test_a_writer_killed_mid_batch_loses_and_repeats_nothing_after_the_relay_sends_again(tmp_path):
    writer = LakeWriter(tmp_path)
    batch = [_workout(1), _workout(2, at=NEXT_DAY), _event(3), _workout(4)]
    # Killed after the first partition's file, while writing the second: a half-written temp file.
    writer.write([r for r in batch if r.at == DAY and r.type == "workout.recorded"])
    partition = tmp_path / "events/type=workout.recorded/day=2024-05-02"
    partition.mkdir(parents=True)
    whole = next(iter(_files(tmp_path)))
    half = partition / ".part-000000000002-000000000002.parquet.0123abcd.tmp"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with Lake(tmp_path) as lake:
        assert lake.sql("SELECT count(*) FROM workouts").fetchall()[0] == (2,)

    LakeWriter(tmp_path).write(batch)  # the restarted relay, from its saved cursor

    with Lake(tmp_path) as lake:
        assert lake.sql("SELECT position FROM workouts ORDER BY 1").fetchall() == [(1,), (2,), (4,)]
        assert lake.sql('SELECT position FROM "test.changed"').fetchall() == [(3,)]
    assert lake_status(tmp_path)["tables"]["workout.recorded"]["leftover_files"] == 1
    assert cleanup(tmp_path) == 1 and not half.exists()


async def test_the_relay_run_again_from_the_start_leaves_each_event_once(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/arena.db")
    await store.open()
    try:
        await store.append([], [], [_workout(0)._replace(seq=n, at=DAY + n * 1_800) for n in range(1, 41)])

        async def nobody(*args, **kwargs):
            raise AssertionError("no subscription here")

        writer = LakeWriter(tmp_path / "lake")
        relay = Relay(store, nobody, nobody, [], streams=[writer], batch=7)
        await relay.drain(timeout=30)
        before = _files(tmp_path / "lake")
        relay.progress["stream:lake"].position = 0  # a relay that lost its cursor: every event again,
        relay.batch = 11  # cut into other batches
        await relay.drain(timeout=30)
    finally:
        await store.close()
    assert _files(tmp_path / "lake") == before
    with Lake(tmp_path / "lake") as lake:
        counts = lake.sql("SELECT count(*), count(DISTINCT position), count(DISTINCT day) FROM workouts").fetchall()
    assert counts == [(40, 40, 2)]


async def test_compaction_merges_a_partitions_files_and_a_crash_before_deleting_reads_no_row_twice(tmp_path):
    writer = LakeWriter(tmp_path)
    for start in range(1, 31, 5):
        writer.write([_workout(n) for n in range(start, start + 5)])
    partition = tmp_path / "events/type=workout.recorded/day=2024-05-01"
    inputs = sorted(partition.glob("part-*.parquet"))
    assert len(inputs) == 6
    saved = tmp_path / "saved"
    saved.mkdir()
    for path in inputs:
        shutil.copy2(path, saved / path.name)

    merged = compact(partition)

    assert [p.name for p in merged] == ["part-000000000001-000000000030.parquet"]
    assert sorted(partition.glob("part-*.parquet")) == merged
    assert pq.read_table(merged[0]).column("position").to_pylist() == list(range(1, 31))
    for path in saved.iterdir():  # the inputs back, as a compaction killed before deleting them left them
        shutil.copy2(path, partition / path.name)
    with Lake(tmp_path) as lake:
        assert lake.sql("SELECT count(*), count(DISTINCT position) FROM workouts").fetchall()[0] == (30, 30)
    assert live_files(tmp_path, "events")["workout.recorded"] == merged
    assert lake_status(tmp_path)["tables"]["workout.recorded"]["leftover_files"] == 6
    assert cleanup(tmp_path) == 6
    assert sorted(partition.glob("part-*.parquet")) == merged
    writer.write([_workout(n) for n in range(1, 36)])  # after compaction, a resent batch adds only what is new
    with Lake(tmp_path) as lake:
        assert lake.sql("SELECT count(*), count(DISTINCT position) FROM workouts").fetchall()[0] == (35, 35)


async def test_compaction_leaves_big_files_alone_and_never_reaches_over_one(tmp_path):
    writer = LakeWriter(tmp_path)
    writer.write([_workout(1)])
    writer.write([_workout(2)])
    writer.write([_workout(n, note="x" * 2_000 + str(n)) for n in range(3, 300)])  # a big file between
    writer.write([_workout(300)])
    writer.write([_workout(301)])
    partition = tmp_path / "events/type=workout.recorded/day=2024-05-01"
    big = partition / "part-000000000003-000000000299.parquet"

    merged = compact(partition, target_bytes=big.stat().st_size)

    assert [p.name for p in merged] == [
        "part-000000000001-000000000002.parquet",
        "part-000000000300-000000000301.parquet",
    ]
    assert big.exists()
    with Lake(tmp_path) as lake:
        assert lake.sql("SELECT count(*), count(DISTINCT position) FROM workouts").fetchall()[0] == (301, 301)


async def test_compact_all_compacts_busy_partitions_only(tmp_path):
    writer = LakeWriter(tmp_path)
    for n in range(1, 5):
        writer.write([_workout(n), _workout(100 + n, at=NEXT_DAY)])
    writer.write([_event(200)])
    with pytest.raises(ValueError):
        compact_all(tmp_path, min_files=1)
    assert compact_all(tmp_path, min_files=4) == {"partitions": 2, "merged_files": 2, "deleted_files": 0}
    assert {k: len(v) for k, v in live_files(tmp_path, "events").items()} == {
        "workout.recorded": 2,
        "test.changed": 1,
    }


async def test_two_versions_of_an_event_read_as_one_table_by_column_name(tmp_path):
    writer = LakeWriter(tmp_path)
    writer.write([_event(1, version=1, name="old", count=3), _event(2, version=1, name="old2", count=4)])
    writer.write([_event(3, version=2, name="new", count=5.5, renamed="r")])
    writer.write([_event(4, version=1, name="mixed", count=1), _event(5, version=2, name="m2", renamed="s")])

    with Lake(tmp_path) as lake:
        rows = lake.sql('SELECT position, version, name, count, renamed FROM "test.changed" ORDER BY 1').fetchall()
    assert rows == [
        (1, 1, "old", 3.0, None),
        (2, 1, "old2", 4.0, None),
        (3, 2, "new", 5.5, "r"),
        (4, 1, "mixed", 1.0, None),
        (5, 2, "m2", None, "s"),
    ]
    assert lake_status(tmp_path)["tables"]["test.changed"]["versions"] == [1, 2]
    partition = tmp_path / "events/type=test.changed/day=2024-05-01"
    assert len(compact(partition)) == 1  # int and float counts promote to one column
    with Lake(tmp_path) as lake:
        assert lake.sql('SELECT sum(count) FROM "test.changed"').fetchall()[0] == (13.5,)
    assert lake_status(tmp_path)["tables"]["test.changed"]["versions"] == [1, 2]


async def test_hostile_field_names_become_columns_that_read_back(tmp_path):
    long = "n" * 10_000
    fields = {
        "'; DROP TABLE workouts; --": 1,
        '"quoted"': "q",
        long: 2,
        "Name": "upper",
        "name": "lower",
        "position": -1,  # the outbox's own column
        7: "an int key",
        "nul\x00here": 3,
        "big": 2**64 - 1,
        "mixed": [1, {"a": b"\x00"}],
    }
    LakeWriter(tmp_path).write([_event(1, body=pack(fields))])
    with Lake(tmp_path) as lake:
        relation = lake.events("test.changed")
        row = dict(zip(relation.columns, relation.fetchall()[0]))
    assert row["'; DROP TABLE workouts; --"] == 1
    assert row['"quoted"'] == "q"
    [cut] = [c for c in row if c.startswith("nnnn")]
    assert len(cut) == 117 and row[cut] == 2
    assert (row["Name"], row["name_"]) == ("upper", "lower")
    assert (row["position"], row["position_"]) == (1, -1)
    assert (row["7"], row["nul_here"]) == ("an int key", 3)
    assert row["big"] == str(2**64 - 1)  # beyond int64: kept exactly, as JSON text
    assert row["mixed"] == '[1,{"a":"00"}]'


async def test_types_and_instants_that_cannot_be_paths_are_quarantined_inside_the_root(tmp_path):
    root = tmp_path / "it's the lake"  # a quote in the root: the views' SQL must escape it
    writer = LakeWriter(root)
    hostile = [
        _event(1, type_="../../escaped"),
        _event(2, type_="a/b"),
        _event(3, type_=".."),
        _event(4, type_="Upper.Case"),
        _event(5, at=float("nan")),
        _event(6, at=1e300),
        _event(7, body=pack([1, 2])),
        _event(8, body=b"\xc1"),
        _event(9)._replace(source_id="../../x/y"),
    ]
    assert writer.write([]) == [] and not root.exists()  # an empty batch writes nothing
    writer.write(hostile)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["it's the lake"]
    folders = sorted(p.relative_to(root).as_posix() for p in root.rglob("day=*"))
    assert folders == [
        f"events/type={QUARANTINE}/day=1970-01-01",
        f"events/type={QUARANTINE}/day=2024-05-01",
        "events/type=test.changed/day=2024-05-01",
    ]
    with Lake(root) as lake:
        rows = lake.sql(f'SELECT position, event_type, reason, body FROM "{QUARANTINE}" ORDER BY 1').fetchall()
        assert lake.sql('SELECT source_id FROM "test.changed"').fetchall() == [("../../x/y",)]
    assert [r[1] for r in rows] == ["../../escaped", "a/b", "..", "Upper.Case", "test.changed", "test.changed",
                                    "test.changed", "test.changed"]  # fmt: skip
    assert rows[0][2] == "event type is not a declared name" and rows[0][3] == pack({})
    assert rows[4][2] == "instant nan is not a date"
    assert rows[6][2] == "body is a msgpack list, not a map" and rows[7][3] == b"\xc1"
    with pytest.raises(ValueError):
        writer.write([_event(10)._replace(position=-1)])
    with pytest.raises(ValueError):
        writer.write([_event(10)._replace(idx=2**40)])
    with pytest.raises(ValueError):
        archive_race(root, "../race", {"user_id": np.array(["u1"]), "t": np.array([DAY])})


def _race(samples: int = 100) -> dict[str, np.ndarray]:
    t = DAY + np.arange(samples, dtype=np.float64)
    distance = np.arange(samples, dtype=np.float32) * 3.0
    distance[::10] = np.nan  # no reading
    return {
        "entry": np.arange(samples, dtype=np.uint32) % 4,
        "t": t,
        "distance": distance,
        "speed": np.full(samples, 3.0, np.float32),
        "hr": np.full(samples, 150, np.uint16),
        "power": np.full(samples, 210, np.uint16),
        "cadence": np.full(samples, 90, np.uint16),
        "lat": np.full(samples, 48.85),
        "lon": np.full(samples, 2.35),
    }


async def test_a_race_archive_reads_back_and_archiving_it_again_writes_nothing(tmp_path):
    athletes = ["u1", "u2", "u3", "u4"]
    path = archive_race(tmp_path, "race-1", _race(), athletes=athletes)
    assert path.relative_to(tmp_path).as_posix() == "telemetry/race=race-1/day=2024-05-01/part-0.parquet"
    stamp = _files(tmp_path)

    again = archive_race(tmp_path, "race-1", {"user_id": np.array(["u9"]), "t": np.array([NEXT_DAY])})

    assert again == path and _files(tmp_path) == stamp
    with Lake(tmp_path) as lake:
        row = lake.sql(
            "SELECT count(*), count(distance), count(DISTINCT user_id), min(t), max(hr), avg(power), "
            "any_value(race), any_value(lat) FROM telemetry WHERE user_id = 'u1'"
        ).fetchall()[0]
    assert row == (25, 20, 1, datetime.fromtimestamp(DAY, UTC), 150, 210.0, "race-1", 48.85)
    by_id = archive_race(tmp_path, "race-2", {"user_id": np.array(["u1", "u2"]), "t": np.array([DAY, DAY + 1.5])})
    table = pq.read_table(by_id)
    assert table.column("user_id").to_pylist() == ["u1", "u2"] and table.column("speed").null_count == 2
    with pytest.raises(ValueError):
        archive_race(tmp_path, "race-3", {"entry": np.array([4]), "t": np.array([DAY])}, athletes=athletes)
    with pytest.raises(ValueError):
        archive_race(tmp_path, "race-3", {"user_id": np.array(["u1"]), "t": np.array([DAY]), "altitude": np.ones(1)})


async def test_status_counts_rows_freshness_versions_and_nulls_of_a_known_lake(tmp_path):
    writer = LakeWriter(tmp_path)
    no_distance = _workout(3)
    fields = {"owner": "u1", "workout_id": "w3", "summary": {"sport": "run", "elapsed_s": 60.0}}
    writer.write([_workout(1), _workout(2, at=DAY + 600), no_distance._replace(body=pack(fields))])
    writer.write([_workout(4, at=NEXT_DAY)])
    archive_race(tmp_path, "race-1", _race(), athletes=["u1", "u2", "u3", "u4"])
    now = NEXT_DAY + 3_600

    status = lake_status(tmp_path, now=now)

    workouts = status["tables"]["workout.recorded"]
    assert workouts["files"] == 2 and workouts["rows"] == 4 and workouts["leftover_files"] == 0
    assert workouts["freshness_s"] == pytest.approx(3_600)
    assert workouts["versions"] == [1]
    assert workouts["rows_per_day"] == {
        "2024-04-26": 0, "2024-04-27": 0, "2024-04-28": 0, "2024-04-29": 0, "2024-04-30": 0,
        "2024-05-01": 3, "2024-05-02": 1,
    }  # fmt: skip
    assert workouts["null_ratio"] == {"user_id": 0.0, "summary_distance_m": 0.25, "summary_elapsed_s": 0.0}
    assert workouts["bytes"] == sum(p.stat().st_size for p in (tmp_path / "events").rglob("part-*.parquet"))
    telemetry = status["tables"]["telemetry"]
    assert telemetry["rows"] == 100 and telemetry["files"] == 1 and telemetry["versions"] == [TELEMETRY_VERSION]
    assert telemetry["null_ratio"]["distance"] == pytest.approx(0.1) and telemetry["null_ratio"]["user_id"] == 0.0
    assert telemetry["freshness_s"] == pytest.approx(now - (DAY + 99))
    text = render_status(status)
    assert "workout.recorded" in text and "summary_distance_m 25.0%" in text and "05-02" in text

    registry = CollectorRegistry()
    registry.register(LakeCollector(tmp_path))
    metrics = generate_latest(registry).decode()
    assert 'arena_lake_rows{table="workout.recorded"} 4.0' in metrics
    assert 'arena_lake_files{table="telemetry"} 1.0' in metrics
    assert 'arena_lake_null_ratio{field="summary_distance_m",table="workout.recorded"} 0.25' in metrics
    assert 'arena_lake_freshness_seconds{table="telemetry"}' in metrics


async def test_rows_of_finds_every_file_holding_a_users_rows(tmp_path):
    writer = LakeWriter(tmp_path)
    writer.write([_workout(1, owner="u1"), _workout(2, owner="u2")])
    writer.write([_workout(3, owner="u2", at=NEXT_DAY)])
    archive_race(tmp_path, "race-1", _race(), athletes=["u1", "u3", "u4", "u5"])

    found = {p.relative_to(tmp_path).as_posix() for p in rows_of(tmp_path, "u1")}

    assert found == {
        "events/type=workout.recorded/day=2024-05-01/part-000000000001-000000000002.parquet",
        "telemetry/race=race-1/day=2024-05-01/part-0.parquet",
    }
    assert len(rows_of(tmp_path, "u2")) == 2 and rows_of(tmp_path, "nobody") == []
