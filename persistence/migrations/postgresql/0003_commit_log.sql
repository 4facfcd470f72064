-- SQLite's 0003 adds the commit log: there a batch across many entities costs a random-key row
-- per entity, and one log row folded later is cheaper. PostgreSQL takes those rows in one
-- multi-row insert at about the rate SQLite reaches with the log (docs/benchmarks.md), so its
-- journal keeps taking segments directly; this migration only keeps the two schemas' versions
-- in step and says so on the table.
COMMENT ON TABLE journal IS 'segments: one row per run of consecutive seqs of an entity in one append (no commit log: see migrations/sqlite/0003_commit_log.sql)';
