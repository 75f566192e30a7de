-- Client onboarding: what Gatehouse records beside the workflow instance of
-- the onboarding template (which stays the source of truth for stages and
-- steps): the onboarding's tenant and owner, its documentation checklist,
-- the tenant's PSA links and SLA clocks.
--
-- People's addresses and handed-over files are sealed under the tenant's
-- data key (BLOB columns ending in `_sealed`). Every table hangs off the
-- tenant's key, so deleting the tenant (crypto-shredding) removes its rows.
-- Timestamps are TIMESTAMPTZ.

CREATE TABLE onboardings (
    instance_id  TEXT PRIMARY KEY REFERENCES workflow_instances (id),
    -- NULL until `tenant.create` made the tenant.
    tenant_id    TEXT REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    slug         TEXT NOT NULL,
    owner_sealed BYTEA,
    started_at   TIMESTAMPTZ NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    go_live_at   TIMESTAMPTZ
);

CREATE INDEX onboardings_tenant ON onboardings (tenant_id, instance_id);
CREATE INDEX onboardings_live ON onboardings (go_live_at) WHERE go_live_at IS NOT NULL;

CREATE TABLE checklist_items (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    instance_id         TEXT NOT NULL REFERENCES workflow_instances (id),
    step_id             TEXT NOT NULL,
    item_key            TEXT NOT NULL,
    title               TEXT NOT NULL CHECK (length(title) > 0),
    kind                TEXT NOT NULL CHECK (kind IN ('file', 'secret', 'confirmation')),
    owner_sealed        BYTEA,
    due_at              TIMESTAMPTZ NOT NULL,
    state               TEXT NOT NULL CHECK (state IN ('requested', 'received', 'waived', 'cancelled')),
    created_at          TIMESTAMPTZ NOT NULL,
    decided_by          TEXT,
    decided_at          TIMESTAMPTZ,
    note                TEXT CHECK (length(note) <= 2000),
    secret_name         TEXT,
    file_name_sealed    BYTEA,
    file_content_type   TEXT,
    file_size           BIGINT CHECK (file_size >= 0),
    file_sealed         BYTEA,
    reminded_at         TIMESTAMPTZ,
    overdue_notified_at TIMESTAMPTZ,
    UNIQUE (instance_id, item_key),
    CHECK ((state = 'requested') = (decided_at IS NULL)),
    CHECK ((file_sealed IS NULL) = (file_size IS NULL))
);

CREATE INDEX checklist_items_tenant ON checklist_items (tenant_id, instance_id, item_key);
-- The reminder sweep reads requested items by due date only.
CREATE INDEX checklist_items_due ON checklist_items (due_at) WHERE state = 'requested';

CREATE TABLE tenant_psa_links (
    tenant_id   TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    psa         TEXT NOT NULL CHECK (length(psa) > 0),
    company_id  TEXT NOT NULL CHECK (length(company_id) > 0),
    instance_id TEXT,
    linked_at   TIMESTAMPTZ NOT NULL,
    unlinked_at TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, psa, company_id)
);

CREATE TABLE tenant_sla_clocks (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    instance_id TEXT,
    contract    TEXT NOT NULL CHECK (length(contract) > 0),
    started_at  TIMESTAMPTZ NOT NULL,
    stopped_at  TIMESTAMPTZ
);

CREATE INDEX tenant_sla_clocks_tenant ON tenant_sla_clocks (tenant_id, id);
