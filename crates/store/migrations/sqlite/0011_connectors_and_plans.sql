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
--    constraint, so the table is rebuilt, and its decisions with it (they
--    reference it), inside this migration's transaction.

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

-- The decisions move with them (as in 0003), so that no row ever points
-- at a dropped table.
CREATE TABLE approval_decisions_0011 (
    approval_id     TEXT NOT NULL REFERENCES approvals_0011 (id),
    operator_id     TEXT NOT NULL REFERENCES operators (id),
    seq             INTEGER NOT NULL CHECK (seq >= 1),
    verdict         TEXT NOT NULL CHECK (verdict IN ('approve', 'reject', 'modify')),
    reason          TEXT NOT NULL CHECK (length(reason) > 0 AND length(reason) <= 2000),
    modified_params TEXT,
    at              TEXT NOT NULL,
    PRIMARY KEY (approval_id, operator_id),
    UNIQUE (approval_id, seq),
    CHECK ((verdict = 'modify') = (modified_params IS NOT NULL))
) STRICT;

INSERT INTO approval_decisions_0011 (approval_id, operator_id, seq, verdict, reason, modified_params, at)
SELECT approval_id, operator_id, seq, verdict, reason, modified_params, at
FROM approval_decisions;

DROP TABLE approval_decisions;
DROP TABLE approvals;
-- Renaming rewrites the decisions' reference to the new name.
ALTER TABLE approvals_0011 RENAME TO approvals;
ALTER TABLE approval_decisions_0011 RENAME TO approval_decisions;

CREATE INDEX approvals_overdue ON approvals (deadline, id)
    WHERE state = 'pending' AND deadline IS NOT NULL AND escalated_at IS NULL;
CREATE INDEX approvals_tenant ON approvals (tenant_id, state, id);
CREATE INDEX approvals_state ON approvals (state, id);
-- A step's approvals (its history of plans), and at most one pending.
CREATE INDEX approvals_step ON approvals (instance_id, step_id);
CREATE UNIQUE INDEX approvals_one_pending ON approvals (instance_id, step_id)
    WHERE state = 'pending';
