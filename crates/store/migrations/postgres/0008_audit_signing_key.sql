-- The audit log's checkpoint signing key(s): Ed25519, the public key in the
-- clear, the 32-byte seed wrapped by the KEK like tenants' data keys
-- (`gatehouse keys rotate` rewraps it). At most one key is active.
CREATE TABLE audit_signing_keys (
    public_key   BYTEA PRIMARY KEY CHECK (length(public_key) = 32),
    name         TEXT NOT NULL,
    kek_id       TEXT NOT NULL,
    wrapped      BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    rewrapped_at TIMESTAMPTZ,
    retired_at   TIMESTAMPTZ
);

CREATE UNIQUE INDEX audit_signing_keys_one_active
    ON audit_signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;
