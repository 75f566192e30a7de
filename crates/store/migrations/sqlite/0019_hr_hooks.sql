-- HR systems deliver lifecycle events to /hooks/hr/{tenant} (issue 6): the
-- deliveries table accepts the new source. SQLite cannot change a CHECK in
-- place, so the table is rebuilt (nothing references it).

CREATE TABLE hook_deliveries_new (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    source      TEXT NOT NULL CHECK (source IN ('connectwise', 'autotask', 'halopsa', 'generic', 'hr')),
    received_at TEXT NOT NULL,
    outcome     TEXT NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'bad_signature', 'malformed', 'ignored', 'failed')),
    reason      TEXT,
    event_id    TEXT REFERENCES inbox_events (id),
    body_sha256 TEXT NOT NULL CHECK (length(body_sha256) = 64)
) STRICT;

INSERT INTO hook_deliveries_new (id, tenant_id, source, received_at, outcome, reason, event_id, body_sha256)
    SELECT id, tenant_id, source, received_at, outcome, reason, event_id, body_sha256 FROM hook_deliveries;
DROP TABLE hook_deliveries;
ALTER TABLE hook_deliveries_new RENAME TO hook_deliveries;
CREATE INDEX hook_deliveries_tenant ON hook_deliveries (tenant_id, id);
