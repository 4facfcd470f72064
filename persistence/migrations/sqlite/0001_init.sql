-- STRICT: a value of the wrong type is rejected, as PostgreSQL would, instead of stored.
-- WITHOUT ROWID: rows live in the primary-key b-tree, so an insert writes one tree, not two.

CREATE TABLE journal (
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_type TEXT NOT NULL,
    body BLOB NOT NULL,
    at REAL NOT NULL,
    schema_version INTEGER NOT NULL,
    PRIMARY KEY (kind, entity_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE snapshots (
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    state BLOB NOT NULL,
    taken_at REAL NOT NULL,
    schema_version INTEGER NOT NULL,
    PRIMARY KEY (kind, entity_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE reminders (
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    due REAL NOT NULL,
    PRIMARY KEY (kind, entity_id)
) STRICT, WITHOUT ROWID;
