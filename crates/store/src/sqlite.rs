//! The embedded back end: one SQLite file in WAL mode.
//!
//! Settings, and why: WAL so readers never block the writer; `synchronous =
//! NORMAL`, which in WAL mode keeps every committed transaction across a
//! process crash and can lose only the last transactions on a power loss;
//! foreign keys on; a busy timeout so concurrent writers queue instead of
//! failing; and `secure_delete` so that the bytes of a destroyed tenant key
//! are overwritten in the file, not merely unlinked from the b-tree.
//!
//! WAL checkpoints (copying committed pages into the database file, with
//! its `fsync`) run beside the writer, not in it: a background task asks
//! for a passive checkpoint every [`CHECKPOINT_EVERY`] on a reader
//! connection, so the writer's commits never wait for the disk. The
//! writer's own automatic checkpoint stays as a safety net, at
//! [`AUTOCHECKPOINT_PAGES`], for when the task falls behind; and the WAL
//! file is cut back to [`WAL_SIZE_LIMIT`] once checkpointed.
//!
//! The writer connection alone has a larger page cache
//! ([`WRITER_CACHE_KIB`]) and keeps its temporary files in memory
//! (`temp_store = MEMORY`): a transaction of a few MB, such as an audit
//! append, then neither spills dirty pages into the WAL before its commit
//! nor writes the statement journal of each multi-row `INSERT` to a file
//! (docs/benchmarks.md, "bench audit"). The price: the writer's sorts and
//! temporary tables stay in memory too, so a migration that builds an index
//! over a large table holds that sort in memory.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use gatehouse_core::store::{Backend, SchemaStatus, Store, StoreError, StoreResult};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::db_error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How often the background task checkpoints the WAL.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// WAL pages after which the writer checkpoints by itself (64 MB of 4 KB
/// pages; SQLite's default is 1,000).
pub const AUTOCHECKPOINT_PAGES: u32 = 16_384;
/// The size the WAL file is cut back to once checkpointed.
pub const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// The writer connection's page cache, in KiB (SQLite's default is 2,000).
pub const WRITER_CACHE_KIB: u32 = 16_384;

/// A store in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Readers (WAL lets them run beside the writer).
    pub(crate) pool: SqlitePool,
    /// The one writer connection: SQLite admits one writer at a time, and
    /// queueing in the pool is far cheaper than sleeping in the busy handler.
    pub(crate) writer: SqlitePool,
    /// Where lease claims run: the writer (its commits do not wait for a
    /// flush anyway, with `synchronous = NORMAL` in WAL mode).
    pub(crate) claimer: SqlitePool,
    /// Alive while any clone of the store is: the checkpoint task stops
    /// when the last one is dropped.
    _alive: Arc<()>,
}

impl SqliteStore {
    /// `AuditStore::audit_leaves`: one packed row per page (see
    /// [`crate::audit_sql::PACKED_LEAVES_SQL`]).
    async fn read_audit_leaves(
        &self,
        log: &str,
        indexes: std::ops::Range<u64>,
    ) -> StoreResult<Vec<gatehouse_core::store::AuditLeaf>> {
        let packed: crate::audit_sql::PackedLeaves =
            sqlx::query_as(crate::audit_sql::PACKED_LEAVES_SQL)
                .bind(log)
                .bind(crate::audit_sql::index_bound(indexes.start))
                .bind(crate::audit_sql::index_bound(indexes.end))
                .fetch_one(&self.pool)
                .await
                .map_err(db_error("reading audit leaves"))?;
        crate::audit_sql::unpack_leaves(packed)
    }

    /// `AuditStore::pending_audit`: one packed row per batch (see
    /// [`crate::audit_sql::PACKED_OUTBOX_SQL`]), read on a reader
    /// connection so that the writer connection's thread only writes (WAL:
    /// each read sees every commit made before it started).
    async fn read_audit_outbox(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, gatehouse_core::audit::AuditRecord)>> {
        let (packed,): (Option<String>,) = sqlx::query_as(crate::audit_sql::PACKED_OUTBOX_SQL)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await
            .map_err(db_error("reading the audit outbox"))?;
        crate::audit_sql::unpack_outbox(packed)
    }
}

impl SqliteStore {
    /// Opens (creating if needed, with its directory) the database at `url`,
    /// such as `sqlite://gatehouse-data/gatehouse.db`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(db_error("parsing the SQLite URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .pragma("secure_delete", "ON")
            .pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES.to_string())
            .pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string());
        let path = options.get_filename();
        let in_memory = path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:");
        if !in_memory && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Backend {
                context: "creating the database directory",
                source: Box::new(e),
            })?;
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
                    .pragma("temp_store", "MEMORY"),
            )
            .await
            .map_err(db_error("opening the SQLite database"))?;
        if in_memory {
            // An in-memory database exists per connection: share the one.
            return Ok(Self {
                pool: writer.clone(),
                claimer: writer.clone(),
                writer,
                _alive: Arc::new(()),
            });
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.create_if_missing(false))
            .await
            .map_err(db_error("opening the SQLite database"))?;
        let alive = Arc::new(());
        tokio::spawn(checkpoint_in_background(
            pool.clone(),
            Arc::downgrade(&alive),
        ));
        Ok(Self {
            pool,
            claimer: writer.clone(),
            writer,
            _alive: alive,
        })
    }
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] on a reader connection
/// (passive: it copies what no reader still needs and never blocks the
/// writer), until the store is dropped.
async fn checkpoint_in_background(pool: SqlitePool, alive: Weak<()>) {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        if alive.strong_count() == 0 {
            break;
        }
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
        {
            Ok(_) => failures = 0,
            Err(err) => {
                failures = failures.saturating_add(1);
                // Once, then every few minutes: the writer's own
                // checkpoints still bound the WAL meanwhile.
                if failures == 1 || failures.is_multiple_of(1_000) {
                    tracing::warn!(%err, failures, "checkpointing the SQLite WAL in the background failed");
                }
            }
        }
    }
}

