"""Erasure in the data lake (connectors.lake.erasure) on real files: a lake written by the relay's
writer, the race archive's writer and the daily aggregates, with the person in rows about them, in
other people's rows, in a quarantined body, in a compaction's leftover and in a race's dictionary;
then erased, scanned clean, and still read by DuckDB, status, compaction and the writer."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, date, datetime

import numpy as np
import pyarrow.parquet as pq
import pytest

import actors.events  # noqa: F401  (declares the event types the lake views)
from connectors.lake import (
    QUARANTINE,
    Lake,
    LakeWriter,
    archive_race,
    compact,
    compact_all,
    lake_status,
    render_status,
    rows_of,
)
from connectors.lake.daily import AGGREGATES, daily_aggregates
from connectors.lake.erasure import LakePart
from connectors.lake.files import META_KEY
from engine.codec import pack, unpack
from engine.events import EventRecord

DAY = datetime(2024, 5, 1, 9, 30, tzinfo=UTC).timestamp()
STAND_IN = "erased-0123456789abcdef"


def _event(position: int, type_: str, user: str | None, at: float = DAY, **fields) -> EventRecord:
    return EventRecord("test", f"s{position}", position, 0, type_, 1, at, user, pack(fields), position)


def _workout(position: int, owner: str, at: float = DAY) -> EventRecord:
    fields = {"owner": owner, "owner_name": f"name of {owner}", "region": "Bretagne", "workout_id": f"w{position}",
              "visibility": "public", "summary": {"sport": "run", "start": at, "distance_m": 10_000.0,
                                                  "elapsed_s": 2_400.0}}  # fmt: skip
    return EventRecord("account", owner, position, 0, "workout.recorded", 3, at, owner, pack(fields), position)


def _lake(root, person: str) -> None:
    """A lake where ``person`` is everywhere a lake can hold them, beside ann and bob."""
    writer = LakeWriter(root, compact_every=0)
    first = [_workout(1, person), _workout(2, "ann"), _workout(3, "bob"), _workout(4, person, DAY + 60)]
    writer.write(first)
    leftover = next((root / "events" / "type=workout.recorded").rglob("part-*.parquet"))
    kept = leftover.read_bytes()
    writer.write([_workout(5, "ann", DAY + 120), _workout(6, person, DAY + 180)])
    compact(leftover.parent)  # merged; then a "crash" leaves one input behind, redundant
    leftover.write_bytes(kept)
    writer.write(
        [
            _event(7, "group.joined", "ann", group_id="g1", user_id="ann", role="member", via="request", by=person),
            _event(8, "group.joined", "bob", group_id="g1", user_id="bob", role="member", via="open", by="bob"),
            _event(9, "test.changed", "bob", friends=[person, "bob"], splits={person: 1.5, "bob": 2.5}, blob=b"x"),
            _event(10, "Not A Type", "ann", said=f"hello {person}"),  # quarantined with its body
            _event(11, "Not A Type", person, said="mine"),
            _event(12, "account.erased", person, user_id=person, requested_at=DAY),  # the notice, kept
            _workout(13, person, DAY + 86_400),  # a file of theirs alone: left empty, its positions still taken
        ]
    )
    archive_race(root, "race-1", _samples(3, 30), athletes=["ann", "bob", person])  # theirs: the newest sample
    daily_aggregates(root, date(2024, 5, 1))


def _samples(athletes: int, each: int) -> dict[str, np.ndarray]:
    n = athletes * each
    return {
        "entry": np.arange(n, dtype=np.uint32) % athletes,
        "t": DAY + np.arange(n, dtype=np.float64),
        "seq": np.arange(n, dtype=np.uint32),
        "distance": np.arange(n, dtype=np.float32),
        "speed": np.full(n, 3.0, np.float32),
        "hr": np.full(n, 150, np.uint16),
        "lat": np.full(n, 48.85),
        "lon": np.full(n, 2.35),
    }


def _counts(root) -> dict[str, int]:
    with Lake(root) as lake:
        return dict(lake.sql("SELECT user_id, count(*) FROM workouts GROUP BY 1").fetchall()) | {
            f"samples {u}": n for u, n in lake.sql("SELECT user_id, count(*) FROM telemetry GROUP BY 1").fetchall()
        }


async def test_the_person_is_erased_from_every_file_and_everybody_else_stays_whole(tmp_path):
    person = uuid.uuid4().hex
    root = tmp_path / "lake"
    _lake(root, person)
    part = LakePart(root)
    before = _counts(root)
    assert before == {person: 4, "ann": 2, "bob": 1, f"samples {person}": 30, "samples ann": 30, "samples bob": 30}
    found = await part.remnants(person)
    assert len(rows_of(root, person)) == 6  # 2 workouts' files, the leftover, the quarantine, the notice, the race
    assert {line.split("/")[0] for line in found} == {"aggregates", "events", "telemetry"}

    changed = await part.erase(person, STAND_IN)

    assert changed >= 6
    assert await part.remnants(person) == []
    assert rows_of(root, person) == [next(root.glob("events/type=account.erased/*/*.parquet"))]  # the notice alone
    after = _counts(root)
    assert after == {k: v for k, v in before.items() if person not in k}
    with Lake(root) as lake:
        joined = lake.sql('SELECT user_id, "by" FROM "group.joined" ORDER BY position').fetchall()
        relation = lake.sql('SELECT * FROM "test.changed"')
        changed_row = dict(zip(relation.columns, relation.fetchall()[0], strict=True))
        quarantined = lake.sql(f'SELECT user_id, body FROM "{QUARANTINE}"').fetchall()
        notice = lake.sql('SELECT user_id, user_id_ FROM "account.erased"').fetchall()
    assert joined == [("ann", STAND_IN), ("bob", "bob")]
    assert json.loads(changed_row["friends"]) == [STAND_IN, "bob"] and changed_row["splits_bob"] == 2.5
    assert not any(person in name for name in changed_row) and changed_row["blob"] == b"x"
    assert [(u, unpack(b)) for u, b in quarantined] == [("ann", {"said": f"hello {STAND_IN}"})]
    assert notice == [(person, person)]
    race = pq.read_table(next(root.glob("telemetry/race=race-1/*/part-0.parquet")))
    assert race.column("user_id").chunks[0].dictionary.to_pylist() == ["ann", "bob"]
    assert sorted(set(race.column("user_id").to_pylist())) == ["ann", "bob"] and race.num_rows == 60
    users = pq.read_table(root / AGGREGATES / "daily_user" / "day=2024-05-01" / "part-0.parquet")
    assert sorted(users.column("user_id").to_pylist()) == ["ann", "bob"]
    regions = pq.read_table(root / AGGREGATES / "daily_region" / "day=2024-05-01" / "part-0.parquet")
    assert regions.column("workouts").to_pylist() == [6]  # a region's sum names nobody: kept as it was


async def test_the_lake_still_reads_compacts_reports_and_writes_each_event_once_after_an_erasure(tmp_path):
    person = uuid.uuid4().hex
    root = tmp_path / "lake"
    _lake(root, person)
    await LakePart(root).erase(person, STAND_IN)

    status = lake_status(root, now=DAY + 2 * 86_400)
    workouts = status["tables"]["workout.recorded"]
    assert workouts["rows"] == 3 and workouts["leftover_files"] == 0 and workouts["versions"] == [3]
    assert workouts["files"] == 2 and workouts["rows_per_day"]["2024-05-02"] == 0
    assert workouts["newest"] == DAY + 120  # the person's later workouts are gone, and so is their instant
    assert status["tables"]["telemetry"]["rows"] == 60 and "workout.recorded" in render_status(status)
    facts = json.loads(pq.read_metadata(next(root.glob("telemetry/race=race-1/*/*.parquet"))).metadata[META_KEY])
    assert facts == {"format": 1, "versions": [2], "newest": DAY + 88}  # bob's last sample: the person's went

    writer = LakeWriter(root, compact_every=0)
    assert writer.write([_workout(1, person), _workout(6, person), _workout(13, person, DAY + 86_400)]) == []
    writer.write([_workout(n, "ann", DAY + n) for n in range(20, 30)])
    assert compact_all(root, min_files=2)["merged_files"] >= 1
    with Lake(root) as lake:
        assert lake.sql("SELECT count(*) FROM workouts WHERE user_id = 'ann'").fetchall() == [(12,)]
        assert lake.sql("SELECT count(*) FROM workouts WHERE user_id = ?", [person]).fetchall() == [(0,)]
    assert daily_aggregates(root, date(2024, 5, 1))["daily_user"] == 2
    assert await LakePart(root).remnants(person) == []
    assert await LakePart(root).erase(person, STAND_IN) == 0  # again: nothing left to change


@pytest.mark.parametrize(
    "person",
    [
        "quote\"and'apostrophe",
        "x'; DROP TABLE events; --",
        "back\\slash\nnew line",
        "ü-名前-🏃",
        "p" * 5_000,
    ],
    ids=["quotes", "sql", "escapes", "unicode", "long"],
)
async def test_hostile_ids_are_erased_and_nobody_else_is_touched(tmp_path, person):
    root = tmp_path / "it's a lake"
    writer = LakeWriter(root, compact_every=0)
    writer.write(
        [
            _workout(1, person),
            _workout(2, "ann"),
            _event(3, "group.joined", "ann", group_id="g1", user_id="ann", role="member", via="request", by=person),
            _event(4, "test.changed", "bob", friends=[person, "bob"], note="nothing"),
        ]
    )
    archive_race(root, "race-1", {"user_id": np.array([person, "ann"]), "t": np.array([DAY, DAY + 1])})
    part = LakePart(root)
    assert await part.remnants(person)

    assert await part.erase(person, STAND_IN) >= 3

    assert await part.remnants(person) == []
    assert rows_of(root, person) == []
    with Lake(root) as lake:
        assert lake.sql("SELECT user_id FROM workouts").fetchall() == [("ann",)]
        assert lake.sql('SELECT "by" FROM "group.joined"').fetchall() == [(STAND_IN,)]
        assert json.loads(lake.sql('SELECT friends FROM "test.changed"').fetchall()[0][0]) == [STAND_IN, "bob"]
        assert lake.sql("SELECT user_id FROM telemetry").fetchall() == [("ann",)]


async def test_a_race_whose_id_names_the_person_goes_whole(tmp_path):
    person = uuid.uuid4().hex
    archive_race(tmp_path, f"solo-{person}", {"user_id": np.array(["ann"]), "t": np.array([DAY])})
    archive_race(tmp_path, "race-2", {"user_id": np.array(["ann"]), "t": np.array([DAY])})
    part = LakePart(tmp_path)
    assert [line.split(":")[0] for line in await part.remnants(person)] == [f"telemetry/race=solo-{person}"]

    assert await part.erase(person, STAND_IN) == 1

    assert await part.remnants(person) == []
    assert [p.name for p in (tmp_path / "telemetry").iterdir()] == ["race=race-2"]


async def test_a_file_that_is_no_parquet_is_left_and_listed_and_bad_arguments_are_refused(tmp_path, caplog):
    person = uuid.uuid4().hex
    part = LakePart(tmp_path / "nowhere")
    assert await part.erase(person, STAND_IN) == 0 and await part.remnants(person) == []
    root = tmp_path / "lake"
    LakeWriter(root).write([_workout(1, person), _workout(2, "ann")])
    broken = root / "events" / "type=workout.recorded" / "day=2024-05-01" / "part-000000000009-000000000009.parquet"
    broken.write_bytes(b"PAR1 not really " + person.encode())
    part = LakePart(root)

    assert await part.erase(person, STAND_IN) == 1  # the real file; the broken one is logged
    assert "no readable Parquet" in caplog.text
    assert [line.split(":")[0] for line in await part.remnants(person)] == [str(broken.relative_to(root))]

    broken.unlink()
    assert await part.remnants(person) == []
    for user_id, stand_in, error in [
        ("", STAND_IN, ValueError),
        (None, STAND_IN, TypeError),
        (b"bytes", STAND_IN, TypeError),
        (person, "", ValueError),
        (person, f"erased-{person}", ValueError),  # the stand-in would name them again
        ("erased", STAND_IN, ValueError),
    ]:
        with pytest.raises(error):
            await part.erase(user_id, stand_in)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await part.remnants("")


async def test_a_person_absent_from_the_lake_changes_no_file(tmp_path):
    root = tmp_path / "lake"
    _lake(root, "someone-else")
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}
    shutil.rmtree(root / "events" / "type=account.erased")

    assert await LakePart(root).erase(uuid.uuid4().hex, STAND_IN) == 0

    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")} == {p: s for p, s in stamps.items() if p.exists()}
