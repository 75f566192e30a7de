-- Browsing the audit log (docs/audit.md, "Browsing"): entries are listed by
-- time, then log, then index, and a page is one range scan of one of these
-- indexes (the primary key (log, idx) serves verification and proofs).
-- Each filter has an index that starts with it and then follows the sort
-- order, so a filtered page reads only the rows it returns.
CREATE INDEX audit_entries_by_time ON audit_entries (at, log, idx);
CREATE INDEX audit_entries_by_log_time ON audit_entries (log, at, idx);
CREATE INDEX audit_entries_by_actor ON audit_entries (actor, at, log, idx);
CREATE INDEX audit_entries_by_action ON audit_entries (action, at, log, idx);
