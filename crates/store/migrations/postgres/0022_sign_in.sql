-- Console sign-in: operators' passwords (argon2id, PHC strings), TOTP
-- secrets (wrapped by the KEK, as tenant keys are), the failure count and
-- lock that slow down guessing, and sessions (only the SHA-256 of the
-- cookie's secret is stored).
CREATE TABLE operator_credentials (
    operator_id    TEXT PRIMARY KEY REFERENCES operators (id),
    password_hash  TEXT,
    totp_kek_id    TEXT,
    totp_wrapped   BYTEA,
    totp_last_step BIGINT,
    failures       INTEGER NOT NULL DEFAULT 0,
    locked_until   TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL,
    CHECK ((totp_kek_id IS NULL) = (totp_wrapped IS NULL))
);

CREATE INDEX operator_credentials_kek ON operator_credentials (totp_kek_id);

CREATE TABLE operator_sessions (
    id            TEXT PRIMARY KEY,
    operator_id   TEXT NOT NULL REFERENCES operators (id),
    secret_hash   TEXT NOT NULL UNIQUE,
    second_factor BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    revoked_at    TIMESTAMPTZ
);

CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);
