"""Versioned schema migrations: SQL files ``migrations/<dialect>/NNNN_name.sql``.

Listing and choosing migrations is pure; each store applies them with its own
driver, one transaction per migration, and records each in ``schema_migrations``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal, get_args

__all__ = ["Dialect", "Migration", "SCHEMA_MIGRATIONS_DDL", "migrations", "pending"]

Dialect = Literal["sqlite", "postgresql"]

_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")

SCHEMA_MIGRATIONS_DDL: dict[Dialect, str] = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
    ),
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ),
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """Every migration shipped for ``dialect``, in version order."""
    if dialect not in get_args(Dialect):
        raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {', '.join(get_args(Dialect))}")
    found: dict[int, Migration] = {}
    for file in (resources.files(__package__) / "migrations" / dialect).iterdir():
        if not file.name.endswith(".sql"):
            continue
        # A misnamed file would otherwise be skipped silently and never applied.
        match = _FILE_NAME.fullmatch(file.name)
        if match is None:
            raise ValueError(f"migration file {dialect}/{file.name} is not named NNNN_name.sql")
        version = int(match[1])
        if version in found:
            raise ValueError(f"{dialect} has two migrations numbered {version:04d}")
        found[version] = Migration(version, match[2], file.read_text(encoding="utf-8"))
    return tuple(found[version] for version in sorted(found))


def pending(dialect: Dialect, applied: Iterable[int]) -> list[Migration]:
    """The migrations of ``dialect`` whose versions are not in ``applied``, in order."""
    done = set(applied)
    return [migration for migration in migrations(dialect) if migration.version not in done]
