-- The SCIM 2.0 service provider (issue 6 item 7).
-- A resource's attributes document is sealed under the tenant's data key
-- (`sealed`); what stays in the clear is the type, the id, the version and
-- the times. Equality lookups and uniqueness use `scim_index`: a keyed blind
-- index (HMAC-SHA-256 of the normalised value under a key derived from the
-- tenant's data key), never the value itself.
-- Everything hangs off the tenant's key: deleting the tenant removes it.

CREATE TABLE scim_resources (
    tenant_id     TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    resource_type TEXT NOT NULL,
    id            TEXT NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    sealed        BLOB NOT NULL,
    PRIMARY KEY (tenant_id, resource_type, id)
) STRICT;

-- One row per indexed value of a resource. `uniq = 1` rows are uniqueness
-- keys (userName): at most one resource per (tenant, type, attribute, digest).
CREATE TABLE scim_index (
    tenant_id     TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    attribute     TEXT NOT NULL,
    digest        BLOB NOT NULL,
    resource_id   TEXT NOT NULL,
    uniq          INTEGER NOT NULL CHECK (uniq IN (0, 1)),
    PRIMARY KEY (tenant_id, resource_type, attribute, digest, resource_id),
    FOREIGN KEY (tenant_id, resource_type, resource_id)
        REFERENCES scim_resources (tenant_id, resource_type, id) ON DELETE CASCADE
) STRICT;

CREATE UNIQUE INDEX scim_index_unique ON scim_index (tenant_id, resource_type, attribute, digest) WHERE uniq = 1;
CREATE INDEX scim_index_resource ON scim_index (tenant_id, resource_type, resource_id);

-- Per-tenant SCIM bearer tokens: only the SHA-256 of the secret is kept.
CREATE TABLE scim_tokens (
    id         TEXT NOT NULL PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    label      TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

CREATE INDEX scim_tokens_tenant ON scim_tokens (tenant_id, created_at);
