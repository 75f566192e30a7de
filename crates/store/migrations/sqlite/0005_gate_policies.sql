-- Per-tenant gate settings: the last change of each process area's gate
-- level for a tenant. A row with a level is an override of the area's
-- default; a row without one records who returned the area to its default,
-- when and why. The floors are checked by the domain before any write (a
-- CHECK here would copy the table of floors into SQL).
--
-- Settings hang off the tenant's key, like secrets: deleting the tenant
-- destroys its key and, by the cascade, its settings, including one written
-- by another node while the deletion ran.

CREATE TABLE tenant_gate_settings (
    tenant_id TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    area      TEXT NOT NULL CHECK (area IN ('client_onboarding', 'tenant_provisioning', 'isolation_change',
                                            'cross_tenant_operation', 'joiner_access', 'sensitive_entitlement',
                                            'elevated_access', 'revocation', 'documentation', 'notification')),
    level     TEXT CHECK (level IN ('L0', 'L1', 'L2', 'L3')),
    set_by    TEXT NOT NULL CHECK (length(set_by) > 0),
    set_at    TEXT NOT NULL,
    reason    TEXT NOT NULL CHECK (length(reason) > 0 AND length(reason) <= 2000),
    PRIMARY KEY (tenant_id, area)
) STRICT;

-- `/metrics` counts instances by state at every scrape: from this index,
-- not from the rows with their JSON.
CREATE INDEX workflow_instances_state ON workflow_instances (state);
