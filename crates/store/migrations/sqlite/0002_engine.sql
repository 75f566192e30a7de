-- The workflow engine: the inbox of inbound events, workflow instances, their
-- step journal and their append-only history.
--
-- The store writes every timestamp of these tables as fixed-width UTC text,
-- `YYYY-MM-DDTHH:MM:SS.ffffffZ`, so that comparing and sorting them as text
-- (`next_run_at <= $now`, `ORDER BY next_run_at`) is comparing and sorting
-- instants. JSON values are stored as text, as on PostgreSQL.

CREATE TABLE inbox_events (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT REFERENCES tenants (id),
    source      TEXT NOT NULL,
    type        TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    payload     TEXT NOT NULL,
    received_at TEXT NOT NULL,
    -- What routing did; NULL until the event is routed.
    outcome     TEXT,
    UNIQUE (source, dedup_key)
) STRICT;

-- Events stored but not routed yet: few, and looked for after every restart.
CREATE INDEX inbox_events_unrouted ON inbox_events (id) WHERE outcome IS NULL;

CREATE TABLE workflow_instances (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT REFERENCES tenants (id),
    template         TEXT NOT NULL,
    template_version INTEGER NOT NULL CHECK (template_version >= 0),
    definition       TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('running', 'waiting', 'completed', 'compensating', 'compensated', 'parked', 'cancelled')),
    context          TEXT NOT NULL,
    started_by       TEXT REFERENCES inbox_events (id),
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    next_run_at      TEXT,
    version          INTEGER NOT NULL CHECK (version >= 1)
) STRICT;

-- The engine's timer wheel: only instances that can be due are indexed.
CREATE INDEX workflow_instances_due ON workflow_instances (next_run_at, id)
    WHERE state IN ('running', 'compensating') AND next_run_at IS NOT NULL;
CREATE INDEX workflow_instances_tenant ON workflow_instances (tenant_id, id);

CREATE TABLE workflow_steps (
    instance_id     TEXT NOT NULL REFERENCES workflow_instances (id),
    step_id         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'retrying', 'awaiting_approval', 'awaiting_human', 'succeeded', 'failed', 'compensating', 'compensated', 'skipped')),
    attempts        INTEGER NOT NULL CHECK (attempts >= 0),
    idempotency_key TEXT NOT NULL,
    output          TEXT,
    error           TEXT,
    next_attempt_at TEXT,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (instance_id, step_id)
) STRICT;

-- Append-only: the store only ever inserts, and a repeated (instance, seq) fails.
CREATE TABLE workflow_history (
    instance_id TEXT NOT NULL REFERENCES workflow_instances (id),
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    step_id     TEXT,
    actor       TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
) STRICT;
