-- The audit log (docs/audit.md, "Storage"): an outbox written in the same
-- transaction as each change, and per log (one per tenant, plus `system`)
-- the sequenced entries, the completed perfect subtrees of its Merkle tree,
-- its append cursor and its checkpoints.
--
-- Hashes are lowercase hex
-- text, the same on both back ends; JSON is text, as on SQLite.

-- Records waiting for the sequencer, oldest first. No foreign key to
-- tenants: a record outlives what it is about.
CREATE TABLE audit_outbox (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    log       TEXT NOT NULL CHECK (length(log) > 0),
    at        TIMESTAMPTZ NOT NULL,
    tenant_id TEXT,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL
);

-- The append cursor of each log: the sequencer appends with a
-- compare-and-set on `size`.
CREATE TABLE audit_logs (
    log  TEXT PRIMARY KEY,
    size BIGINT NOT NULL CHECK (size >= 0)
);

-- The entries in index order; `leaf` is the RFC 8785 canonical JSON.
CREATE TABLE audit_entries (
    log       TEXT NOT NULL REFERENCES audit_logs (log),
    idx       BIGINT NOT NULL CHECK (idx >= 0),
    at        TIMESTAMPTZ NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    leaf      TEXT NOT NULL,
    leaf_hash TEXT NOT NULL CHECK (length(leaf_hash) = 64),
    PRIMARY KEY (log, idx)
);

-- Every completed perfect subtree: level 0 is the leaf hashes.
CREATE TABLE audit_nodes (
    log   TEXT NOT NULL REFERENCES audit_logs (log),
    level BIGINT NOT NULL CHECK (level >= 0 AND level < 64),
    idx   BIGINT NOT NULL CHECK (idx >= 0),
    hash  TEXT NOT NULL CHECK (length(hash) = 64),
    PRIMARY KEY (log, level, idx)
);

CREATE TABLE audit_checkpoints (
    log        TEXT NOT NULL REFERENCES audit_logs (log),
    size       BIGINT NOT NULL CHECK (size >= 0),
    note       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (log, size)
);
