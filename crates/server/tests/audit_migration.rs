//! Migration 0014 (the audit log's entries and nodes stored in primary-key
//! order on SQLite) and 0025 (node rows below height 3 deleted) keep a log
//! written before them: a database migrated to 0013 gets a log from the
//! real sequencer with signed checkpoints, is then migrated to the current
//! schema, and still verifies, reads back the same entries and proofs, and
//! takes further appends that verify too. On SQLite, and on PostgreSQL
//! when `GATEHOUSE_TEST_DATABASE_URL` is set.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use gatehouse_audit::{
    Checkpoint, Ed25519Signer, Frontier, Hash, KeyName, ProofPlan, Signer as _, verify_inclusion,
};
use gatehouse_core::audit::{AuditCheckpoint, AuditRecord, SYSTEM_LOG, log_origin};
use gatehouse_core::store::Store;
use gatehouse_server::audit::Sequencer;
use gatehouse_server::audit_verify::{VerifyStoredOptions, verify_stored};
use gatehouse_store::testing::TEST_DATABASE_URL;
use gatehouse_store::{PgStore, SqliteStore};
use gatehouse_vault::{Keyring, LocalKeyFile};
use serde_json::json;
use time::{Duration, OffsetDateTime};

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const KEY_NAME: &str = "gatehouse.test/audit";
/// The last migration before the audit tables changed.
const BEFORE: &str = "0013";

