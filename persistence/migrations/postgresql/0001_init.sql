CREATE TABLE journal (
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    message_type TEXT NOT NULL,
    body BYTEA NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    schema_version INTEGER NOT NULL,
    PRIMARY KEY (kind, entity_id, seq)
);

CREATE TABLE snapshots (
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    state BYTEA NOT NULL,
    taken_at DOUBLE PRECISION NOT NULL,
    schema_version INTEGER NOT NULL,
    PRIMARY KEY (kind, entity_id)
);

CREATE TABLE reminders (
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    due DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (kind, entity_id)
);
