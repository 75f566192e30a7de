//! Browsing the audit log (`list_audit_entries` and the reads beside it),
//! on SQLite and, with `GATEHOUSE_TEST_DATABASE_URL`, on PostgreSQL: every
//! filter and every page size returns exactly what a naive filter and sort
//! of all entries returns, in the same order, with no row twice or missed.

use std::sync::Arc;

use gatehouse_audit::{Frontier, Hash, leaf_hash};
use gatehouse_core::audit::{AuditCheckpoint, AuditEntry, AuditNode, AuditRecord};
use gatehouse_core::store::{ActionFilter, AuditCursor, AuditFilter, AuditRow, Store, StoreError};
use time::{Duration, OffsetDateTime};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const LOGS: [&str; 3] = ["system", "ten_a", "ten_b"];
const ACTORS: [&str; 3] = ["op_ann", "op_bob", "system"];
const ACTIONS: [&str; 5] = [
    "workflow.started",
    "workflow.step.succeeded",
    "workflowx.odd",
    "event.received",
    "tenant.created",
];

/// Appends `per_log` entries to each log. Times interleave across logs and
/// repeat (several entries share an instant), so the sort key's later
/// columns matter.
async fn fill(store: &Arc<dyn Store>, per_log: u64) -> Result<Vec<AuditRow>, StoreError> {
    let start = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
    let mut all = Vec::new();
    for (l, log) in LOGS.iter().enumerate() {
        let mut tree = Frontier::new();
        let mut entries = Vec::new();
        let mut nodes = Vec::new();
        for idx in 0..per_log {
            let n = idx as usize + l;
            let leaf = format!(r#"{{"idx":{idx},"log":"{log}"}}"#);
            let hash = leaf_hash(leaf.as_bytes());
            tree.push_with(hash, |id, h| {
                nodes.push(AuditNode {
                    level: id.level,
                    index: id.index,
                    hash: *h.as_bytes(),
                });
            })
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
            // Two entries per second, in 1.5 µs steps within it: equal
            // times across logs, and sub-second times.
            let at = start
                + Duration::seconds((idx / 2) as i64)
                + Duration::microseconds((idx % 2) as i64 * 1_500);
            let entry = AuditEntry {
                idx,
                at,
                actor: ACTORS[n % ACTORS.len()].to_owned(),
                action: ACTIONS[n % ACTIONS.len()].to_owned(),
                subject: format!("subject-{n}"),
                leaf,
                leaf_hash: *hash.as_bytes(),
            };
            all.push(AuditRow {
                log: (*log).to_owned(),
                entry: entry.clone(),
            });
            entries.push(entry);
        }
        store.append_audit(log, 0, &entries, &nodes, &[]).await?;
    }
    all.sort_by(|a, b| {
        (a.entry.at, a.log.as_bytes(), a.entry.idx).cmp(&(
            b.entry.at,
            b.log.as_bytes(),
            b.entry.idx,
        ))
    });
    Ok(all)
}

fn matches(filter: &AuditFilter, row: &AuditRow) -> bool {
    filter.log.as_ref().is_none_or(|l| *l == row.log)
        && filter.actor.as_ref().is_none_or(|a| *a == row.entry.actor)
        && match &filter.action {
            None => true,
            Some(ActionFilter::Exact(a)) => *a == row.entry.action,
            Some(ActionFilter::Prefix(p)) => row.entry.action.starts_with(p.as_str()),
        }
        && filter.since.is_none_or(|s| row.entry.at >= s)
        && filter.until.is_none_or(|u| row.entry.at < u)
}

/// Every page of `filter`, through cursors that go through their text form.
async fn pages(
    store: &Arc<dyn Store>,
    filter: &AuditFilter,
    limit: u32,
) -> Result<Vec<AuditRow>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    let mut cursor: Option<AuditCursor> = None;
    loop {
        let page = store
            .list_audit_entries(filter, cursor.as_ref(), limit)
            .await?;
        assert!(page.len() <= limit as usize);
        let Some(last) = page.last() else { break };
        let text = AuditCursor::after(last).encode();
        cursor = Some(AuditCursor::decode(&text)?);
        let full = page.len() == limit as usize;
        out.extend(page);
        if !full {
            break;
        }
    }
    Ok(out)
}

mod cases {
    use super::*;

