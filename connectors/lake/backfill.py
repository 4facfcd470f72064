"""Back-fill badges from the lake: a rule added later looks at the history the athletes already have.

A Ray task reads, with DuckDB over the lake's live files, the events a badge rule looks at
(``workout.recorded``, ``race.result``, and the types the rules name, such as
``challenge.completed``) for a page of users, and turns each row back into the item a live
reaction would have seen. Each user's items then go, oldest first, in one message to the user's
``achievements`` entity (``Achievements.backfill``), which replays them into the rules and awards
what is earned and not yet awarded. Running it again, or over events the live reactions already
counted, awards nothing twice: the entity keeps its badges, and the rules' state is made of sets.
Memory holds one page of users' histories at a time (``PAGE`` users).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors.lake.query import Lake
from engine.gamification import badges

__all__ = ["PAGE", "backfill", "histories", "prefixed", "quoted", "row_value", "users_in"]

PAGE = 1_000  # users whose histories one task reads

Ask = Callable[[str, str, str, dict], Awaitable[Any]]

_WORKOUT_TYPE, _RESULT_TYPE = "workout.recorded", "race.result"
_SUMMARY = ("id", "sport", "start", "distance_m", "moving_s", "elapsed_s", "elevation_gain_m", "avg_hr", "max_hr",
            "avg_power", "source", "best_efforts")  # fmt: skip
_RESULT = ("status", "place", "flags", "provisional", "distance_m", "finish_s", "name")
_META = frozenset({"position", "event_id", "source_kind", "source_id", "seq", "idx", "version", "at", "user_id",
                   "type", "day"})  # fmt: skip


def row_value(value: Any) -> Any:
    """A flattened field back as the event held it: JSON text (lists, deeper maps) decoded, an
    instant as unix seconds, anything else msgpack cannot carry as text."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if value is None or isinstance(value, bool | int | float | str | bytes | list | dict):
        return value
    if isinstance(value, datetime):
        return value.timestamp()
    return str(value)


def prefixed(row: dict, prefix: str, names: Iterable[str]) -> dict:
    return {name: row_value(row.get(f"{prefix}_{name}")) for name in names}


def _item(event_type: str, row: dict) -> dict | None:
    """The item ``Achievements.backfill`` takes, made of one lake row (None: not an item)."""
    at = row_value(row.get("at"))
    if not isinstance(at, int | float) or not math.isfinite(at):
        return None
    if event_type == _WORKOUT_TYPE:
        summary = prefixed(row, "summary", _SUMMARY)
        if summary["source"] == "race":  # its race's result carries it
            return None
        return {"on": badges.WORKOUT, "at": at, "summary": summary}
    if event_type == _RESULT_TYPE:
        return {"on": badges.RACE_RESULT, "at": at, "race_id": row.get("race_id"),
                "result": prefixed(row, "result", _RESULT), "summary": prefixed(row, "summary", _SUMMARY)}  # fmt: skip
    # The lake names a field that clashes with its metadata with a "_" after it (race.result's user_id_).
    fields = {
        name[:-1] if name.endswith("_") and name[:-1] in _META else name: row_value(value)
        for name, value in row.items()
        if name not in _META
    }
    return {"on": event_type, "id": row.get("event_id"), "at": at, "fields": fields}


def _event_types(rules: Iterable[badges.Rule]) -> list[str]:
    types = set()
    for rule in rules:
        if rule.on == badges.WORKOUT:
            types |= {_WORKOUT_TYPE, _RESULT_TYPE}  # a race's workout comes with its result
        elif rule.on == badges.RACE_RESULT:
            types.add(_RESULT_TYPE)
        else:
            types.add(rule.on)
    return sorted(types)


def users_in(root: Path | str, event_types: list[str]) -> list[str]:
    """Everybody with an event of these types in the lake, in order."""
    with Lake(root) as lake:
        present = [t for t in event_types if t in lake.tables]
        if not present:
            return []
        union = " UNION ".join(f"SELECT DISTINCT user_id FROM {quoted(t)} WHERE user_id IS NOT NULL" for t in present)
        return [row[0] for row in lake.sql(f"SELECT user_id FROM ({union}) ORDER BY 1").fetchall()]


def histories(root: Path | str, event_types: list[str], users: list[str]) -> list[tuple[str, list[dict]]]:
    """Each of ``users``' history items of these types, in outbox order (the ones with none left out)."""
    found: dict[str, list[tuple[int, dict]]] = {}
    with Lake(root) as lake:
        for event_type in event_types:
            if event_type not in lake.tables:
                continue
            relation = lake.sql(f"SELECT * FROM {quoted(event_type)} WHERE list_contains(?, user_id)", [users])
            names = relation.columns
            for values in relation.fetchall():
                row = dict(zip(names, values, strict=True))
                item = _item(event_type, row)
                if item is not None:
                    found.setdefault(row["user_id"], []).append((row.get("position") or 0, item))
    return [(user, [item for _, item in sorted(found[user], key=lambda p: p[0])]) for user in users if user in found]


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def backfill(
    root: Path | str, ask: Ask, rules: list[str] | None = None, users: Iterable[str] | None = None
) -> dict:
    """Replay the lake's history of ``users`` (all by default) into ``rules`` (all by default) and
    award what is missing: ``{"users": n, "awarded": {rule: count}}``. Ray must be initialised."""
    import ray

    chosen = [badges.rule(name) for name in rules] if rules is not None else list(badges.RULES)
    event_types = _event_types(chosen)
    read = ray.remote(num_cpus=1, max_retries=3)(histories)  # reading again changes nothing
    if users is None:
        everyone = await ray.remote(num_cpus=1, max_retries=3)(users_in).remote(str(root), event_types)
    else:
        everyone = sorted(set(users))
    awarded: dict[str, int] = {}
    done = 0
    for start in range(0, len(everyone), PAGE):
        for user, items in await read.remote(str(root), event_types, everyone[start : start + PAGE]):
            answer = await ask("achievements", user, "backfill", {"history": items, "rules": [r.id for r in chosen]})
            for rule_id in answer["awarded"]:
                awarded[rule_id] = awarded.get(rule_id, 0) + 1
            done += 1
    return {"users": done, "awarded": awarded}
