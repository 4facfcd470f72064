-- SQLite's 0003 adds the commit log: there a batch across many entities costs a random-key row per
-- entity, and one log row folded later is cheaper. PostgreSQL's journal took one-entry segments at
-- 109,000-110,000 entries/s where SQLite's took 84,000-88,000 (docs/benchmarks.md, "Store appends
-- alone"), and it has no log yet: its journal keeps taking segments directly. This migration keeps
-- the two schemas' versions in step and says so on the table.
COMMENT ON TABLE journal IS 'segments: one row per run of consecutive seqs of an entity in one append (no commit log: see migrations/sqlite/0003_commit_log.sql)';
