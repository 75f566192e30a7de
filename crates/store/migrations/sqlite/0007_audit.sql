-- The audit log (docs/audit.md, "Storage"): an outbox written in the same
-- transaction as each change, and per log (one per tenant, plus `system`)
-- the sequenced entries, the completed perfect subtrees of its Merkle tree,
-- its append cursor and its checkpoints.
--
-- Timestamps are fixed-width UTC text, as in 0002. Hashes are lowercase hex
-- text, the same on both back ends.

-- Records waiting for the sequencer, oldest first. No foreign key to
-- tenants: a record outlives what it is about.
CREATE TABLE audit_outbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    log       TEXT NOT NULL CHECK (length(log) > 0),
    at        TEXT NOT NULL,
    tenant_id TEXT,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL
) STRICT;

-- The append cursor of each log: the sequencer appends with a
-- compare-and-set on `size`.
CREATE TABLE audit_logs (
    log  TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0)
) STRICT;

-- The entries in index order; `leaf` is the RFC 8785 canonical JSON.
CREATE TABLE audit_entries (
    log       TEXT NOT NULL REFERENCES audit_logs (log),
    idx       INTEGER NOT NULL CHECK (idx >= 0),
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    leaf      TEXT NOT NULL,
    leaf_hash TEXT NOT NULL CHECK (length(leaf_hash) = 64),
    PRIMARY KEY (log, idx)
) STRICT;

-- Every completed perfect subtree: level 0 is the leaf hashes.
CREATE TABLE audit_nodes (
    log   TEXT NOT NULL REFERENCES audit_logs (log),
    level INTEGER NOT NULL CHECK (level >= 0 AND level < 64),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  TEXT NOT NULL CHECK (length(hash) = 64),
    PRIMARY KEY (log, level, idx)
) STRICT;

CREATE TABLE audit_checkpoints (
    log        TEXT NOT NULL REFERENCES audit_logs (log),
    size       INTEGER NOT NULL CHECK (size >= 0),
    note       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (log, size)
) STRICT;
