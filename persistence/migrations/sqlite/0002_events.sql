-- The outbox (engine.events): every domain event, written in the transaction that journals its
-- cause. position is the consumers' place in the stream: SQLite has one writer at a time, so
-- positions grow in commit order. A source's events are unique by (seq, idx).
CREATE TABLE events (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    source_kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    at REAL NOT NULL,
    user_id TEXT,
    body BLOB NOT NULL,
    UNIQUE (source_kind, source_id, seq, idx)
) STRICT;

-- A subscription reads the events of its types after its position.
CREATE INDEX events_by_type ON events (type, position);
-- Erasure finds every event about a user.
CREATE INDEX events_by_user ON events (user_id) WHERE user_id IS NOT NULL;

-- Each consumer's durable place in the outbox: everything at or before it is done.
CREATE TABLE event_cursors (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    updated_at REAL NOT NULL
) STRICT, WITHOUT ROWID;

-- Deliveries that failed for good: the event (a copy, so pruning the outbox keeps it), the
-- subscription and the target, and why, for an operator to read and replay.
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription TEXT NOT NULL,
    target TEXT NOT NULL,
    position INTEGER NOT NULL,
    event BLOB NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at REAL NOT NULL
) STRICT;
CREATE INDEX dead_letters_by_subscription ON dead_letters (subscription, id);
