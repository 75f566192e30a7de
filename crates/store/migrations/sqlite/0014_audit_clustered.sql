-- The audit log's entries and nodes stored in their primary key's order
-- (docs/audit.md, "Storage"; docs/benchmarks.md, "bench audit").
--
-- In 0007 both tables were rowid tables with a separate primary-key index:
-- each appended entry wrote two b-trees before the browsing indexes, each
-- node two, and verification (a range of one log's indexes) looked every
-- row up twice, once in the `(log, idx)` index and once in the table.
-- As WITHOUT ROWID tables the rows live in the primary key's b-tree: one
-- b-tree less per entry and per node, and a log's entries are read in one
-- ordered scan. The columns, constraints and browsing indexes are those of
-- 0007 and 0009; the rows are copied as they are (the same bytes, so every
-- leaf hash, proof and checkpoint still verifies).

CREATE TABLE audit_entries_clustered (
    log       TEXT NOT NULL REFERENCES audit_logs (log),
    idx       INTEGER NOT NULL CHECK (idx >= 0),
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    leaf      TEXT NOT NULL,
    leaf_hash TEXT NOT NULL CHECK (length(leaf_hash) = 64),
    PRIMARY KEY (log, idx)
) STRICT, WITHOUT ROWID;

INSERT INTO audit_entries_clustered (log, idx, at, actor, action, subject, leaf, leaf_hash)
    SELECT log, idx, at, actor, action, subject, leaf, leaf_hash
    FROM audit_entries ORDER BY log, idx;

DROP TABLE audit_entries;
ALTER TABLE audit_entries_clustered RENAME TO audit_entries;

CREATE INDEX audit_entries_by_time ON audit_entries (at, log, idx);
CREATE INDEX audit_entries_by_log_time ON audit_entries (log, at, idx);
CREATE INDEX audit_entries_by_actor ON audit_entries (actor, at, log, idx);
CREATE INDEX audit_entries_by_action ON audit_entries (action, at, log, idx);

CREATE TABLE audit_nodes_clustered (
    log   TEXT NOT NULL REFERENCES audit_logs (log),
    level INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  TEXT NOT NULL CHECK (length(hash) = 64),
    PRIMARY KEY (log, level, idx)
) STRICT, WITHOUT ROWID;

INSERT INTO audit_nodes_clustered (log, level, idx, hash)
    SELECT log, level, idx, hash FROM audit_nodes ORDER BY log, level, idx;

DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_clustered RENAME TO audit_nodes;