    pub async fn every_filter_and_page_size_matches_a_naive_scan(
        store: Arc<dyn Store>,
    ) -> TestResult {
        let all = fill(&store, 40).await?;
        let t = |s: i64| Some(all[0].entry.at + Duration::seconds(s));
        let filters = [
            AuditFilter::default(),
            AuditFilter {
                log: Some("ten_a".into()),
                ..AuditFilter::default()
            },
            AuditFilter {
                actor: Some("op_bob".into()),
                ..AuditFilter::default()
            },
            AuditFilter {
                action: Some(ActionFilter::parse("workflow.*")?),
                ..AuditFilter::default()
            },
            AuditFilter {
                action: Some(ActionFilter::parse("event.received")?),
                ..AuditFilter::default()
            },
            AuditFilter {
                since: t(3),
                until: t(9),
                ..AuditFilter::default()
            },
            AuditFilter {
                log: Some("ten_b".into()),
                actor: Some("system".into()),
                action: Some(ActionFilter::parse("workflow.*")?),
                since: t(1),
                until: t(15),
            },
            AuditFilter {
                log: Some("ten_nobody".into()),
                ..AuditFilter::default()
            },
        ];
        for filter in &filters {
            let expected: Vec<AuditRow> =
                all.iter().filter(|r| matches(filter, r)).cloned().collect();
            for limit in [1, 7, 1000] {
                let got = pages(&store, filter, limit).await?;
                assert_eq!(got, expected, "{filter:?}, pages of {limit}");
            }
        }
        // The prefix is a whole segment: `workflow.*` leaves `workflowx.odd` out.
        let prefixed = pages(&store, &filters[3], 1000).await?;
        assert!(!prefixed.is_empty());
        assert!(
            prefixed
                .iter()
                .all(|r| r.entry.action.starts_with("workflow."))
        );
        Ok(())
    }

    pub async fn single_entries_leaves_sizes_and_checkpoints(store: Arc<dyn Store>) -> TestResult {
        let all = fill(&store, 10).await?;
        assert_eq!(store.audit_log_size("ten_a").await?, Some(10));
        assert_eq!(store.audit_log_size("ten_nobody").await?, None);
        let row = all
            .iter()
            .find(|r| r.log == "ten_b" && r.entry.idx == 4)
            .ok_or("no row")?;
        assert_eq!(store.audit_entry("ten_b", 4).await?, row.entry);
        assert!(matches!(
            store.audit_entry("ten_b", 10).await,
            Err(StoreError::NotFound("audit entry"))
        ));
        assert!(matches!(
            store.audit_entry("ten_nobody", 0).await,
            Err(StoreError::NotFound("audit entry"))
        ));
        let leaves = store.audit_leaves("ten_b", 3..7).await?;
        assert_eq!(
            leaves.iter().map(|l| l.idx).collect::<Vec<_>>(),
            [3, 4, 5, 6]
        );
        for leaf in &leaves {
            assert_eq!(
                Hash::from_bytes(leaf.leaf_hash),
                leaf_hash(leaf.leaf.as_bytes())
            );
        }
        assert!(store.audit_leaves("ten_b", 10..14).await?.is_empty());

        let checkpoint = AuditCheckpoint {
            log: "ten_a".into(),
            size: 5,
            note: "a note\n".into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        store.put_checkpoint(&checkpoint).await?;
        assert_eq!(store.audit_checkpoint("ten_a", 5).await?, Some(checkpoint));
        assert_eq!(store.audit_checkpoint("ten_a", 6).await?, None);
        assert_eq!(store.audit_checkpoint("ten_b", 5).await?, None);
        Ok(())
    }

    pub async fn cursors_and_action_filters_are_parsed_strictly(
        _store: Arc<dyn Store>,
    ) -> TestResult {
        for bad in ["", "x", "not base64!", "MTI6YQ"] {
            assert!(AuditCursor::decode(bad).is_err(), "{bad:?}");
        }
        let cursor = AuditCursor {
            at: OffsetDateTime::UNIX_EPOCH + Duration::microseconds(1_234_567),
            log: "ten_a:odd".into(),
            idx: 42,
        };
        assert_eq!(AuditCursor::decode(&cursor.encode())?, cursor);
        assert_eq!(
            ActionFilter::parse("workflow.*")?,
            ActionFilter::Prefix("workflow.".into())
        );
        assert_eq!(
            ActionFilter::parse("event.received")?,
            ActionFilter::Exact("event.received".into())
        );
        for bad in ["", "*", ".*", "work*flow", "a.*.*"] {
            assert!(ActionFilter::parse(bad).is_err(), "{bad:?}");
        }
        Ok(())
    }
}

/// On SQLite, every filtered page (but an action prefix) is a range scan
/// of an index in sort order: no table scan, no sort. The statements have
/// the shapes `list_audit_entries` builds.
#[tokio::test]
async fn sqlite_pages_are_index_range_scans() -> TestResult {
    let db = gatehouse_store::testing::TestDatabase::sqlite().await?;
    // Eight entries a log: each completes a subtree of height 3.
    fill(&db.store, 8).await?;
    let pool = sqlx::SqlitePool::connect(&db.url).await?;
    let select = "SELECT log, idx, at, actor, action, subject, leaf, leaf_hash FROM audit_entries";
    let cases = [
        (
            "(at, log, idx) > ($1, $2, $3) ORDER BY at, log, idx",
            "audit_entries_by_time",
        ),
        (
            "log = $1 AND (at, idx) > ($2, $3) ORDER BY at, log, idx",
            "audit_entries_by_log_time",
        ),
        (
            "actor = $1 AND (at, log, idx) > ($2, $3, $4) ORDER BY at, log, idx",
            "audit_entries_by_actor",
        ),
        (
            "action = $1 AND at >= $2 AND at < $3 ORDER BY at, log, idx",
            "audit_entries_by_action",
        ),
    ];
    for (filter, index) in cases {
        let text = format!("EXPLAIN QUERY PLAN {select} WHERE {filter} LIMIT 100");
        let mut query = sqlx::query_as::<_, (i64, i64, i64, String)>(&text);
        for _ in 0..filter.matches('$').count() {
            query = query.bind("x");
        }
        let rows = query.fetch_all(&pool).await?;
        let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
        assert!(
            plan.iter()
                .any(|step| step.starts_with("SEARCH") && step.contains(index)),
            "{filter}: {plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{filter}: {plan:?}"
        );
    }
    // The nodes of a proof: one primary-key lookup each for the stored
    // subtrees, one range of the entries' primary key for each subtree
    // hashed from leaf hashes (an `OR` of the ranges is searched by `log`
    // alone, every entry of the log).
    let text = "EXPLAIN QUERY PLAN SELECT level, idx, hash FROM audit_nodes WHERE \
        (log = $1 AND level = $2 AND idx = $3) OR (log = $1 AND level = $4 AND idx = $5) \
        UNION ALL SELECT CAST(-1 AS BIGINT), idx, leaf_hash FROM audit_entries \
        WHERE log = $1 AND idx >= $6 AND idx <= $7 \
        UNION ALL SELECT CAST(-1 AS BIGINT), idx, leaf_hash FROM audit_entries \
        WHERE log = $1 AND idx >= $8 AND idx <= $9";
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(text)
        .bind("system")
        .bind(3_i64)
        .bind(0_i64)
        .bind(4_i64)
        .bind(1_i64)
        .bind(8_i64)
        .bind(9_i64)
        .bind(12_i64)
        .bind(15_i64)
        .fetch_all(&pool)
        .await?;
    let plan: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(
        plan.iter()
            .filter(|s| s.contains("(log=? AND level=? AND idx=?)"))
            .count(),
        2,
        "{plan:?}"
    );
    assert_eq!(
        plan.iter()
            .filter(|s| s.contains("audit_entries") && s.contains("(log=? AND idx>? AND idx<?)"))
            .count(),
        2,
        "{plan:?}"
    );
    assert!(!plan.iter().any(|s| s.starts_with("SCAN")), "{plan:?}");
    // Only the subtrees of height 3 and up are stored.
    let (low,): (i64,) = sqlx::query_as("SELECT count(*) FROM audit_nodes WHERE level < 3")
        .fetch_one(&pool)
        .await?;
    let (high,): (i64,) = sqlx::query_as("SELECT count(*) FROM audit_nodes WHERE level >= 3")
        .fetch_one(&pool)
        .await?;
    assert_eq!((low, high > 0), (0, true), "{low} {high}");
    pool.close().await;
    db.cleanup().await;
    Ok(())
}

macro_rules! browse_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() -> super::TestResult {
                    let db = gatehouse_store::testing::TestDatabase::sqlite().await?;
                    let result = super::cases::$case(db.store.clone()).await;
                    db.cleanup().await;
                    result
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() -> super::TestResult {
                    let Some(db) = gatehouse_store::testing::TestDatabase::postgres(stringify!($case)).await? else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return Ok(());
                    };
                    let result = super::cases::$case(db.store.clone()).await;
                    db.cleanup().await;
                    result
                }
            )*
        }
    };
}

