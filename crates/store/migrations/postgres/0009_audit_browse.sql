-- Browsing the audit log (docs/audit.md, "Browsing"): entries are listed by
-- time, then log, then index, and a page is one range scan of one of these
-- indexes (the primary key (log, idx) serves verification and proofs).
-- Each filter has an index that starts with it and then follows the sort
-- order, so a filtered page reads only the rows it returns.
--
-- `log` and `action` compare bytewise (COLLATE "C"), as on SQLite: the
-- order of a page and an action prefix (`workflow.*` is the range
-- `workflow.` ≤ action < `workflow/`) must not depend on the database's
-- locale. The queries name the same collation, so these indexes serve them.
CREATE INDEX audit_entries_by_time ON audit_entries (at, log COLLATE "C", idx);
CREATE INDEX audit_entries_by_log_time ON audit_entries (log COLLATE "C", at, idx);
CREATE INDEX audit_entries_by_actor ON audit_entries (actor, at, log COLLATE "C", idx);
CREATE INDEX audit_entries_by_action ON audit_entries (action COLLATE "C", at, log COLLATE "C", idx);
