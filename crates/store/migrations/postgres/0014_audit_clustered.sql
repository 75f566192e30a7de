-- The SQLite migration of this number stores the audit log's entries and
-- nodes as WITHOUT ROWID tables (docs/audit.md, "Storage"). PostgreSQL has
-- no such tables: a heap and its primary-key index are what 0007 made, and
-- a covering index would store every leaf twice. Verification reads a
-- page of leaves as one aggregated row instead (no schema change), so this
-- migration changes nothing; it keeps the two back ends' numbering alike.
SELECT 1;
