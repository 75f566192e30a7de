-- Identity lifecycle (issue 6): people, their lifecycle events, the tenant's
-- access policy, just-in-time elevations and leavers' revocations.
-- Attributes, events, the policy and what remains to revoke are tenant data:
-- sealed under the tenant's data key. What stays in the clear is what the
-- database must sort or find by: ids (a person's id is a keyed digest of
-- their key, not the key), status, version, times, and the end date the
-- contract-end scheduler looks for.
-- Everything hangs off the tenant's key: deleting the tenant removes it.

CREATE TABLE identity_people (
    tenant_id  TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('active', 'on_leave', 'terminated')),
    version    BIGINT NOT NULL CHECK (version >= 1),
    updated_at TIMESTAMPTZ NOT NULL,
    ends_on    TEXT,
    sealed     BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX identity_people_ends ON identity_people (ends_on) WHERE ends_on IS NOT NULL AND status <> 'terminated';

-- `digest`: SHA-256 of the event id, so a repeated event is found without
-- storing its id in the clear.
CREATE TABLE identity_events (
    tenant_id   TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    digest      BYTEA NOT NULL,
    person_id   TEXT NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    received_at TIMESTAMPTZ NOT NULL,
    sealed      BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, digest)
);

CREATE INDEX identity_events_person ON identity_events (tenant_id, person_id, occurred_at);

CREATE TABLE identity_policies (
    tenant_id  TEXT NOT NULL PRIMARY KEY REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    version    BIGINT NOT NULL CHECK (version >= 1),
    updated_by TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    sealed     BYTEA NOT NULL
);

CREATE TABLE identity_elevations (
    tenant_id    TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    id           TEXT NOT NULL,
    person_id    TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('requested', 'active', 'ended', 'rejected')),
    requested_by TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ,
    ended_at     TIMESTAMPTZ,
    sealed       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE INDEX identity_elevations_person ON identity_elevations (tenant_id, person_id);

CREATE TABLE identity_revocations (
    tenant_id    TEXT NOT NULL REFERENCES tenant_keys (tenant_id) ON DELETE CASCADE,
    person_id    TEXT NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    deadline_at  TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    escalated_at TIMESTAMPTZ,
    sealed       BYTEA NOT NULL,
    PRIMARY KEY (tenant_id, person_id)
);
