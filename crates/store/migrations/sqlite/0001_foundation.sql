-- Tenants, their wrapped data keys and sealed secrets; operators and API tokens.
-- Timestamps are ISO-8601 text in UTC; ids are TypeIDs (prefix_ + base32 UUIDv7).

CREATE TABLE tenants (
    id           TEXT PRIMARY KEY,
    slug         TEXT NOT NULL,
    display_name TEXT NOT NULL,
    region       TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('provisioning', 'active', 'suspended', 'offboarding', 'deleted')),
    version      INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;

-- A slug is unique among tenants that still exist; a deleted tenant's slug can be reused.
CREATE UNIQUE INDEX tenants_live_slug ON tenants (slug) WHERE state <> 'deleted';

CREATE TABLE tenant_keys (
    tenant_id    TEXT PRIMARY KEY REFERENCES tenants (id),
    kek_id       TEXT NOT NULL,
    wrapped      BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    rewrapped_at TEXT
) STRICT;

CREATE INDEX tenant_keys_kek ON tenant_keys (kek_id);

-- Secrets hang off the tenant's key: destroying the key removes them, including
-- one written by another node while the deletion ran (the foreign-key check
-- locks the key row, so the deletion waits for that write and then sees it).
CREATE TABLE tenant_secrets (
    tenant_id  TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    sealed     BLOB NOT NULL,
    version    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT;

CREATE TABLE operators (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'lead', 'technician', 'auditor')),
    disabled     INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at   TEXT NOT NULL
) STRICT;

-- One row, ever: whoever inserts it first bootstrapped the installation.
CREATE TABLE bootstrap (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    operator_id TEXT NOT NULL REFERENCES operators (id),
    at          TEXT NOT NULL
) STRICT;

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    operator_id TEXT NOT NULL REFERENCES operators (id),
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
) STRICT;

CREATE INDEX api_tokens_operator ON api_tokens (operator_id);
