"""The daily aggregates run as a Ray task over the lake and write the same numbers every time."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pyarrow.parquet as pq
import pytest

from connectors.lake import LakeWriter
from connectors.lake.daily import AGGREGATES, run_daily
from engine.codec import pack
from engine.events import EventRecord

pytestmark = pytest.mark.ray

DAY = date(2026, 11, 20)


def _workout(position: int, owner: str, sport: str, distance: float, start: datetime, region: str | None, version: int):
    fields = {"owner": owner, "owner_name": owner.title(), "workout_id": f"w{position}", "visibility": "public",
              "summary": {"id": f"w{position}", "sport": sport, "start": start.timestamp(), "distance_m": distance,
                          "elapsed_s": distance / 3.0}}  # fmt: skip
    if version == 2:
        fields["region"] = region
    return EventRecord("account", owner, position, 0, "workout.recorded", version, start.timestamp() + 60, owner,
                       pack(fields), position)  # fmt: skip


def _read(root, name: str) -> list[dict]:
    return pq.read_table(root / AGGREGATES / name / f"day={DAY}" / "part-0.parquet").to_pylist()


async def test_a_day_is_summed_per_user_region_and_sport_and_a_rerun_writes_the_same(ray_cluster, tmp_path):
    morning, evening = datetime(2026, 11, 20, 7, tzinfo=UTC), datetime(2026, 11, 20, 19, tzinfo=UTC)
    other_day = datetime(2026, 11, 21, 7, tzinfo=UTC)
    await LakeWriter(tmp_path).publish(
        [
            _workout(1, "ana", "run", 10_000, morning, None, 1),  # recorded before events had a region
            _workout(2, "ana", "run", 5_000, evening, "north", 2),
            _workout(3, "bo", "ride", 40_000, morning, "north", 2),
            _workout(4, "cy", "run", 8_000, evening, "south", 2),
            _workout(5, "ana", "run", 21_000, other_day, "north", 2),  # another day
        ]
    )
    assert run_daily(tmp_path, DAY) == {"daily_user": 3, "daily_region": 4, "daily_sport": 2}

    per_user = {(r["user_id"], r["sport"]): (r["workouts"], r["distance_m"]) for r in _read(tmp_path, "daily_user")}
    assert per_user == {("ana", "run"): (2, 15_000.0), ("bo", "ride"): (1, 40_000.0), ("cy", "run"): (1, 8_000.0)}
    per_region = {(r["region"], r["sport"]): r["workouts"] for r in _read(tmp_path, "daily_region")}
    assert per_region == {(None, "run"): 1, ("north", "run"): 1, ("north", "ride"): 1, ("south", "run"): 1}
    per_sport = {r["sport"]: r["distance_m"] for r in _read(tmp_path, "daily_sport")}
    assert per_sport == {"run": 23_000.0, "ride": 40_000.0}

    before = {name: _read(tmp_path, name) for name in ("daily_user", "daily_region", "daily_sport")}
    assert run_daily(tmp_path, DAY) == {"daily_user": 3, "daily_region": 4, "daily_sport": 2}
    assert {name: _read(tmp_path, name) for name in before} == before


async def test_a_day_without_workouts_writes_empty_aggregates(ray_cluster, tmp_path):
    assert run_daily(tmp_path, DAY) == {"daily_user": 0, "daily_region": 0, "daily_sport": 0}
    assert _read(tmp_path, "daily_sport") == []


async def test_ray_data_reads_the_same_workouts_as_duckdb_every_version_as_one_dataset(ray_cluster, tmp_path):
    from connectors.lake import Lake
    from connectors.lake.datasets import read, workouts

    morning = datetime(2026, 11, 20, 7, tzinfo=UTC)
    broken = _workout(9, "di", "swim", 1_000, morning, "east", 2)
    fields = {"owner": "di", "owner_name": "Di", "region": "east", "workout_id": "w9", "visibility": "public",
              "summary": {"id": "w9", "sport": "swim", "start": morning.timestamp(), "distance_m": "far"}}  # fmt: skip
    writer = LakeWriter(tmp_path)
    await writer.publish([_workout(1, "ana", "run", 10_000, morning, None, 1)])  # a file of version 1
    await writer.publish(
        [_workout(2, "ana", "run", 5_000, morning, "north", 2), _workout(3, "bo", "ride", 40_000, morning, "north", 2)]
    )
    await writer.publish([broken._replace(body=pack(fields))])  # a distance that is no number

    rows = sorted(workouts(tmp_path).take_all(), key=lambda r: r["position"])

    assert [(r["user_id"], r["sport"], r["distance_m"], r["region"], r["version"]) for r in rows] == [
        ("ana", "run", 10_000.0, None, 1),
        ("ana", "run", 5_000.0, "north", 2),
        ("bo", "ride", 40_000.0, "north", 2),
        ("di", "swim", None, "east", 2),
    ]
    with Lake(tmp_path) as lake:
        duck = lake.sql("SELECT sport, sum(distance_m) FROM workouts GROUP BY 1").fetchall()
    by_sport: dict[str, float] = {}
    for row in rows:
        by_sport[row["sport"]] = by_sport.get(row["sport"], 0.0) + (row["distance_m"] or 0.0)
    assert {s: d or 0.0 for s, d in duck} == by_sport
    assert read(tmp_path, "events", "workout.recorded").count() == 4
    with pytest.raises(LookupError):
        read(tmp_path, "telemetry")


async def test_a_lake_rebuilt_from_the_outbox_from_position_zero_gives_the_same_aggregates(ray_cluster, tmp_path):
    import shutil

    from engine.relay import Relay
    from persistence import open_store

    store = open_store(f"sqlite:///{tmp_path}/arena.db")
    await store.open()
    morning = datetime(2026, 11, 20, 6, tzinfo=UTC)
    people = [("ana", "run", "north"), ("bo", "ride", "north"), ("cy", "run", "south")]
    events = [
        _workout(0, who, sport, 1_000.0 * (n + 1), morning.replace(minute=n), region, 1 + n % 2)._replace(seq=n + 1)
        for n, (who, sport, region) in enumerate(people * 10)
    ]
    root = tmp_path / "lake"

    async def nobody(*args, **kwargs):
        raise AssertionError("no subscription here")

    try:
        await store.append([], [], events)
        relay = Relay(store, nobody, nobody, [], streams=[LakeWriter(root)], batch=4)
        await relay.drain(timeout=30)
        first = run_daily(root, DAY)
        before = {name: _read(root, name) for name in first}

        shutil.rmtree(root)  # the lake lost; the outbox still holds every event
        await store.save_cursor("stream:lake", 0)  # the lake's consumer replayed from the outbox's start
        relay = Relay(store, nobody, nobody, [], streams=[LakeWriter(root)], batch=9)  # in other batches
        await relay.drain(timeout=30)

        assert run_daily(root, DAY) == first == {"daily_user": 3, "daily_region": 5, "daily_sport": 2}
        assert {name: _read(root, name) for name in first} == before
    finally:
        await store.close()
