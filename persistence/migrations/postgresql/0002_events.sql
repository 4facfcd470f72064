-- The outbox (engine.events): every domain event, written in the transaction that journals its
-- cause. Writers take one advisory lock before they insert events and hold it to their commit,
-- so positions become visible in the order they were given: a consumer reading after a
-- position never skips a lower one that commits later.
CREATE TABLE events (
    position BIGSERIAL PRIMARY KEY,
    source_kind TEXT NOT NULL,
    source_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    idx INTEGER NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    user_id TEXT,
    body BYTEA NOT NULL,
    UNIQUE (source_kind, source_id, seq, idx)
);
CREATE INDEX events_by_type ON events (type, position);
CREATE INDEX events_by_user ON events (user_id) WHERE user_id IS NOT NULL;

CREATE TABLE event_cursors (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE dead_letters (
    id BIGSERIAL PRIMARY KEY,
    subscription TEXT NOT NULL,
    target TEXT NOT NULL,
    position BIGINT NOT NULL,
    event BYTEA NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failed_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX dead_letters_by_subscription ON dead_letters (subscription, id);
