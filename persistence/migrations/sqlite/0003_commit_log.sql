-- The commit log (docs/engine.md, "The commit log"): a group commit that spans many entities is
-- written as one row here, an append at the end of the rowid tree, instead of one random-key row
-- per entity in the journal. The store folds the log into journal segments in bulk (a fold joins
-- an entity's runs from many commits into one row) and before any read of the journal, so readers
-- see one journal. segments is msgpack: [kind, entity_id, first_seq, last_seq, entries] for each
-- segment of the commit, entries packed as in the journal.
CREATE TABLE journal_log (
    id INTEGER PRIMARY KEY,
    owner TEXT NOT NULL,
    segments BLOB NOT NULL
) STRICT;

-- Which store last wrote each entity. A store vouches from memory only for the entities it
-- claimed; one that writes an entity another store claimed folds the log, probes the journal
-- and takes the claim over, and bumps the generation, so that every store forgets what it
-- vouched for and checks again: two activations of one entity still conflict.
CREATE TABLE journal_claims (
    kind TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    PRIMARY KEY (kind, entity_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE journal_meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO journal_meta (name, value) VALUES ('claims_generation', 0);
