-- Gates: approvals of L2 steps with their decisions, and human tasks of L3 steps.
--
-- Timestamps are fixed-width UTC text, as in 0002, so `deadline <= $now`
-- compares instants. JSON values are stored as text.

CREATE TABLE approvals (
    id             TEXT PRIMARY KEY,
    instance_id    TEXT NOT NULL REFERENCES workflow_instances (id),
    step_id        TEXT NOT NULL,
    tenant_id      TEXT REFERENCES tenants (id),
    state          TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'cancelled')),
    plan           TEXT NOT NULL,
    required       INTEGER NOT NULL CHECK (required >= 1),
    approver_role  TEXT NOT NULL CHECK (approver_role IN ('admin', 'lead', 'technician')),
    -- Who started the workflow and who prepared the plan (operator ids or
    -- `system`): neither may decide (separation of duties, enforced by the
    -- store's guarded insert of a decision).
    initiated_by   TEXT NOT NULL CHECK (length(initiated_by) > 0),
    prepared_by    TEXT NOT NULL CHECK (length(prepared_by) > 0),
    deadline       TEXT,
    -- Auditors change nothing, so they neither approve nor are escalated to.
    escalate_to    TEXT CHECK (escalate_to IN ('admin', 'lead', 'technician')),
    escalated_at   TEXT,
    created_at     TEXT NOT NULL,
    decided_at     TEXT,
    -- Decisions recorded so far: each decision is stored only if the count
    -- is the one its author saw, so two concurrent deciders cannot both be first.
    decision_count INTEGER NOT NULL DEFAULT 0 CHECK (decision_count >= 0),
    UNIQUE (instance_id, step_id),
    CHECK ((state = 'pending') = (decided_at IS NULL)),
    CHECK (escalate_to IS NULL OR deadline IS NOT NULL)
) STRICT;

-- The escalation sweep: only approvals that can become overdue are indexed.
CREATE INDEX approvals_overdue ON approvals (deadline, id)
    WHERE state = 'pending' AND deadline IS NOT NULL AND escalated_at IS NULL;
-- Pending (or any state's) approvals, of a tenant or of all.
CREATE INDEX approvals_tenant ON approvals (tenant_id, state, id);
CREATE INDEX approvals_state ON approvals (state, id);

CREATE TABLE approval_decisions (
    approval_id     TEXT NOT NULL REFERENCES approvals (id),
    operator_id     TEXT NOT NULL REFERENCES operators (id),
    -- Position among the approval's decisions, from 1.
    seq             INTEGER NOT NULL CHECK (seq >= 1),
    verdict         TEXT NOT NULL CHECK (verdict IN ('approve', 'reject', 'modify')),
    reason          TEXT NOT NULL CHECK (length(reason) > 0 AND length(reason) <= 2000),
    modified_params TEXT,
    at              TEXT NOT NULL,
    -- One decision per person per approval.
    PRIMARY KEY (approval_id, operator_id),
    UNIQUE (approval_id, seq),
    CHECK ((verdict = 'modify') = (modified_params IS NOT NULL))
) STRICT;

CREATE TABLE human_tasks (
    id               TEXT PRIMARY KEY,
    instance_id      TEXT NOT NULL REFERENCES workflow_instances (id),
    step_id          TEXT NOT NULL,
    tenant_id        TEXT REFERENCES tenants (id),
    state            TEXT NOT NULL CHECK (state IN ('open', 'done', 'cancelled')),
    decision_support TEXT NOT NULL,
    outcome          TEXT,
    evidence         TEXT,
    completed_by     TEXT REFERENCES operators (id),
    created_at       TEXT NOT NULL,
    completed_at     TEXT,
    UNIQUE (instance_id, step_id),
    CHECK ((state = 'open') = (completed_at IS NULL)),
    CHECK (state <> 'done' OR (outcome IS NOT NULL AND completed_by IS NOT NULL))
) STRICT;

CREATE INDEX human_tasks_tenant ON human_tasks (tenant_id, state, id);
CREATE INDEX human_tasks_state ON human_tasks (state, id);
