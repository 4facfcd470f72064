"""Retention (docs/privacy.md): raw data kept for a configured time, then deleted.

- **Raw race telemetry in the lake** (``telemetry/race=<id>/day=<day>/``): each sample as a device sent
  it, positions and heart rates included. After ``ARENA_TELEMETRY_RETENTION_DAYS`` (90) a day's
  partition is deleted; what lasts is aggregated already: each athlete's result and the workout
  it became, the daily aggregates (``connectors/lake/daily.py``).
- **The security audit log** (the ``audit`` entity of each day): after ``ARENA_AUDIT_RETENTION_DAYS``
  (365) a day's entity is deleted whole, through the engine (``ERASE_MESSAGE`` naming the day, which
  a day's entity takes as its own), so no host keeps a copy in memory to write back.
- Access logs keep each person's newest 5,000 reads (``actors/access_log.py``); export archives live
  15 minutes (``serve/api/export.py``); Redis keys expire on their own.

``arena run`` runs it when it starts and every ``ARENA_RETENTION_INTERVAL`` seconds (a day); a
deployment on a Ray cluster runs ``arena privacy retention`` from its scheduler (cron, a Kubernetes
CronJob).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.lake.files import TELEMETRY, locked, partitions
from engine.erasure import ERASE_MESSAGE
from engine.errors import EngineError
from engine.store import Store

__all__ = ["expired_days", "run_retention"]

log = logging.getLogger(__name__)

Ask = Callable[..., Awaitable[Any]]


def _cutoff(now: float, days: int) -> str:
    return (datetime.fromtimestamp(now, UTC) - timedelta(days=days)).date().isoformat()


def expired_days(root: Path | str, table: str, before: str) -> list[Path]:
    """The ``day=`` partitions of ``table`` older than the day ``before`` (YYYY-MM-DD)."""
    return [p for p in partitions(Path(root), table) if p.name.removeprefix("day=") < before]


def _delete_partition(partition: Path) -> int:
    with locked(partition):  # no writer is halfway through a file of it
        files = sum(1 for p in partition.iterdir() if p.suffix == ".parquet")
        for path in partition.iterdir():
            if path.name != ".lock":
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    shutil.rmtree(partition, ignore_errors=True)
    parent = partition.parent
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
    return files


async def run_retention(
    store: Store, ask: Ask, lake_root: Path | str | None, *, telemetry_days: int, audit_days: int,
    now: float | None = None,
) -> dict[str, int]:  # fmt: skip
    """Delete what is past its retention; what went, by kind."""
    now = time.time() if now is None else now
    report = {"telemetry_partitions": 0, "telemetry_files": 0, "audit_days": 0}
    if lake_root is not None and Path(lake_root).is_dir():
        for partition in expired_days(lake_root, TELEMETRY, _cutoff(now, telemetry_days)):
            report["telemetry_files"] += await asyncio.to_thread(_delete_partition, partition)
            report["telemetry_partitions"] += 1
    oldest_kept = _cutoff(now, audit_days)
    for day in sorted(await store.entity_ids("audit")):
        if day < oldest_kept:
            try:
                await ask("audit", day, ERASE_MESSAGE, {"user_id": day, "stand_in": "retention"})
            except EngineError as error:
                log.warning("retention: the audit log of %s was not deleted: %s", day, error)
                continue
            report["audit_days"] += 1
    if any(report.values()):
        log.info("retention: %s", report)
    return report
