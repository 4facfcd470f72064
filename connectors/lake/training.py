"""Recompute the athletes' training loads from the lake: a Ray job over ``workout.recorded``, ``.edited``
and ``.deleted`` (docs/training.md, "Recompute from the lake").

The ``training`` entity keeps each athlete's workouts of the last two years and measures their loads
itself; what it may lack is history (an entity made before the lake's events reached it, a model
change that must be applied to everything, a store restored from a backup). This job reads, with
DuckDB over the lake's live files, each page of ``PAGE`` athletes' workout changes inside the
entity's window (one Ray task a page, ``IN_FLIGHT`` at once), keeps each workout's newest state by
the account's journal seq (a deletion wins over older states, as in the entity; workouts recorded to
start before the window are not read, edits and deletions always are), and sends each
athlete's list in one message (``Training.backfill``), which applies it as the live reactions would
and measures every load once. Running it again, or over workouts the reactions already took,
changes nothing. Memory holds ``IN_FLIGHT`` pages of histories at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from connectors.lake.backfill import quoted, row_value, users_in
from connectors.lake.query import Lake

__all__ = ["IN_FLIGHT", "PAGE", "changes", "recompute"]

PAGE = 1_000  # athletes whose workouts one task reads
IN_FLIGHT = 2  # pages read at once: a task takes a core
WINDOW_S = 730 * 86_400.0  # the entity's window (actors.training.WINDOW_DAYS)
ASKED = 200  # athletes' messages in flight at once

Ask = Callable[[str, str, str, dict], Awaitable[Any]]

_TYPES = ("workout.recorded", "workout.edited", "workout.deleted")
# The summary's fields the entity keeps (actors.training._FACTS, and the best efforts for predictions).
_FACTS = ("sport", "start", "moving_s", "elapsed_s", "distance_m", "avg_hr", "max_hr", "avg_power", "rpe",
          "best_efforts")  # fmt: skip
_TEXT = ("sport", "best_efforts")
_PREFIX = {"workout.recorded": "summary", "workout.edited": "after", "workout.deleted": None}


def changes(root: Path | str, users: list[str], since: float) -> list[tuple[str, list[list]]]:
    """Each of ``users``' workouts, newest state each, as ``[workout_id, seq, summary or None]``: those
    recorded (or edited) to start after ``since``, and deleted ones (the entity drops what it holds)."""
    newest: dict[tuple[str, str], list] = {}
    with Lake(root) as lake:
        for event_type in _TYPES:
            if event_type not in lake.tables:
                continue
            prefix = _PREFIX[event_type]
            columns = set(lake.sql(f"SELECT * FROM {quoted(event_type)} LIMIT 0").columns)
            facts = [f for f in _FACTS if f"{prefix}_{f}" in columns]
            # Typed by DuckDB, not value by value in Python: a number that is not one reads as null.
            typed = [f"TRY_CAST({prefix}_{f} AS {'VARCHAR' if f in _TEXT else 'DOUBLE'})" for f in facts]
            where = "list_contains(?, user_id)"
            if event_type == "workout.recorded" and "summary_start" in columns:  # an edit may bring one back in
                where += f" AND TRY_CAST(summary_start AS DOUBLE) >= {float(since)!r}"
            relation = lake.sql(
                f"SELECT {', '.join(['user_id', 'workout_id', 'seq', *typed])} FROM {quoted(event_type)} WHERE {where}",
                [users],
            )
            for user, workout, seq, *values in relation.fetchall():
                if not (isinstance(user, str) and isinstance(workout, str) and isinstance(seq, int)):
                    continue
                summary = None if prefix is None else _summary(facts, values)
                known = newest.get((user, workout))
                if known is None or known[1] < seq:
                    newest[(user, workout)] = [workout, seq, summary]
    by_user: dict[str, list[list]] = {}
    for (user, _), item in newest.items():
        by_user.setdefault(user, []).append(item)
    return [(user, by_user[user]) for user in users if user in by_user]


def _summary(names: list[str], values: list) -> dict:
    summary = {name: value for name, value in zip(names, values, strict=True) if value is not None}
    efforts = summary.get("best_efforts")
    if efforts is not None:  # a map: JSON text in the lake
        summary["best_efforts"] = {} if efforts == "{}" else row_value(efforts)
    return summary


async def recompute(
    root: Path | str, ask: Ask, users: Iterable[str] | None = None, *, now: float | None = None
) -> dict:
    """Send every athlete with workouts in the lake (or ``users``) their history of the window:
    ``{"users", "workouts", "skipped", "seconds"}``. Ray must be initialised."""
    import ray

    started = time.perf_counter()
    since = (time.time() if now is None else now) - WINDOW_S
    read = ray.remote(num_cpus=1, max_retries=3)(changes)  # reading again changes nothing
    if users is None:
        everyone = await ray.remote(num_cpus=1, max_retries=3)(users_in).remote(str(root), list(_TYPES))
    else:
        everyone = sorted(set(users))
    pages = [everyone[i : i + PAGE] for i in range(0, len(everyone), PAGE)]
    totals = {"users": 0, "workouts": 0, "skipped": 0}
    gate = asyncio.Semaphore(ASKED)

    async def one(user: str, items: list[list]) -> None:
        async with gate:
            answer = await ask("training", user, "backfill", {"workouts": items})
        totals["users"] += 1
        totals["workouts"] += answer["applied"]
        totals["skipped"] += answer["skipped"]

    reading = deque(read.remote(str(root), page, since) for page in pages[:IN_FLIGHT])
    later = iter(pages[IN_FLIGHT:])
    while reading:
        found = await reading.popleft()
        for page in islice(later, 1):  # the next page is read while this one is sent
            reading.append(read.remote(str(root), page, since))
        await asyncio.gather(*(one(user, items) for user, items in found))
    return {**totals, "seconds": round(time.perf_counter() - started, 1)}
