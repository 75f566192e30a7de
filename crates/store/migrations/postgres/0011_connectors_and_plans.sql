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
--    approvals, but at most one pending.

CREATE TABLE connectors (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
    kind        TEXT NOT NULL CHECK (kind IN ('connectwise', 'autotask', 'halopsa', 'ninjaone',
                                              'dattormm', 'graph', 'itglue', 'hudu', 'scim')),
    base_url    TEXT NOT NULL CHECK (length(base_url) > 0),
    settings    TEXT NOT NULL,
    secrets     TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    -- Incremented on every change.
    version     BIGINT NOT NULL CHECK (version >= 1),
    UNIQUE (tenant_id, name)
);

-- Resolution: a tenant's connector of a kind.
CREATE INDEX connectors_kind ON connectors (tenant_id, kind, name);

ALTER TABLE approvals DROP CONSTRAINT approvals_instance_id_step_id_key;
-- A step's approvals (its history of plans), and at most one pending.
CREATE INDEX approvals_step ON approvals (instance_id, step_id);
CREATE UNIQUE INDEX approvals_one_pending ON approvals (instance_id, step_id)
    WHERE state = 'pending';