/// Copies the migrations up to [`BEFORE`] of `backend` into `dir`.
fn migrations_before(backend: &str, dir: &Path) -> Result<usize, Error> {
    let source =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../store/migrations/{backend}"));
    let mut copied = 0;
    for file in std::fs::read_dir(source)? {
        let file = file?;
        let name = file.file_name().to_string_lossy().into_owned();
        if name.ends_with(".sql") && name.as_str() <= format!("{BEFORE}_~").as_str() {
            std::fs::copy(file.path(), dir.join(&name))?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Appends `count` records to the system log through the sequencer and
/// signs a checkpoint of its new size; returns the note.
async fn grow(
    store: &Arc<dyn Store>,
    sequencer: &Sequencer,
    signer: &Ed25519Signer,
    from: u64,
    count: u64,
) -> Result<String, Error> {
    let start = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
    let records: Vec<AuditRecord> = (from..from + count)
        .map(|i| AuditRecord {
            at: start + Duration::seconds(i as i64),
            tenant_id: None,
            actor: if i % 3 == 0 { "op_a" } else { "system" }.into(),
            action: format!("test.kind{}", i % 4),
            subject: format!("thing-{i}"),
            details: json!({"n": i, "name": "Zoë"}),
        })
        .collect();
    store.queue_audit(&records).await?;
    while sequencer.run_once(700).await? > 0 {}
    let head = store.audit_head(SYSTEM_LOG).await?;
    assert_eq!(head.size, from + count);
    let frontier = Frontier::restore(
        head.size,
        head.frontier
            .iter()
            .map(|n| Hash::from_bytes(n.hash))
            .collect(),
    )?;
    let note = Checkpoint::new(log_origin(KEY_NAME, SYSTEM_LOG), head.size, frontier.root())?
        .sign(signer)
        .await?
        .to_string();
    store
        .put_checkpoint(&AuditCheckpoint {
            log: SYSTEM_LOG.into(),
            size: head.size,
            note: note.clone(),
            created_at: start,
        })
        .await?;
    Ok(note)
}

fn options(signer: &Ed25519Signer, kept: &[String]) -> VerifyStoredOptions {
    let mut options = VerifyStoredOptions::new(
        log_origin(KEY_NAME, SYSTEM_LOG),
        vec![signer.verifier_key()],
    );
    options.kept = kept.to_vec();
    options
}

/// Every inclusion proof at `size`, from the stored nodes, reaches the root.
async fn proofs_hold(store: &Arc<dyn Store>, size: u64) -> TestResult {
    let root_plan = ProofPlan::root(size);
    let ids: Vec<(u8, u64)> = root_plan
        .nodes()
        .iter()
        .map(|n| (n.level, n.index))
        .collect();
    let root = root_plan.assemble_root(
        &store
            .audit_nodes(SYSTEM_LOG, &ids)
            .await?
            .into_iter()
            .map(Hash::from_bytes)
            .collect::<Vec<_>>(),
    )?;
    for index in (0..size).step_by(7) {
        let plan = ProofPlan::inclusion(index, size)?;
        let mut ids = vec![(0u8, index)];
        ids.extend(plan.nodes().iter().map(|n| (n.level, n.index)));
        let hashes: Vec<Hash> = store
            .audit_nodes(SYSTEM_LOG, &ids)
            .await?
            .into_iter()
            .map(Hash::from_bytes)
            .collect();
        let path = plan.assemble(&hashes[1..])?;
        verify_inclusion(&hashes[0], index, size, &path, &root)?;
    }
    Ok(())
}

/// `store` is a database migrated to [`BEFORE`]: writes a log, migrates,
/// checks it.
async fn a_log_written_before_0014_still_verifies(store: Arc<dyn Store>) -> TestResult {
    let keys = tempfile::tempdir()?;
    let (provider, _) = LocalKeyFile::open_or_create(&keys.path().join("kek.json"))?;
    let keyring = Arc::new(Keyring::new(
        Arc::new(provider),
        store.clone(),
        StdDuration::from_secs(60),
    ));
    let signer = Ed25519Signer::generate(KeyName::parse(KEY_NAME)?)?;
    let mut notes = Vec::new();
    {
        let sequencer = Sequencer::new(store.clone(), keyring.clone());
        notes.push(grow(&store, &sequencer, &signer, 0, 1_500).await?);
        notes.push(grow(&store, &sequencer, &signer, 1_500, 1_333).await?);
    }
    let before = store.audit_entries(SYSTEM_LOG, 0, 10_000).await?;
    assert_eq!(before.len(), 2_833);
    verify_stored(store.as_ref(), SYSTEM_LOG, options(&signer, &notes), |_| {}).await?;

    store.migrate().await?;
    assert_eq!(
        store.schema_status().await?.applied,
        store.schema_status().await?.known
    );

    // The same rows, byte for byte, and a log that verifies against the
    // checkpoints signed before the migration (stored, and kept).
    let after = store.audit_entries(SYSTEM_LOG, 0, 10_000).await?;
    assert_eq!(after, before);
    let report =
        verify_stored(store.as_ref(), SYSTEM_LOG, options(&signer, &notes), |_| {}).await?;
    assert_eq!((report.entries, report.stored_checkpoints), (2_833, 2));
    proofs_hold(&store, 2_833).await?;
    assert_eq!(
        store.audit_entry(SYSTEM_LOG, 1_234).await?,
        before[1_234].clone()
    );

    // A sequencer that restores its frontier from the migrated nodes
    // appends after them, and the grown log verifies against every
    // checkpoint, old and new.
    let sequencer = Sequencer::new(store.clone(), keyring);
    notes.push(grow(&store, &sequencer, &signer, 2_833, 1_200).await?);
    let report =
        verify_stored(store.as_ref(), SYSTEM_LOG, options(&signer, &notes), |_| {}).await?;
    assert_eq!((report.entries, report.stored_checkpoints), (4_033, 3));
    proofs_hold(&store, 4_033).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_log_written_before_0014_still_verifies() -> TestResult {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
    let migrations = tempfile::tempdir()?;
    assert_eq!(migrations_before("sqlite", migrations.path())?, 13);
    {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                url.parse::<sqlx::sqlite::SqliteConnectOptions>()?
                    .create_if_missing(true)
                    .foreign_keys(true),
            )
            .await?;
        sqlx::migrate::Migrator::new(migrations.path())
            .await?
            .run(&pool)
            .await?;
        plant_low_nodes(&pool).await?;
        pool.close().await;
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await?);
    let status = store.schema_status().await?;
    assert_eq!(status.applied, 13);
    assert!(status.known > 13, "{status:?}");
    let result = a_log_written_before_0014_still_verifies(store.clone()).await;
    store.close().await;
    result?;
    let pool = sqlx::SqlitePool::connect(&url).await?;
    let lowest = lowest_node_rows(&pool).await;
    pool.close().await;
    assert_eq!(lowest?, Some(LOWEST_AFTER_0025));
    Ok(())
}

/// After migration 0025 the lowest node rows are the 504 subtrees of
/// height 3 of the 4,033 entries [`a_log_written_before_0014_still_verifies`]
/// leaves (then 252 of height 4, and so on up).
const LOWEST_AFTER_0025: (i64, i64) = (3, 4_033 / 8);

/// Plants node rows below height 3, as builds before 0025 stored them
/// (today's sequencer no longer writes them), for the migration to delete.
async fn plant_low_nodes<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> TestResult
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query("INSERT INTO audit_logs (log, size) VALUES ($1, 0)")
        .bind(SYSTEM_LOG)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO audit_nodes (log, level, idx, hash) VALUES ($1, 0, 0, $2), ($1, 2, 5, $2)",
    )
    .bind(SYSTEM_LOG)
    .bind("ab".repeat(32))
    .execute(pool)
    .await?;
    Ok(())
}

/// The lowest level that has node rows, and how many it has.
async fn lowest_node_rows<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<Option<(i64, i64)>, Error>
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> (i64, i64): sqlx::FromRow<'r, DB::Row>,
{
    Ok(sqlx::query_as(
        "SELECT level, count(*) FROM audit_nodes GROUP BY level ORDER BY level LIMIT 1",
    )
    .fetch_optional(pool)
    .await?)
}

/// Migration 0025 deleted the planted rows (see [`LOWEST_AFTER_0025`]).
async fn low_nodes_gone_pg(url: &str) -> TestResult {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    let lowest = lowest_node_rows(&pool).await;
    pool.close().await;
    assert_eq!(lowest?, Some(LOWEST_AFTER_0025));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_log_written_before_0014_still_verifies() -> TestResult {
    let Ok(base) = std::env::var(TEST_DATABASE_URL) else {
        return Ok(());
    };
    let pg = PgStore::connect_isolated(&base, "audit_migration").await?;
    let migrations = tempfile::tempdir()?;
    assert_eq!(migrations_before("postgres", migrations.path())?, 13);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&pg.url_for_schema(&base))
        .await?;
    let migrated = match sqlx::migrate::Migrator::new(migrations.path()).await {
        Ok(migrator) => match migrator.run(&pool).await {
            Ok(()) => plant_low_nodes(&pool).await,
            Err(err) => Err(err.into()),
        },
        Err(err) => Err(err.into()),
    };
    pool.close().await;
    let store: Arc<dyn Store> = Arc::new(pg.clone());
    let result = match migrated {
        Ok(()) => a_log_written_before_0014_still_verifies(store.clone()).await,
        Err(err) => Err(err),
    };
    store.close().await;
    let result = match result {
        Ok(()) => low_nodes_gone_pg(&pg.url_for_schema(&base)).await,
        Err(err) => Err(err),
    };
    let admin = PgStore::connect(&base).await?;
    admin.drop_named_schema(&pg).await?;
    admin.close_pool().await;
    result
}