impl SqliteStore {
    /// After a tenant's key is destroyed: copy the WAL into the database
    /// (where `secure_delete` has zeroed the freed pages) and truncate it, so
    /// the deleted bytes do not linger in `gatehouse.db-wal`. A reader can
    /// hold the checkpoint back; the next deletion or SQLite's automatic
    /// checkpoints then finish the job, and the failure is logged.
    async fn after_shred(&self) {
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&self.writer)
            .await
        {
            Ok((0, _, _)) => {}
            Ok((busy, log, done)) => tracing::warn!(
                busy,
                log,
                done,
                "the WAL could not be fully truncated after a tenant deletion; deleted bytes may stay in it until the next checkpoint"
            ),
            Err(err) => {
                tracing::warn!(%err, "checkpointing the WAL after a tenant deletion failed")
            }
        }
    }
}

impl SqliteStore {
    /// One writer at a time: claims cannot race.
    const CLAIM_LOCK: &'static str = "";

    /// Nothing to announce: one process owns the database, and its engine
    /// wakes itself.
    async fn wake_workers(&self, _conn: &mut sqlx::SqliteConnection) -> StoreResult<()> {
        Ok(())
    }

    /// No cross-process signals on SQLite.
    async fn work_listener(
        &self,
    ) -> StoreResult<Option<Box<dyn gatehouse_core::store::WorkListener>>> {
        Ok(None)
    }
}

crate::sql::impl_store_traits!(SqliteStore, sqlx::Sqlite);
crate::engine_sql::impl_engine_store!(SqliteStore, sqlx::Sqlite);
crate::gate_sql::impl_gate_store!(SqliteStore, sqlx::Sqlite);
crate::notify_sql::impl_notification_store!(SqliteStore, sqlx::Sqlite);
crate::metrics_sql::impl_metrics_store!(SqliteStore, sqlx::Sqlite);
crate::audit_sql::impl_audit_store!(SqliteStore, sqlx::Sqlite, "");
crate::audit_key_sql::impl_audit_key_store!(SqliteStore);
crate::onboarding_sql::impl_onboarding_store!(SqliteStore, sqlx::Sqlite);
crate::connector_sql::impl_connector_store!(SqliteStore);
crate::hooks_sql::impl_hook_store!(SqliteStore);
crate::kb_sql::impl_kb_store!(SqliteStore);
crate::scim_sql::impl_scim_store!(SqliteStore);
crate::identity_sql::impl_identity_store!(SqliteStore, sqlx::Sqlite);
crate::signin_sql::impl_sign_in_store!(SqliteStore);
crate::tenant_group_sql::impl_tenant_group_store!(SqliteStore, sqlx::Sqlite);

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.writer)
            .await
            .map_err(|e| StoreError::Backend {
                context: "applying SQLite migrations",
                source: Box::new(e),
            })
    }

    async fn schema_status(&self) -> StoreResult<SchemaStatus> {
        let known = MIGRATOR.iter().count();
        let exists: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error("reading the schema status"))?;
        if exists.is_none() {
            return Ok(SchemaStatus { applied: 0, known });
        }
        let (applied,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(db_error("reading the schema status"))?;
        Ok(SchemaStatus {
            applied: usize::try_from(applied).unwrap_or(0),
            known,
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error("pinging the database"))?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    async fn pragma(pool: &SqlitePool, name: &str) -> Result<i64, sqlx::Error> {
        let (value,): (i64,) = sqlx::query_as(&format!("PRAGMA {name}"))
            .fetch_one(pool)
            .await?;
        Ok(value)
    }

    /// The writer connection has the large cache and in-memory temporary
    /// files; the readers keep SQLite's defaults.
    #[tokio::test]
    async fn the_writer_alone_has_a_large_cache_and_temp_files_in_memory()
    -> Result<(), Box<dyn std::error::Error>> {
        let db = TestDatabase::sqlite().await?;
        let store = SqliteStore::connect(&db.url).await?;
        assert_eq!(
            pragma(&store.writer, "cache_size").await?,
            -i64::from(WRITER_CACHE_KIB)
        );
        // 2: MEMORY.
        assert_eq!(pragma(&store.writer, "temp_store").await?, 2);
        assert_eq!(pragma(&store.pool, "cache_size").await?, -2000);
        assert_eq!(pragma(&store.pool, "temp_store").await?, 0);
        store.close().await;
        db.cleanup().await;
        Ok(())
    }
}
