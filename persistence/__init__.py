"""Durable storage for Arena: the ``engine.store.Store`` protocol on SQLite and PostgreSQL.

Beside it, the Redis adapters of engine/'s other protocols (``redis_*.py``), which serve/ wires."""

from __future__ import annotations

from engine.store import Store
from persistence.postgresql import PostgresStore
from persistence.sqlite import SQLiteStore

__all__ = ["open_store", "PostgresStore", "SQLiteStore"]

_ACCEPTED = "sqlite:///relative/path.db, sqlite:////absolute/path.db or postgresql://user@host:port/database"
_COMMIT_LOG = ("auto", "on", "off")


def open_store(url: str) -> Store:
    """The store ``url`` names, not yet opened: the caller awaits ``open()``."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError(f"a store URL needs a scheme; use {_ACCEPTED}")
    if scheme == "sqlite":
        # sqlite:///a.db is the relative path a.db; sqlite:////a.db the absolute /a.db.
        path, _, query = rest.partition("?")
        if not path.startswith("/") or path == "/":
            raise ValueError(f"a SQLite URL names a file after three slashes; use {_ACCEPTED}")
        commit_log = "auto"
        for option in filter(None, query.split("&")):  # ?commit_log=off: every batch straight into the journal
            name, _, value = option.partition("=")
            if name != "commit_log" or value not in _COMMIT_LOG:
                raise ValueError(f"unknown SQLite URL option {option!r}; the one option is commit_log=auto|on|off")
            commit_log = value
        return SQLiteStore(path[1:], commit_log=commit_log)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    # The scheme only: the rest of the URL may hold a password.
    raise ValueError(f"unsupported store URL scheme {scheme!r}; use {_ACCEPTED}")
