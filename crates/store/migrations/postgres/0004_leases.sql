-- Several engine nodes on one database: a node claims due instances with a
-- lease (`FOR UPDATE SKIP LOCKED`, so two nodes never claim the same row)
-- and runs their wave; another node may take an instance only once the
-- lease has expired. The version check on commit remains the last word: a
-- node whose lease ran out while it worked cannot overwrite the newer state.
ALTER TABLE workflow_instances ADD COLUMN lease_owner TEXT;
ALTER TABLE workflow_instances ADD COLUMN lease_until TIMESTAMPTZ;
