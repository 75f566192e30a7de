-- The notification outbox: review requests of L1 steps, queued in the same
-- transaction as the step's success and delivered afterwards by the
-- dispatcher (webhook, e-mail), at least once.
--
-- JSON values are stored as TEXT (serialised by the store), as on SQLite, so
-- that both back ends run the same SQL.

CREATE TABLE notifications (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT REFERENCES tenants (id),
    instance_id     TEXT NOT NULL REFERENCES workflow_instances (id),
    step_id         TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (length(kind) > 0),
    -- NULL: the configured default reviewer, resolved when sent.
    recipient       TEXT,
    subject         TEXT NOT NULL,
    detail          TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    attempts        BIGINT NOT NULL CHECK (attempts >= 0),
    next_attempt_at TIMESTAMPTZ,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    last_error      TEXT,
    delivered_at    TIMESTAMPTZ,
    CHECK ((state = 'pending') = (next_attempt_at IS NOT NULL)),
    CHECK ((state = 'delivered') = (delivered_at IS NOT NULL))
);

-- The dispatcher's queue: only pending notifications are indexed.
CREATE INDEX notifications_due ON notifications (next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX notifications_instance ON notifications (instance_id, id);
CREATE INDEX notifications_tenant ON notifications (tenant_id, state, id);
