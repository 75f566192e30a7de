//! The SQL behind the audit log, written once for both back ends in the way
//! of [`crate::sql`]: the outbox rows written with each change
//! (`write_audit_records`, called by `write_progress` and the event inserts
//! of [`crate::engine_sql`]) and `AuditStore` for the sequencer, proofs and
//! checkpoints. See docs/audit.md, "Storage".
//!
//! Hashes are stored as lowercase hex text on both back ends; timestamps as
//! [`SortableTime`]; details as JSON text.

use gatehouse_audit::{Frontier, Hash, NodeId};
use gatehouse_core::audit::{AuditHash, AuditRecord};
use gatehouse_core::store::{
    ActionFilter, AuditFilter, AuditLeaf, AuditRow, StoreError, StoreResult,
};
use sqlx::query::Query;
use sqlx::{Database, Encode, Type};

use crate::engine_sql::{SortableTime, to_json, values_list};
use crate::placeholders::Placeholders;

pub(crate) const OUTBOX_COLUMNS: &str = "log, at, tenant_id, actor, action, subject, details";
const OUTBOX_WIDTH: usize = 7;
pub(crate) const ENTRY_COLUMNS: &str = "idx, at, actor, action, subject, leaf, leaf_hash";
/// The entry columns plus the log.
const ENTRY_WIDTH: usize = 8;
const NODE_WIDTH: usize = 4;

pub(crate) fn insert_outbox_sql(rows: usize) -> String {
    format!(
        "INSERT INTO audit_outbox ({OUTBOX_COLUMNS}) VALUES {}",
        values_list(rows, OUTBOX_WIDTH)
    )
}

pub(crate) fn insert_entries_sql(rows: usize) -> String {
    format!(
        "INSERT INTO audit_entries (log, {ENTRY_COLUMNS}) VALUES {}",
        values_list(rows, ENTRY_WIDTH)
    )
}

pub(crate) fn insert_nodes_sql(rows: usize) -> String {
    format!(
        "INSERT INTO audit_nodes (log, level, idx, hash) VALUES {}",
        values_list(rows, NODE_WIDTH)
    )
}

/// Rows per statement of an append (entries, nodes): 8 values a row, so a
/// statement binds at most 8,192 values (SQLite allows 32,766, PostgreSQL
/// 65,535). Fewer, larger statements: every statement is a round trip to
/// SQLite's worker thread or to the PostgreSQL server.
pub(crate) const APPEND_ROWS: usize = 1024;

/// The statements of `items` in chunks of at most `rows`: the text of each,
/// `sql(rows in the chunk)` in the back end's placeholders. With
/// [`bind_statements`], `append_audit` and `queue_audit` bind all their
/// statements before they take the writer, so that their transaction holds
/// it only while the statements run (at the cost of holding every chunk's
/// values at once, a few MB for the sequencer's largest append).
pub(crate) fn statement_texts<DB: Placeholders, T>(
    items: &[T],
    rows: usize,
    sql: impl Fn(usize) -> String,
) -> Vec<String> {
    items
        .chunks(rows)
        .map(|chunk| DB::sequential(sql(chunk.len())))
        .collect()
}

/// The statements of [`statement_texts`] with each chunk's values bound by
/// `bind`, row by row; `items` and `rows` are those the texts were made of.
pub(crate) fn bind_statements<'q, DB: Database, T>(
    texts: &'q [String],
    items: &'q [T],
    rows: usize,
    mut bind: impl FnMut(
        Query<'q, DB, <DB as Database>::Arguments<'q>>,
        &'q T,
    ) -> StoreResult<Query<'q, DB, <DB as Database>::Arguments<'q>>>,
) -> StoreResult<Vec<Query<'q, DB, <DB as Database>::Arguments<'q>>>> {
    debug_assert_eq!(texts.len(), items.len().div_ceil(rows.max(1)));
    texts
        .iter()
        .zip(items.chunks(rows))
        .map(|(text, chunk)| chunk.iter().try_fold(sqlx::query(text), &mut bind))
        .collect()
}

/// The ids of `consumed` as runs of consecutive ids `(first, last)`,
/// both included: the sequencer consumes the outbox in id order, so a
/// batch of one log is usually one run, and deleting it one range.
pub(crate) fn id_runs(consumed: &[i64]) -> Vec<(i64, i64)> {
    let mut ids = consumed.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for id in ids {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(id) => *last = id,
            _ => runs.push((id, id)),
        }
    }
    runs
}

