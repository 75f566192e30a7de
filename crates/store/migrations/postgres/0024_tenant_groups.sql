-- Tenant groups: named sets of tenants ("EU clients") that an operator's
-- scope may name instead of listing tenants one by one.
--
-- An operator's scope keeps the tenants it names in `operators.tenant_scope`
-- (0023) and the groups it names as rows of `operator_scope_groups`, so
-- that a group in use cannot be deleted (the foreign key refuses it) and
-- the reach is one join: the tenants named plus the groups' members, read
-- with the operator on every token and session lookup.

CREATE TABLE tenant_groups (
    id           TEXT PRIMARY KEY,
    slug         TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE tenant_group_members (
    group_id  TEXT NOT NULL REFERENCES tenant_groups (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    PRIMARY KEY (group_id, tenant_id)
);

CREATE TABLE operator_scope_groups (
    operator_id TEXT NOT NULL REFERENCES operators (id),
    group_id    TEXT NOT NULL REFERENCES tenant_groups (id),
    PRIMARY KEY (operator_id, group_id)
);

-- Deleting a group checks for scopes naming it.
CREATE INDEX operator_scope_groups_by_group ON operator_scope_groups (group_id);
