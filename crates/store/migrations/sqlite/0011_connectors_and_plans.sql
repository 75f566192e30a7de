-- Connector instances of a tenant, and approvals that can be superseded.
--
-- 1. `connectors`: the systems a tenant's actions reach (its PSA, RMM,
--    Microsoft 365 tenant, documentation platform, SCIM apps). Settings are
--    non-secret configuration (company id, client id, region, customer
--    tenant id); the credentials stay in `tenant_secrets`, sealed under the
--    tenant's key, and a connector only names them (`secrets`: a JSON
--    object from role, such as `client_secret`, to secret name).
--
-- 2. Approvals: a step approved on a plan whose target changed before it
--    ran is asked again with a new approval; the old one stays approved and
--    the history says it was superseded. So a step may have several
--    approvals, but at most one pending. SQLite cannot drop a table
--    constraint, so the table is rebuilt (decisions reference it by id; the
--    foreign-key check is deferred to the end of this migration's
--    transaction, when the ids exist again).

CREATE TABLE connectors (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    kind        TEXT NOT NULL CHECK (kind IN ('connectwise', 'autotask', 'halopsa', 'ninjaone',
                                              'dattormm', 'graph', 'itglue', 'hudu', 'scim')),
    base_url    TEXT NOT NULL CHECK (length(base_url) > 0),
    settings    TEXT NOT NULL,
    secrets     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    -- Incremented on every change.
    version     INTEGER NOT NULL CHECK (version >= 1),
    UNIQUE (tenant_id, name)
) STRICT;

-- Resolution: a tenant's connector of a kind.
CREATE INDEX connectors_kind ON connectors (tenant_id, kind, name);

PRAGMA defer_foreign_keys = ON;

CREATE TABLE approvals_0011 (
    id             TEXT PRIMARY KEY,
    instance_id    TEXT NOT NULL REFERENCES workflow_instances (id),
    step_id        TEXT NOT NULL,
    tenant_id      TEXT REFERENCES tenants (id),
    state          TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'cancelled')),
    plan           TEXT NOT NULL,
    required       INTEGER NOT NULL CHECK (required >= 1),
    approver_role  TEXT NOT NULL CHECK (approver_role IN ('admin', 'lead', 'technician')),
    initiated_by   TEXT NOT NULL CHECK (length(initiated_by) > 0),
    prepared_by    TEXT NOT NULL CHECK (length(prepared_by) > 0),
    deadline       TEXT,
    escalate_to    TEXT CHECK (escalate_to IN ('admin', 'lead', 'technician')),
    escalated_at   TEXT,
    created_at     TEXT NOT NULL,
    decided_at     TEXT,
    decision_count INTEGER NOT NULL DEFAULT 0 CHECK (decision_count >= 0),
    CHECK ((state = 'pending') = (decided_at IS NULL)),
    CHECK (escalate_to IS NULL OR deadline IS NOT NULL)
) STRICT;

INSERT INTO approvals_0011 (id, instance_id, step_id, tenant_id, state, plan, required, approver_role,
                            initiated_by, prepared_by, deadline, escalate_to, escalated_at, created_at,
                            decided_at, decision_count)
SELECT id, instance_id, step_id, tenant_id, state, plan, required, approver_role,
       initiated_by, prepared_by, deadline, escalate_to, escalated_at, created_at,
       decided_at, decision_count
FROM approvals;

DROP TABLE approvals;
ALTER TABLE approvals_0011 RENAME TO approvals;

CREATE INDEX approvals_overdue ON approvals (deadline, id)
    WHERE state = 'pending' AND deadline IS NOT NULL AND escalated_at IS NULL;
CREATE INDEX approvals_tenant ON approvals (tenant_id, state, id);
CREATE INDEX approvals_state ON approvals (state, id);
-- A step's approvals (its history of plans), and at most one pending.
CREATE INDEX approvals_step ON approvals (instance_id, step_id);
CREATE UNIQUE INDEX approvals_one_pending ON approvals (instance_id, step_id)
    WHERE state = 'pending';