/// `(id >= $a AND id <= $b) OR …` for `count` runs, from `$first` on.
pub(crate) fn run_filter(first: usize, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "(id >= ${} AND id <= ${})",
                first + 2 * i,
                first + 2 * i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// `(log = $1 AND level = $a AND idx = $b) OR …` for `count` node ids,
/// from `$first` on. Each term names the whole primary key, so each is one
/// index lookup; with `log = $1` outside the `OR`, SQLite scans every node
/// of the log instead (hundreds of milliseconds for a million entries).
pub(crate) fn node_filter(first: usize, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "(log = $1 AND level = ${} AND idx = ${})",
                first + 2 * i,
                first + 2 * i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// The leaves `(first, count)` of the subtree `(level, index)`, which is
/// hashed from the entries rather than stored (`level` below
/// [`gatehouse_core::audit::AUDIT_STORED_LEVEL`]); `None` past the end of any
/// log.
pub(crate) fn hashed_range(level: u8, index: u64) -> Option<(u64, u64)> {
    let count = 1u64.checked_shl(u32::from(level))?;
    Some((index.checked_mul(count)?, count))
}

/// The query for one chunk of the subtrees `audit_nodes` is asked for: the
/// stored ones by primary key (`level`, `idx`, `hash`), then the leaf
/// hashes of each hashed one, marked with level `-1`, as a range of the
/// entries' primary key of its own (SQLite searches an `OR` of ranges by
/// `log` alone, scanning the whole log). One round trip; `$1` is the log.
/// At most 256 ranges a chunk, within SQLite's 500 terms of a compound
/// select.
pub(crate) fn nodes_and_leaves_sql(stored: usize, ranges: usize) -> String {
    // `audit_nodes` chunks its ids by `MAX_ROWS`: one select per range
    // plus one for the stored nodes must stay within SQLite's limit.
    const _: () = assert!(crate::engine_sql::MAX_ROWS < 500);
    let mut parts = Vec::with_capacity(ranges + 1);
    if stored > 0 {
        parts.push(format!(
            "SELECT level, idx, hash FROM audit_nodes WHERE {}",
            node_filter(2, stored)
        ));
    }
    let first = 2 + 2 * stored;
    parts.extend((0..ranges).map(|i| {
        format!(
            "SELECT CAST(-1 AS BIGINT), idx, leaf_hash FROM audit_entries \
             WHERE log = $1 AND idx >= ${} AND idx <= ${}",
            first + 2 * i,
            first + 2 * i + 1
        )
    }));
    parts.join(" UNION ALL ")
}

/// The hash of the subtree `(level, index)` from the leaf hashes `leaves`
/// (by entry index); `None` if one of its leaves is missing.
pub(crate) fn hash_subtree(
    level: u8,
    index: u64,
    leaves: &std::collections::HashMap<u64, AuditHash>,
) -> Option<AuditHash> {
    let (first, count) = hashed_range(level, index)?;
    let hashes = (0..count)
        .map(|i| {
            let idx = first.checked_add(i)?;
            leaves.get(&idx).map(|h| Hash::from_bytes(*h))
        })
        .collect::<Option<Vec<Hash>>>()?;
    Some(*gatehouse_audit::merkle::root(&hashes).as_bytes())
}

/// Binds an outbox record's 7 columns, in [`OUTBOX_COLUMNS`] order.
pub(crate) fn bind_outbox<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    record: &AuditRecord,
) -> StoreResult<Query<'q, DB, <DB as Database>::Arguments<'q>>>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    SortableTime: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(record.log())
        .bind(SortableTime(record.at))
        .bind(record.tenant_id.map(|t| t.to_string()))
        .bind(record.actor.clone())
        .bind(record.action.clone())
        .bind(record.subject.clone())
        .bind(to_json(&record.details)?))
}

pub(crate) fn to_hex(hash: &AuditHash) -> String {
    Hash::from_bytes(*hash).to_hex()
}

pub(crate) fn from_hex(column: &str, text: &str) -> StoreResult<AuditHash> {
    Hash::from_hex(text)
        .map(|h| *h.as_bytes())
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(crate) fn to_i64(what: &str, value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Conflict(format!("{what} {value} is too large")))
}

/// An index bound for SQL: beyond `i64::MAX` (no row can be there) is
/// `i64::MAX`.
pub(crate) fn index_bound(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(column: &str, value: i64) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column}: {value} is negative")))
}

/// The `(level, index)` pairs of the frontier of a tree of `size` leaves,
/// largest first.
pub(crate) fn frontier_plan(size: u64) -> Vec<(u8, u64)> {
    Frontier::plan(size)
        .into_iter()
        .map(|NodeId { level, index }| (level, index))
        .collect()
}

/// An outbox row as read.
pub(crate) type OutboxRow = (
    i64,
    String,
    time::OffsetDateTime,
    Option<String>,
    String,
    String,
    String,
    String,
);

pub(crate) fn outbox_record(row: OutboxRow) -> StoreResult<(i64, AuditRecord)> {
    let (id, _log, at, tenant_id, actor, action, subject, details) = row;
    let tenant_id = tenant_id
        .map(|t| t.parse())
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("audit_outbox.tenant_id: {e}")))?;
    let details = serde_json::from_str(&details)
        .map_err(|e| StoreError::Corrupt(format!("audit_outbox.details: {e}")))?;
    Ok((
        id,
        AuditRecord {
            at,
            tenant_id,
            actor,
            action,
            subject,
            details,
        },
    ))
}

/// The oldest `$2` outbox records with ids above `$1` packed into one row: a JSON array of
/// `[id, log, at, tenant_id, actor, action, subject, details]` arrays, with
/// `details` as its JSON text (read back by [`unpack_outbox`]). As for
/// [`PACKED_LEAVES_SQL`]: SQLite hands rows to sqlx one by one through a
/// worker thread, and one row per batch spares the sequencer thousands of
/// messages per run. `NULL` when the outbox is empty.
pub(crate) const PACKED_OUTBOX_SQL: &str = "SELECT json_group_array(json_array(id, log, at, \
     tenant_id, actor, action, subject, details)) \
     FROM (SELECT id, log, at, tenant_id, actor, action, subject, details \
     FROM audit_outbox WHERE id > $1 ORDER BY id LIMIT $2)";

