-- Tenant-scoped roles: an operator's role applies to the whole
-- installation (NULL) or only to the tenants whose ids the JSON array
-- lists. Loaded with the operator by every token and session lookup, so a
-- change takes effect on the operator's next request.
ALTER TABLE operators ADD COLUMN tenant_scope TEXT;
