"""An athlete among the people of their region: percentiles over the lake's daily aggregates.

The lake's ``daily_user`` aggregates (``connectors/lake/daily.py``) sum each user's workouts per
day and sport; a user's region is the one their newest ``workout.recorded`` carried. Sex and age
group are not in the lake (nor in Arena's profile): the cohort is the region alone, and the
answer says so (docs/training.md).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb

from connectors.lake.daily import AGGREGATES
from connectors.lake.query import WORKOUT_TYPE, Lake, live_files

__all__ = ["MISSING", "peers"]

MISSING = ("sex", "age_group")  # cohort keys the lake does not hold


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def peers(root: Path | str, user_id: str, first: date, last: date) -> dict:
    """Where ``user_id``'s moving time, distance and workouts from ``first`` to ``last`` (days the
    aggregates cover) rank among the athletes of their region who trained then: percentiles (the
    share of the cohort the athlete is above, 0–100) and the cohort's size."""
    root = Path(root)
    empty = {"region": None, "cohort": 0, "missing": list(MISSING), "percentiles": None, "mine": None}
    folders = [root / AGGREGATES / "daily_user" / f"day={(first + timedelta(d)).isoformat()}" / "part-0.parquet"
               for d in range((last - first).days + 1)]  # fmt: skip
    files = [f for f in folders if f.is_file()]
    if not files or WORKOUT_TYPE not in live_files(root, "events"):
        return empty
    with Lake(root, threads=1) as lake:
        region = lake.sql(
            'SELECT arg_max(region, "at") FROM workouts WHERE user_id = ? AND region IS NOT NULL', [user_id]
        ).fetchall()[0]
        if region[0] is None:
            return empty
        try:
            row = lake.sql(
                f"""
                WITH home AS (
                    SELECT user_id, arg_max(region, "at") AS region FROM workouts
                    WHERE region IS NOT NULL GROUP BY user_id
                ), totals AS (
                    SELECT d.user_id, sum(d.elapsed_s) AS seconds, sum(d.distance_m) AS metres,
                           sum(d.workouts) AS workouts
                    FROM read_parquet([{", ".join(_quoted(f) for f in files)}]) d
                    JOIN home h ON h.user_id = d.user_id AND h.region = $region
                    GROUP BY d.user_id
                ), me AS (SELECT * FROM totals WHERE user_id = $user)
                SELECT count(*),
                       100.0 * count(*) FILTER (WHERE seconds < (SELECT seconds FROM me)) / count(*),
                       100.0 * count(*) FILTER (WHERE metres < (SELECT metres FROM me)) / count(*),
                       100.0 * count(*) FILTER (WHERE workouts < (SELECT workouts FROM me)) / count(*),
                       (SELECT seconds FROM me), (SELECT metres FROM me), (SELECT workouts FROM me)
                FROM totals
                """,
                {"region": region[0], "user": user_id},
            ).fetchall()[0]
        except duckdb.Error:  # aggregates written by an older layout: no answer rather than a failure
            return {**empty, "region": region[0]}
    cohort, seconds, metres, workouts, my_s, my_m, my_n = row
    if my_s is None:
        return {**empty, "region": region[0], "cohort": int(cohort)}
    return {
        "region": region[0],
        "cohort": int(cohort),
        "missing": list(MISSING),
        "percentiles": {"moving_s": seconds, "distance_m": metres, "workouts": workouts},
        "mine": {"moving_s": my_s, "distance_m": my_m, "workouts": int(my_n)},
    }
