-- Inbound webhooks: every delivery attempt to /hooks/{source}/{tenant}
-- (never the body: its SHA-256 only), and the watermarks of the pollers
-- that stand in for webhooks a PSA cannot send (Autotask opportunities).

CREATE TABLE hook_deliveries (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    source      TEXT NOT NULL CHECK (source IN ('connectwise', 'autotask', 'halopsa', 'generic')),
    received_at TIMESTAMPTZ NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'bad_signature', 'malformed', 'ignored', 'failed')),
    reason      TEXT,
    event_id    TEXT REFERENCES inbox_events (id),
    body_sha256 TEXT NOT NULL CHECK (length(body_sha256) = 64)
);

-- One tenant's deliveries, newest first (ids are time-ordered).
CREATE INDEX hook_deliveries_tenant ON hook_deliveries (tenant_id, id);

CREATE TABLE intake_watermarks (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    name       TEXT NOT NULL CHECK (length(name) > 0),
    at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
