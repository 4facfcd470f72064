"""Withdrawn consent to health data in the lake (connectors/lake/health.py): the athlete's heart rates leave
every row about them, in events and raw telemetry; everything else, and everyone else's, stays."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pyarrow.parquet as pq

from connectors.lake.health import health_columns, strip_health
from connectors.lake.writer import LakeWriter
from engine.codec import pack
from engine.events import EventRecord


def _recorded(position: int, owner: str, avg_hr: int) -> EventRecord:
    summary = {"id": f"w{position}", "sport": "run", "distance_m": 5000.0, "avg_hr": avg_hr, "max_hr": avg_hr + 20}
    fields = {"owner": owner, "owner_name": owner, "region": None, "workout_id": f"w{position}",
              "visibility": "public", "summary": summary}  # fmt: skip
    return EventRecord("account", owner, position, 0, "workout.recorded", 3, 1_796_000_000.0 + position, owner,
                       pack(fields), position)  # fmt: skip


def _rows(root) -> list[dict]:
    files = sorted(root.rglob("*.parquet"))
    return [row for path in files for row in pq.read_table(path).to_pylist()]


async def test_a_withdrawal_nulls_the_athletes_heart_rates_and_nothing_else(tmp_path):
    writer = LakeWriter(tmp_path)
    await writer.publish([_recorded(1, "ana", 150), _recorded(2, "ben", 140), _recorded(3, "ana", 160)])
    telemetry = tmp_path / "telemetry" / "race=r1" / "day=2026-11-30"
    telemetry.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": ["ana", "ben", "ana"], "seq": [1, 1, 2], "hr": pa.array([151, 141, 152],
                                                                                              pa.uint16())}),
                   telemetry / "part-0.parquet")  # fmt: skip
    withdrawn = EventRecord("account", "ana", 9, 0, "health.withdrawn", 1, 1_796_000_100.0, "ana",
                            pack({"user_id": "ana"}), 4)  # fmt: skip
    await writer.publish([withdrawn])

    rows = _rows(tmp_path)
    recorded = [r for r in rows if r.get("type") == "workout.recorded" or "summary_avg_hr" in r]
    assert {(r["user_id"], r["summary_avg_hr"], r["summary_max_hr"]) for r in recorded} == {
        ("ana", None, None), ("ben", 140, 160)}  # fmt: skip
    assert all(r["summary_distance_m"] == 5000.0 for r in recorded)  # the rest of each row stays
    beats = [(r["user_id"], r["seq"], r["hr"]) for r in rows if "seq" in r and "hr" in r]
    assert sorted(beats) == [("ana", 1, None), ("ana", 2, None), ("ben", 1, 141)]
    assert await asyncio.to_thread(strip_health, tmp_path, "ana") == 0  # nothing left to strip
    assert await asyncio.to_thread(strip_health, tmp_path / "nowhere", "ana") == 0


def test_health_columns_are_the_numeric_heart_rate_and_weight_ones():
    schema = pa.schema([("hr", pa.uint16()), ("summary_avg_hr", pa.float64()), ("before_max_hr", pa.int64()),
                        ("chr", pa.int64()), ("summary_hr_zone", pa.string()), ("weight_kg", pa.float32()),
                        ("title_avg_hr", pa.string())])  # fmt: skip
    assert health_columns(schema) == ["hr", "summary_avg_hr", "before_max_hr", "weight_kg"]
