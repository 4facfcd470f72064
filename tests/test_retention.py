"""Retention (serve/retention.py, docs/privacy.md): raw telemetry and audit logs past their time are deleted,
what is younger stays, and nothing else is touched."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from actors.audit import AuditDay
from engine.config import HostConfig
from engine.host import Host
from persistence.sqlite import SQLiteStore
from serve.retention import expired_days, run_retention

NOW = time.mktime((2026, 12, 1, 12, 0, 0, 0, 0, 0))


def _partition(root: Path, table: str, key: str, day: str) -> Path:
    folder = root / table / key / f"day={day}"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"user_id": ["u1", "u2"], "hr": [150, 160]}), folder / "part-0.parquet")
    return folder


async def test_old_telemetry_and_audit_days_go_and_recent_ones_stay(tmp_path):
    lake = tmp_path / "lake"
    old = _partition(lake, "telemetry", "race=r1", "2026-08-01")
    recent = _partition(lake, "telemetry", "race=r1", "2026-11-20")
    alone = _partition(lake, "telemetry", "race=r0", "2025-01-01")  # its race folder goes with it
    events = _partition(lake, "events", "type=workout.recorded", "2025-01-01")  # not telemetry: kept
    host = Host([AuditDay], SQLiteStore(tmp_path / "arena.db"), HostConfig())
    await host.start()
    try:
        for day in ("2025-06-01", "2025-12-10", "2026-11-30"):
            await host.ask("audit", day, "record", {"entry_id": "e1", "event": "auth.login", "actor": "u1"})
        report = await run_retention(host.store, host.ask, lake, telemetry_days=90, audit_days=365, now=NOW)
        assert report == {"telemetry_partitions": 2, "telemetry_files": 2, "audit_days": 1}
        assert not old.exists() and not alone.exists() and not alone.parent.exists()
        assert recent.exists() and events.exists()
        for _ in range(200):  # the host deletes the day once its erasure is durable
            if sorted(await host.store.entity_ids("audit")) == ["2025-12-10", "2026-11-30"]:
                break
            await host.fire_timers()
        assert sorted(await host.store.entity_ids("audit")) == ["2025-12-10", "2026-11-30"]
        again = await run_retention(host.store, host.ask, lake, telemetry_days=90, audit_days=365, now=NOW)
        assert again == {"telemetry_partitions": 0, "telemetry_files": 0, "audit_days": 0}
        assert await run_retention(host.store, host.ask, tmp_path / "no-lake", telemetry_days=1, audit_days=10_000,
                                   now=NOW) == {"telemetry_partitions": 0, "telemetry_files": 0, "audit_days": 0}  # fmt: skip
    finally:
        await host.stop()


def test_only_day_partitions_older_than_the_cutoff_are_expired(tmp_path):
    _partition(tmp_path, "telemetry", "race=a", "2026-01-01")
    _partition(tmp_path, "telemetry", "race=a", "2026-01-02")
    (tmp_path / "telemetry" / "race=a" / "not-a-day").mkdir()
    (tmp_path / "telemetry" / "stray").mkdir()
    assert [p.name for p in expired_days(tmp_path, "telemetry", "2026-01-02")] == ["day=2026-01-01"]