/// An outbox row as [`PACKED_OUTBOX_SQL`] packs it.
type PackedOutboxRow = (
    i64,
    String,
    String,
    Option<String>,
    String,
    String,
    String,
    String,
);

/// Reads the row [`PACKED_OUTBOX_SQL`] returns, in id order.
pub(crate) fn unpack_outbox(packed: Option<String>) -> StoreResult<Vec<(i64, AuditRecord)>> {
    let Some(packed) = packed else {
        return Ok(Vec::new());
    };
    let rows: Vec<PackedOutboxRow> = serde_json::from_str(&packed)
        .map_err(|e| StoreError::Corrupt(format!("audit_outbox (packed batch): {e}")))?;
    let mut records = rows
        .into_iter()
        .map(
            |(id, log, at, tenant_id, actor, action, subject, details)| {
                let at = time::OffsetDateTime::parse(
                    &at,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|e| StoreError::Corrupt(format!("audit_outbox.at: {e}")))?;
                outbox_record((id, log, at, tenant_id, actor, action, subject, details))
            },
        )
        .collect::<StoreResult<Vec<_>>>()?;
    if !records.is_sorted_by_key(|(id, _)| *id) {
        records.sort_unstable_by_key(|(id, _)| *id);
    }
    Ok(records)
}

/// An entry row as read.
pub(crate) type EntryRow = (
    i64,
    time::OffsetDateTime,
    String,
    String,
    String,
    String,
    String,
);

pub(crate) fn entry(row: EntryRow) -> StoreResult<gatehouse_core::audit::AuditEntry> {
    let (idx, at, actor, action, subject, leaf, leaf_hash) = row;
    Ok(gatehouse_core::audit::AuditEntry {
        idx: to_u64("audit_entries.idx", idx)?,
        at,
        actor,
        action,
        subject,
        leaf,
        leaf_hash: from_hex("audit_entries.leaf_hash", &leaf_hash)?,
    })
}

/// The `SELECT` of a page of [`AuditStore::list_audit_entries`]: the
/// filters present, the cursor and the limit become numbered parameters,
/// bound by the caller in this order: log, actor, action (one value, or
/// the two bounds of a prefix), since, until, the cursor's (at, log, idx)
/// (its log only without a log filter), the limit. `collate` makes `log` and `action` compare bytewise.
///
/// [`AuditStore::list_audit_entries`]: gatehouse_core::store::AuditStore::list_audit_entries
pub(crate) fn list_entries_sql(filter: &AuditFilter, cursor: bool, collate: &str) -> String {
    let mut clauses = Vec::new();
    let mut n = 0usize;
    let mut next = || {
        n += 1;
        n
    };
    if filter.log.is_some() {
        clauses.push(format!("log{collate} = ${}", next()));
    }
    if filter.actor.is_some() {
        clauses.push(format!("actor = ${}", next()));
    }
    match &filter.action {
        Some(ActionFilter::Exact(_)) => clauses.push(format!("action{collate} = ${}", next())),
        Some(ActionFilter::Prefix(_)) => {
            let (low, high) = (next(), next());
            clauses.push(format!(
                "action{collate} >= ${low} AND action{collate} < ${high}"
            ));
        }
        None => {}
    }
    if filter.since.is_some() {
        clauses.push(format!("at >= ${}", next()));
    }
    if filter.until.is_some() {
        clauses.push(format!("at < ${}", next()));
    }
    // A row value, which both engines turn into an index range. Within one
    // log the cursor's log is that log, so (at, idx) keeps the range on the
    // (log, at, idx) index; its log is then not bound.
    if cursor {
        if filter.log.is_some() {
            let (at, idx) = (next(), next());
            clauses.push(format!("(at, idx) > (${at}, ${idx})"));
        } else {
            let (at, log, idx) = (next(), next(), next());
            clauses.push(format!("(at, log{collate}, idx) > (${at}, ${log}, ${idx})"));
        }
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    format!(
        "SELECT log, {ENTRY_COLUMNS} FROM audit_entries {filter} \
         ORDER BY at, log{collate}, idx LIMIT ${}",
        next()
    )
}

/// The exclusive upper bound of the actions starting with `prefix` (which
/// ends with `.`): the same text with its last byte raised by one, so
/// `workflow.` ≤ action < `workflow/`.
pub(crate) fn prefix_end(prefix: &str) -> String {
    match prefix.strip_suffix('.') {
        Some(stem) => format!("{stem}/"),
        None => format!("{prefix}\u{10FFFF}"),
    }
}

/// A listed row as read: the log, then an [`EntryRow`].
pub(crate) type ListedRow = (
    String,
    i64,
    time::OffsetDateTime,
    String,
    String,
    String,
    String,
    String,
);

pub(crate) fn listed(row: ListedRow) -> StoreResult<AuditRow> {
    let (log, idx, at, actor, action, subject, leaf, leaf_hash) = row;
    Ok(AuditRow {
        log,
        entry: entry((idx, at, actor, action, subject, leaf, leaf_hash))?,
    })
}

/// The leaves of log `$1` with `$2 <= idx < $3` (what verification
/// reads), packed into one row of four text
/// values: the indexes (space-separated), the leaf hashes (64 hex digits
/// each), the leaves' lengths in bytes (space-separated) and the leaves
/// end to end (read back by [`unpack_leaves`]). SQLite hands rows to sqlx
/// one by one through a worker thread, which costs more than hashing them;
/// one row per page reads a million entries about twice as fast, in half
/// the CPU. The four aggregates see the rows in the same order, whatever it
/// is; [`unpack_leaves`] puts them in index order.
pub(crate) const PACKED_LEAVES_SQL: &str = "SELECT group_concat(idx, ' '), \
     group_concat(leaf_hash, ''), group_concat(octet_length(leaf), ' '), group_concat(leaf, '') \
     FROM (SELECT idx, leaf, leaf_hash FROM audit_entries \
     WHERE log = $1 AND idx >= $2 AND idx < $3 ORDER BY idx)";

/// The leaves of log `$1` with `$2 <= idx < $3`, one row each: what
/// verification reads on PostgreSQL. (Packed into one row with
/// `string_agg`, as on SQLite, a page was read more slowly: the server
/// builds the aggregate before it sends anything, where rows stream.)
pub(crate) const LEAVES_SQL: &str = "SELECT idx, leaf, leaf_hash FROM audit_entries \
     WHERE log = $1 AND idx >= $2 AND idx < $3 ORDER BY idx";

/// A leaf row as read for verification.
pub(crate) type LeafRow = (i64, String, String);

pub(crate) fn leaf(row: LeafRow) -> StoreResult<AuditLeaf> {
    let (idx, leaf, leaf_hash) = row;
    Ok(AuditLeaf {
        idx: to_u64("audit_entries.idx", idx)?,
        leaf,
        leaf_hash: from_hex("audit_entries.leaf_hash", &leaf_hash)?,
    })
}

/// A packed page as read: see [`PACKED_LEAVES_SQL`]; all `None` when the
/// page is empty.
pub(crate) type PackedLeaves = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Reads the row [`PACKED_LEAVES_SQL`] returns, in index order.
pub(crate) fn unpack_leaves(packed: PackedLeaves) -> StoreResult<Vec<AuditLeaf>> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("audit_entries (packed page): {what}"));
    let (Some(indexes), Some(hashes), Some(lengths), Some(leaves)) = packed else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut hashes = hashes.as_str();
    let mut leaves = leaves.as_str();
    let mut lengths = lengths.split(' ');
    for idx in indexes.split(' ') {
        let idx: u64 = idx.parse().map_err(|_| corrupt("index"))?;
        let hash = hashes.get(..64).ok_or_else(|| corrupt("leaf hash"))?;
        hashes = &hashes[64..];
        let len: usize = lengths
            .next()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| corrupt("leaf length"))?;
        let leaf = leaves
            .get(..len)
            .ok_or_else(|| corrupt("leaf shorter than its length"))?;
        leaves = &leaves[len..];
        out.push(AuditLeaf {
            idx,
            leaf: leaf.to_owned(),
            leaf_hash: from_hex("audit_entries.leaf_hash", hash)?,
        });
    }
    if !hashes.is_empty() || !leaves.is_empty() || lengths.next().is_some() {
        return Err(corrupt("more hashes, lengths or leaves than indexes"));
    }
    if !out.is_sorted_by_key(|l| l.idx) {
        out.sort_unstable_by_key(|l| l.idx);
    }
    Ok(out)
}

