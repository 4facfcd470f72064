"""Durable storage for Arena: the ``engine.store.Store`` protocol on SQLite and PostgreSQL.

Beside it, the Redis adapters of engine/'s other protocols (``redis_*.py``), which serve/ wires."""

from __future__ import annotations

from engine.store import Store
from persistence.postgresql import PostgresStore
from persistence.sqlite import SQLiteStore

__all__ = ["open_store", "PostgresStore", "SQLiteStore"]

_ACCEPTED = "sqlite:///relative/path.db, sqlite:////absolute/path.db or postgresql://user@host:port/database"


def open_store(url: str) -> Store:
    """The store ``url`` names, not yet opened: the caller awaits ``open()``."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError(f"a store URL needs a scheme; use {_ACCEPTED}")
    if scheme == "sqlite":
        # sqlite:///a.db is the relative path a.db; sqlite:////a.db the absolute /a.db.
        if not rest.startswith("/") or rest == "/":
            raise ValueError(f"a SQLite URL names a file after three slashes; use {_ACCEPTED}")
        return SQLiteStore(rest[1:])
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    # The scheme only: the rest of the URL may hold a password.
    raise ValueError(f"unsupported store URL scheme {scheme!r}; use {_ACCEPTED}")
