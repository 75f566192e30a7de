-- The audit log keeps its Merkle subtrees from height 3 up
-- (docs/audit.md, "Storage"; `AUDIT_STORED_LEVEL` in gatehouse-core).
--
-- Level 0 repeated every entry's `leaf_hash`, and levels 1 and 2 added
-- three rows per four entries: two node rows per entry in all, written in
-- the same transaction as the entry (from height 3 up: about one per four
-- entries). A proof or a frontier now hashes a subtree below height 3 from
-- at most four consecutive entries' leaf hashes, one range of the
-- entries' primary key, so those rows are no longer read. Deleting them changes no entry, leaf hash or checkpoint:
-- every proof, root and signature stays the same.

DELETE FROM audit_nodes WHERE level < 3;
