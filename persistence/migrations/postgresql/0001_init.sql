-- One row per segment: a run of consecutive seqs of an entity written by one append.
-- entries is msgpack, [message_type, body, at, schema_version] for each seq from first_seq
-- to last_seq. The key ends in last_seq: reading after a seq and probing for an overlap
-- are both range scans from the first segment that ends at or after it.
CREATE TABLE journal (
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    entries BYTEA NOT NULL,
    PRIMARY KEY (kind, entity_id, last_seq)
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