browse_tests!(
    every_filter_and_page_size_matches_a_naive_scan,
    single_entries_leaves_sizes_and_checkpoints,
    cursors_and_action_filters_are_parsed_strictly,
);

/// On SQLite, committed pages reach the database file without anyone
/// checkpointing by hand and well before the writer's own automatic
/// checkpoint (64 MB of WAL): the background task copies them.
#[tokio::test]
async fn sqlite_checkpoints_the_wal_in_the_background() -> TestResult {
    let db = gatehouse_store::testing::TestDatabase::sqlite().await?;
    let file = db
        .url
        .strip_prefix("sqlite://")
        .map(std::path::PathBuf::from)
        .ok_or("not a file URL")?;
    let before = std::fs::metadata(&file)?.len();
    // About 4 MB of records, far below the automatic checkpoint.
    let filler = "x".repeat(4_000);
    let records: Vec<AuditRecord> = (0..1_000)
        .map(|i| AuditRecord {
            at: OffsetDateTime::UNIX_EPOCH,
            tenant_id: None,
            actor: "test".into(),
            action: "test.filler".into(),
            subject: format!("s{i}"),
            details: serde_json::json!({ "filler": filler }),
        })
        .collect();
    for chunk in records.chunks(100) {
        db.store.queue_audit(chunk).await?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let size = std::fs::metadata(&file)?.len();
        if size >= before + 3_000_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {size} bytes (from {before}): the WAL was not checkpointed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    db.cleanup().await;
    Ok(())
}
