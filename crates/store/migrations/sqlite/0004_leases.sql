-- Leases on due instances, as on PostgreSQL. On SQLite one process owns the
-- database, so the lease only matters across restarts of that process: a
-- claim left by a killed process expires, and the next one takes over (or
-- takes its own node's claims at once, see `claim_due`).
ALTER TABLE workflow_instances ADD COLUMN lease_owner TEXT;
-- Fixed-width UTC text, like every timestamp of the engine's tables.
ALTER TABLE workflow_instances ADD COLUMN lease_until TEXT;