macro_rules! impl_audit_store {
    // `$collate`: how text columns compare bytewise (`""` on SQLite,
    // ` COLLATE "C"` on PostgreSQL), as the indexes of migration 0009 do.
    ($store:ty, $db:ty, $collate:literal) => {
        impl $store {
            /// Queues `records` in the audit outbox on `conn`, inside the
            /// caller's transaction: one statement per [`MAX_ROWS`] records.
            async fn write_audit_records(
                conn: &mut <$db as sqlx::Database>::Connection,
                records: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::audit_sql as sql;
                let rows = crate::engine_sql::MAX_ROWS;
                let texts = sql::statement_texts::<$db, _>(records, rows, sql::insert_outbox_sql);
                for query in sql::bind_statements(&texts, records, rows, sql::bind_outbox)? {
                    query
                        .execute(&mut *conn)
                        .await
                        .map_err(crate::db_error("queueing audit records"))?;
                }
                Ok(())
            }

            /// The audit records of a batch of progress: one per history
            /// entry.
            async fn write_audit_history(
                conn: &mut <$db as sqlx::Database>::Connection,
                batch: &[gatehouse_core::workflow::Progress],
            ) -> gatehouse_core::store::StoreResult<()> {
                let records: Vec<gatehouse_core::audit::AuditRecord> = batch
                    .iter()
                    .flat_map(|p| {
                        p.history
                            .iter()
                            .map(|e| gatehouse_core::audit::AuditRecord::of_history(e, &p.instance))
                    })
                    .collect();
                Self::write_audit_records(conn, &records).await
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::store::AuditStore for $store {
            async fn queue_audit(
                &self,
                records: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                // Bound before the writer is taken; one statement is atomic
                // on its own and needs no transaction around it.
                use crate::audit_sql as sql;
                let rows = crate::engine_sql::MAX_ROWS;
                let texts = sql::statement_texts::<$db, _>(records, rows, sql::insert_outbox_sql);
                let mut inserts = sql::bind_statements(&texts, records, rows, sql::bind_outbox)?;
                if inserts.len() <= 1 {
                    return match inserts.pop() {
                        Some(insert) => insert
                            .execute(&self.writer)
                            .await
                            .map(|_| ())
                            .map_err(crate::db_error("queueing audit records")),
                        None => Ok(()),
                    };
                }
                let mut tx = self
                    .writer
                    .begin()
                    .await
                    .map_err(crate::db_error("queueing audit records"))?;
                for insert in inserts {
                    insert
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::db_error("queueing audit records"))?;
                }
                tx.commit()
                    .await
                    .map_err(crate::db_error("queueing audit records"))
            }

            async fn pending_audit_after(
                &self,
                after: i64,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<(i64, gatehouse_core::audit::AuditRecord)>> {
                self.read_audit_outbox(after, limit).await
            }

            async fn append_audit(
                &self,
                log: &str,
                expected_size: u64,
                entries: &[gatehouse_core::audit::AuditEntry],
                nodes: &[gatehouse_core::audit::AuditNode],
                consumed: &[i64],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::audit_sql as sql;
                use crate::engine_sql::{MAX_ROWS, SortableTime};
                use gatehouse_core::store::StoreError;
                for (offset, entry) in entries.iter().enumerate() {
                    if expected_size.checked_add(offset as u64) != Some(entry.idx) {
                        return Err(StoreError::Conflict(format!(
                            "audit entry {} does not follow on from size {expected_size}",
                            entry.idx
                        )));
                    }
                }
                let new_size = expected_size
                    .checked_add(entries.len() as u64)
                    .ok_or_else(|| StoreError::Conflict("the audit log is full".to_owned()))?;
                let expected = sql::to_i64("audit log size", expected_size)?;
                let new_size = sql::to_i64("audit log size", new_size)?;
                // Every statement is bound before the writer is taken (see
                // `statement_texts`).
                let entry_texts = sql::statement_texts::<$db, _>(entries, sql::APPEND_ROWS, sql::insert_entries_sql);
                let entry_inserts = sql::bind_statements(&entry_texts, entries, sql::APPEND_ROWS, |query, entry| {
                    Ok(query
                        .bind(log)
                        .bind(sql::to_i64("audit entry index", entry.idx)?)
                        .bind(SortableTime(entry.at))
                        .bind(entry.actor.as_str())
                        .bind(entry.action.as_str())
                        .bind(entry.subject.as_str())
                        .bind(entry.leaf.as_str())
                        .bind(sql::to_hex(&entry.leaf_hash)))
                })?;
                // The lower levels are hashed from the entries when asked for.
                let stored: Vec<&gatehouse_core::audit::AuditNode> = nodes
                    .iter()
                    .filter(|n| n.level >= gatehouse_core::audit::AUDIT_STORED_LEVEL)
                    .collect();
                let node_texts = sql::statement_texts::<$db, _>(&stored, sql::APPEND_ROWS, sql::insert_nodes_sql);
                let node_inserts = sql::bind_statements(&node_texts, &stored, sql::APPEND_ROWS, |query, node| {
                    Ok(query
                        .bind(log)
                        .bind(i64::from(node.level))
                        .bind(sql::to_i64("audit node index", node.index)?)
                        .bind(sql::to_hex(&node.hash)))
                })?;
                let runs = sql::id_runs(consumed);
                let delete_texts = sql::statement_texts::<$db, _>(&runs, MAX_ROWS, |n| {
                    format!("DELETE FROM audit_outbox WHERE {}", sql::run_filter(1, n))
                });
                let deletes = sql::bind_statements(&delete_texts, &runs, MAX_ROWS, |query, &(first, last)| {
                    Ok(query.bind(first).bind(last))
                })?;
                // How many records each delete consumes.
                let consuming = runs
                    .chunks(MAX_ROWS)
                    .map(|chunk| chunk.iter().map(|&(first, last)| last.abs_diff(first) + 1).sum::<u64>());

                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                // The compare-and-set on the log's size: a concurrent
                // sequencer's append makes this one stale.
                let done = if expected == 0 {
                    sqlx::query(
                        "INSERT INTO audit_logs (log, size) VALUES ($1, $2)
                         ON CONFLICT (log) DO UPDATE SET size = excluded.size WHERE audit_logs.size = 0",
                    )
                    .bind(log)
                    .bind(new_size)
                    .execute(&mut *tx)
                    .await
                } else {
                    sqlx::query("UPDATE audit_logs SET size = $1 WHERE log = $2 AND size = $3")
                        .bind(new_size)
                        .bind(log)
                        .bind(expected)
                        .execute(&mut *tx)
                        .await
                }
                .map_err(crate::db_error("moving an audit log's size"))?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Stale("audit log"));
                }
                for query in entry_inserts {
                    query
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::db_error("appending audit entries"))?;
                }
                for query in node_inserts {
                    query.execute(&mut *tx).await.map_err(|err| match crate::engine_sql::violation(&err) {
                        crate::engine_sql::Violation::Unique => {
                            StoreError::Conflict("an audit node is stored already".to_owned())
                        }
                        _ => crate::db_error("storing audit nodes")(err),
                    })?;
                }
                for (query, expected) in deletes.into_iter().zip(consuming) {
                    let done = query
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::db_error("consuming audit records"))?;
                    if done.rows_affected() != expected {
                        return Err(StoreError::Stale("audit outbox"));
                    }
                }
                tx.commit().await.map_err(crate::db_error("committing audit entries"))
            }

            async fn audit_head(
                &self,
                log: &str,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::audit::AuditHead> {
                let size: Option<(i64,)> = sqlx::query_as("SELECT size FROM audit_logs WHERE log = $1")
                    .bind(log)
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(crate::db_error("reading an audit log's size"))?;
                let size = match size {
                    Some((size,)) => crate::audit_sql::to_u64("audit_logs.size", size)?,
                    None => 0,
                };
                let plan = crate::audit_sql::frontier_plan(size);
                let hashes = self.audit_nodes(log, &plan).await?;
                Ok(gatehouse_core::audit::AuditHead {
                    size,
                    frontier: plan
                        .into_iter()
                        .zip(hashes)
                        .map(|((level, index), hash)| gatehouse_core::audit::AuditNode { level, index, hash })
                        .collect(),
                })
            }

            async fn audit_nodes(
                &self,
                log: &str,
                ids: &[(u8, u64)],
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::audit::AuditHash>> {
                use crate::audit_sql as sql;
                use gatehouse_core::audit::{AUDIT_STORED_LEVEL, AuditHash};
                use gatehouse_core::store::StoreError;
                use std::collections::HashMap;
                let mut found: HashMap<(u8, u64), AuditHash> = HashMap::new();
                let mut leaves: HashMap<u64, AuditHash> = HashMap::new();
                for chunk in ids.chunks(crate::engine_sql::MAX_ROWS) {
                    let (stored, hashed): (Vec<(u8, u64)>, Vec<(u8, u64)>) =
                        chunk.iter().partition(|(level, _)| *level >= AUDIT_STORED_LEVEL);
                    // A subtree past any log's end cannot be complete.
                    let ranges: Vec<(u64, u64)> = hashed
                        .iter()
                        .filter_map(|&(level, index)| sql::hashed_range(level, index))
                        .collect();
                    if stored.is_empty() && ranges.is_empty() {
                        continue;
                    }
                    let text = sql::nodes_and_leaves_sql(stored.len(), ranges.len());
                    let mut query = sqlx::query_as::<_, (i64, i64, String)>(&text).bind(log);
                    for (level, index) in &stored {
                        query = query.bind(i64::from(*level)).bind(sql::to_i64("audit node index", *index)?);
                    }
                    for (first, count) in &ranges {
                        let last = first.saturating_add(count - 1);
                        query = query.bind(sql::index_bound(*first)).bind(sql::index_bound(last));
                    }
                    let rows = query
                        .fetch_all(&self.writer)
                        .await
                        .map_err(crate::db_error("reading audit nodes"))?;
                    for (level, idx, hash) in rows {
                        let idx = sql::to_u64("audit_nodes.idx", idx)?;
                        if level == -1 {
                            leaves.insert(idx, sql::from_hex("audit_entries.leaf_hash", &hash)?);
                        } else {
                            let level = u8::try_from(level)
                                .map_err(|_| StoreError::Corrupt(format!("audit_nodes.level: {level}")))?;
                            found.insert((level, idx), sql::from_hex("audit_nodes.hash", &hash)?);
                        }
                    }
                }
                ids.iter()
                    .map(|&(level, index)| {
                        let hash = if level >= AUDIT_STORED_LEVEL {
                            found.get(&(level, index)).copied()
                        } else {
                            sql::hash_subtree(level, index, &leaves)
                        };
                        hash.ok_or(StoreError::NotFound("audit node"))
                    })
                    .collect()
            }

            async fn audit_entries(
                &self,
                log: &str,
                from: u64,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::audit::AuditEntry>> {
                let text = format!(
                    "SELECT {} FROM audit_entries WHERE log = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
                    crate::audit_sql::ENTRY_COLUMNS
                );
                let rows: Vec<crate::audit_sql::EntryRow> = sqlx::query_as(&text)
                    .bind(log)
                    .bind(crate::audit_sql::to_i64("audit entry index", from)?)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("reading audit entries"))?;
                rows.into_iter().map(crate::audit_sql::entry).collect()
            }

            async fn put_checkpoint(
                &self,
                checkpoint: &gatehouse_core::audit::AuditCheckpoint,
            ) -> gatehouse_core::store::StoreResult<()> {
                use gatehouse_core::store::StoreError;
                sqlx::query("INSERT INTO audit_checkpoints (log, size, note, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(checkpoint.log.as_str())
                    .bind(crate::audit_sql::to_i64("checkpoint size", checkpoint.size)?)
                    .bind(checkpoint.note.as_str())
                    .bind(crate::engine_sql::SortableTime(checkpoint.created_at))
                    .execute(&self.writer)
                    .await
                    .map_err(|err| match crate::engine_sql::violation(&err) {
                        crate::engine_sql::Violation::Unique => StoreError::Conflict(format!(
                            "audit log `{}` has a checkpoint of size {} already",
                            checkpoint.log, checkpoint.size
                        )),
                        crate::engine_sql::Violation::ForeignKey => StoreError::NotFound("audit log"),
                        crate::engine_sql::Violation::Other => crate::db_error("storing a checkpoint")(err),
                    })?;
                Ok(())
            }

            async fn list_checkpoints(
                &self,
                log: &str,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::audit::AuditCheckpoint>> {
                let rows: Vec<(String, i64, String, time::OffsetDateTime)> = sqlx::query_as(
                    "SELECT log, size, note, created_at FROM audit_checkpoints WHERE log = $1 ORDER BY size",
                )
                .bind(log)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing checkpoints"))?;
                rows.into_iter()
                    .map(|(log, size, note, created_at)| {
                        Ok(gatehouse_core::audit::AuditCheckpoint {
                            log,
                            size: crate::audit_sql::to_u64("audit_checkpoints.size", size)?,
                            note,
                            created_at,
                        })
                    })
                    .collect()
            }

            async fn audit_logs(&self) -> gatehouse_core::store::StoreResult<Vec<(String, u64)>> {
                let rows: Vec<(String, i64)> = sqlx::query_as("SELECT log, size FROM audit_logs ORDER BY log")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing audit logs"))?;
                rows.into_iter()
                    .map(|(log, size)| Ok((log, crate::audit_sql::to_u64("audit_logs.size", size)?)))
                    .collect()
            }

            async fn audit_log_size(&self, log: &str) -> gatehouse_core::store::StoreResult<Option<u64>> {
                let size: Option<(i64,)> = sqlx::query_as("SELECT size FROM audit_logs WHERE log = $1")
                    .bind(log)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading an audit log's size"))?;
                size.map(|(size,)| crate::audit_sql::to_u64("audit_logs.size", size)).transpose()
            }

            async fn audit_entry(
                &self,
                log: &str,
                idx: u64,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::audit::AuditEntry> {
                let text = format!(
                    "SELECT {} FROM audit_entries WHERE log = $1 AND idx = $2",
                    crate::audit_sql::ENTRY_COLUMNS
                );
                let row: Option<crate::audit_sql::EntryRow> = sqlx::query_as(&text)
                    .bind(log)
                    .bind(crate::audit_sql::to_i64("audit entry index", idx)?)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading an audit entry"))?;
                row.map(crate::audit_sql::entry)
                    .transpose()?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("audit entry"))
            }

            async fn list_audit_entries(
                &self,
                filter: &gatehouse_core::store::AuditFilter,
                after: Option<&gatehouse_core::store::AuditCursor>,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::store::AuditRow>> {
                use crate::audit_sql as sql;
                use crate::engine_sql::SortableTime;
                use gatehouse_core::store::ActionFilter;
                let text = sql::list_entries_sql(filter, after.is_some(), $collate);
                let mut query = sqlx::query_as::<_, sql::ListedRow>(&text);
                if let Some(log) = &filter.log {
                    query = query.bind(log.as_str());
                }
                if let Some(actor) = &filter.actor {
                    query = query.bind(actor.as_str());
                }
                match &filter.action {
                    Some(ActionFilter::Exact(action)) => query = query.bind(action.as_str()),
                    Some(ActionFilter::Prefix(prefix)) => {
                        query = query.bind(prefix.as_str()).bind(sql::prefix_end(prefix));
                    }
                    None => {}
                }
                if let Some(since) = filter.since {
                    query = query.bind(SortableTime(since));
                }
                if let Some(until) = filter.until {
                    query = query.bind(SortableTime(until));
                }
                if let Some(cursor) = after {
                    query = query.bind(SortableTime(cursor.at));
                    if filter.log.is_none() {
                        query = query.bind(cursor.log.as_str());
                    }
                    query = query.bind(sql::to_i64("audit cursor index", cursor.idx)?);
                }
                let rows = query
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing audit entries"))?;
                rows.into_iter().map(sql::listed).collect()
            }

            async fn audit_leaves(
                &self,
                log: &str,
                indexes: std::ops::Range<u64>,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::store::AuditLeaf>> {
                self.read_audit_leaves(log, indexes).await
            }

            async fn audit_checkpoint(
                &self,
                log: &str,
                size: u64,
            ) -> gatehouse_core::store::StoreResult<Option<gatehouse_core::audit::AuditCheckpoint>> {
                let row: Option<(String, i64, String, time::OffsetDateTime)> = sqlx::query_as(
                    "SELECT log, size, note, created_at FROM audit_checkpoints WHERE log = $1 AND size = $2",
                )
                .bind(log)
                .bind(crate::audit_sql::to_i64("checkpoint size", size)?)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading a checkpoint"))?;
                row.map(|(log, size, note, created_at)| {
                    Ok(gatehouse_core::audit::AuditCheckpoint {
                        log,
                        size: crate::audit_sql::to_u64("audit_checkpoints.size", size)?,
                        note,
                        created_at,
                    })
                })
                .transpose()
            }
        }
    };
}

pub(crate) use impl_audit_store;

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(rows: &[(u64, &str, &str)]) -> PackedLeaves {
        let join = |f: &dyn Fn(&(u64, &str, &str)) -> String, sep: &str| {
            Some(rows.iter().map(f).collect::<Vec<_>>().join(sep))
        };
        (
            join(&|r| r.0.to_string(), " "),
            join(&|r| r.1.to_owned(), ""),
            join(&|r| r.2.len().to_string(), " "),
            join(&|r| r.2.to_owned(), ""),
        )
    }

    /// The shape `sqlite_pages_are_index_range_scans` (tests/audit_browse.rs)
    /// checks the plan of: the stored nodes in one `OR` of primary keys,
    /// each hashed subtree's leaves a select of its own, parameters in
    /// order.
    #[test]
    fn subtrees_are_read_as_the_plan_test_reads_them() {
        let text = nodes_and_leaves_sql(2, 2);
        let parts: Vec<&str> = text.split(" UNION ALL ").collect();
        assert_eq!(parts.len(), 3, "{text}");
        assert_eq!(
            parts[0],
            "SELECT level, idx, hash FROM audit_nodes WHERE (log = $1 AND level = $2 AND idx = $3) \
             OR (log = $1 AND level = $4 AND idx = $5)"
        );
        for (part, (a, b)) in parts[1..].iter().zip([(6, 7), (8, 9)]) {
            assert_eq!(
                *part,
                format!(
                    "SELECT CAST(-1 AS BIGINT), idx, leaf_hash FROM audit_entries \
                     WHERE log = $1 AND idx >= ${a} AND idx <= ${b}"
                )
            );
        }
        assert_eq!(
            nodes_and_leaves_sql(0, 1),
            "SELECT CAST(-1 AS BIGINT), idx, leaf_hash FROM audit_entries \
             WHERE log = $1 AND idx >= $2 AND idx <= $3"
        );
        assert_eq!(hashed_range(2, 3), Some((12, 4)));
        assert_eq!(hashed_range(1, u64::MAX), None);
    }

    #[test]
    fn consumed_ids_become_runs_of_consecutive_ids() {
        assert_eq!(id_runs(&[]), []);
        assert_eq!(id_runs(&[7]), [(7, 7)]);
        assert_eq!(id_runs(&[3, 4, 5, 6]), [(3, 6)]);
        assert_eq!(
            id_runs(&[9, 3, 4, 11, 10, 4, 20]),
            [(3, 4), (9, 11), (20, 20)]
        );
        assert_eq!(
            id_runs(&[i64::MAX - 1, i64::MAX]),
            [(i64::MAX - 1, i64::MAX)]
        );
        assert_eq!(
            run_filter(1, 2),
            "(id >= $1 AND id <= $2) OR (id >= $3 AND id <= $4)"
        );
    }

    #[test]
    fn packed_outbox_batches_unpack_in_id_order() -> StoreResult<()> {
        assert!(unpack_outbox(None)?.is_empty());
        let packed = r#"[[5,"ten_01m94e0ymberm8e581cwz204m4","2026-12-06T01:03:20.730389Z","ten_01m94e0ymberm8e581cwz204m4","op_1","a.b","s","{\"k\":[1,\"Zoë\"]}"],
            [2,"system","2026-12-06T01:03:20.000000Z",null,"system","c","t","{}"]]"#;
        let records = unpack_outbox(Some(packed.to_owned()))?;
        assert_eq!(
            records.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [2, 5]
        );
        assert_eq!(records[0].1.tenant_id, None);
        assert_eq!(records[1].1.details, serde_json::json!({"k": [1, "Zoë"]}));
        assert_eq!(
            records[1].1.at,
            time::macros::datetime!(2026-12-06 01:03:20.730389 UTC)
        );
        for corrupt in [
            "not json",
            r#"[[1,"system","yesterday",null,"a","b","c","{}"]]"#,
            r#"[[1,"system","2026-12-06T01:03:20Z",null,"a","b","c","{"]]"#,
        ] {
            assert!(
                matches!(
                    unpack_outbox(Some(corrupt.to_owned())),
                    Err(StoreError::Corrupt(_))
                ),
                "{corrupt}"
            );
        }
        Ok(())
    }

    #[test]
    fn packed_pages_unpack_whatever_the_leaves_hold() -> StoreResult<()> {
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        let leaves = [r#"{"a":"x y"}"#, r#"{"name":"Zoë 3 7 "}"#, "{}"];
        // Out of order, as an aggregate may see them.
        let unpacked = unpack_leaves(pack(&[
            (6, &b, leaves[1]),
            (5, &a, leaves[0]),
            (7, &a, leaves[2]),
        ]))?;
        assert_eq!(
            unpacked
                .iter()
                .map(|l| (l.idx, l.leaf.as_str()))
                .collect::<Vec<_>>(),
            [(5, leaves[0]), (6, leaves[1]), (7, leaves[2])]
        );
        assert_eq!(unpacked[1].leaf_hash, [0xcd; 32]);
        assert!(unpack_leaves((None, None, None, None))?.is_empty());
        let good = pack(&[(5, &a, "Zoë")]);
        let some = |s: &str| Some(s.to_owned());
        for corrupt in [
            (some("x"), good.1.clone(), good.2.clone(), good.3.clone()),
            (good.0.clone(), some("abcd"), good.2.clone(), good.3.clone()),
            (
                good.0.clone(),
                some(&"zz".repeat(32)),
                good.2.clone(),
                good.3.clone(),
            ),
            (good.0.clone(), good.1.clone(), some("9"), good.3.clone()),
            // The length ends inside a multi-byte character.
            (good.0.clone(), good.1.clone(), some("3"), good.3.clone()),
            (good.0.clone(), good.1.clone(), some("4 1"), good.3.clone()),
            (good.0.clone(), good.1.clone(), good.2.clone(), some("Zoë!")),
        ] {
            assert!(
                matches!(unpack_leaves(corrupt.clone()), Err(StoreError::Corrupt(_))),
                "{corrupt:?}"
            );
        }
        Ok(())
    }
}
