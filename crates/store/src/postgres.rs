//! The scale-out back end: PostgreSQL, shared by several `gatehouse serve`
//! nodes.

use std::str::FromStr;

use gatehouse_core::store::{
    Backend, SchemaStatus, Store, StoreError, StoreResult, WORK_CHANNEL, WorkListener,
};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use crate::db_error;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A store in a PostgreSQL database (or one schema of it).
#[derive(Debug, Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The same pool: PostgreSQL handles concurrent writers itself.
    pub(crate) writer: PgPool,
    /// Connections with `synchronous_commit = off`, for lease claims only.
    pub(crate) claimer: PgPool,
    /// The schema this store was confined to, if any (tests, benchmarks).
    schema: Option<String>,
    /// This store's name in `NOTIFY` payloads, so that its own listener
    /// ignores the signals its own commits send (the engine in this process
    /// wakes itself without a round trip through the database).
    origin: std::sync::Arc<str>,
}

impl PgStore {
    /// `AuditStore::audit_leaves`: one row per entry.
    async fn read_audit_leaves(
        &self,
        log: &str,
        indexes: std::ops::Range<u64>,
    ) -> StoreResult<Vec<gatehouse_core::store::AuditLeaf>> {
        let rows: Vec<crate::audit_sql::LeafRow> = sqlx::query_as(crate::audit_sql::LEAVES_SQL)
            .bind(log)
            .bind(crate::audit_sql::index_bound(indexes.start))
            .bind(crate::audit_sql::index_bound(indexes.end))
            .fetch_all(&self.pool)
            .await
            .map_err(crate::db_error("reading audit leaves"))?;
        rows.into_iter().map(crate::audit_sql::leaf).collect()
    }

    /// `AuditStore::pending_audit`: one row per record.
    async fn read_audit_outbox(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, gatehouse_core::audit::AuditRecord)>> {
        let text = format!(
            "SELECT id, {} FROM audit_outbox WHERE id > $1 ORDER BY id LIMIT $2",
            crate::audit_sql::OUTBOX_COLUMNS
        );
        let rows: Vec<crate::audit_sql::OutboxRow> = sqlx::query_as(&text)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(crate::db_error("reading the audit outbox"))?;
        rows.into_iter()
            .map(crate::audit_sql::outbox_record)
            .collect()
    }
}

impl PgStore {
    /// Connects to the database at `url`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options =
            PgConnectOptions::from_str(url).map_err(db_error("parsing the PostgreSQL URL"))?;
        Self::connect_with(options, None).await
    }

    /// Creates a new, uniquely named schema in the database at `url` and
    /// connects with it as the only schema on the search path. Tests and
    /// benchmarks use this to get a fresh, isolated database each; drop it
    /// afterwards with [`PgStore::drop_named_schema`].
    pub async fn connect_isolated(url: &str, label: &str) -> StoreResult<Self> {
        let options =
            PgConnectOptions::from_str(url).map_err(db_error("parsing the PostgreSQL URL"))?;
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let schema = format!("gh_{label}_{}", uuid_suffix());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(db_error("connecting to PostgreSQL"))?;
        sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
            .execute(&admin)
            .await
            .map_err(db_error("creating a schema"))?;
        admin.close().await;
        let options = options.options([("search_path", schema.as_str())]);
        Self::connect_with(options, Some(schema)).await
    }

    async fn connect_with(options: PgConnectOptions, schema: Option<String>) -> StoreResult<Self> {
        // No ping before each use of a pooled connection (sqlx's default):
        // it costs a round trip per transaction on the engine's hot path. A
        // connection that died fails its statement instead, which callers
        // handle like any database error (the engine retries on its next
        // tick), and the pool then replaces it.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(db_error("connecting to PostgreSQL"))?;
        // The engine's claims: one statement each, whose commit does not
        // wait for the WAL flush (see `claim_due`). Two connections: claims
        // are short and one node claims at a time.
        let claimer = PgPoolOptions::new()
            .max_connections(2)
            .test_before_acquire(false)
            .connect_with(options.options([("synchronous_commit", "off")]))
            .await
            .map_err(db_error("connecting to PostgreSQL"))?;
        Ok(Self {
            writer: pool.clone(),
            claimer,
            pool,
            schema,
            origin: uuid_suffix().into(),
        })
    }

    /// `base` with this store's schema as the search path, so that another
    /// process (a server under test, a benchmark) reaches the same tables.
    pub fn url_for_schema(&self, base: &str) -> String {
        match &self.schema {
            Some(schema) => {
                let sep = if base.contains('?') { '&' } else { '?' };
                format!("{base}{sep}options[search_path]={schema}")
            }
            None => base.to_owned(),
        }
    }

    /// Drops the schema that `isolated` was confined to (made by
    /// [`PgStore::connect_isolated`]), through this store's connection.
    pub async fn drop_named_schema(&self, isolated: &PgStore) -> StoreResult<()> {
        if let Some(schema) = &isolated.schema {
            sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                .execute(&self.pool)
                .await
                .map_err(db_error("dropping a schema"))?;
        }
        Ok(())
    }

    /// Closes the connection pool.
    pub async fn close_pool(&self) {
        self.pool.close().await;
        self.claimer.close().await;
    }
}

/// 12 hex digits of randomness, for schema names.
fn uuid_suffix() -> String {
    let mut bytes = [0u8; 6];
    // A collision only makes CREATE SCHEMA fail loudly; never silent.
    let _ = gatehouse_core::error::random_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl PgStore {
    /// Concurrent claims skip rows another node is claiming.
    const CLAIM_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";

    /// Announces, at commit, that work may be due: every node's engine
    /// listening on [`WORK_CHANNEL`] wakes and claims what it can.
    async fn wake_workers(&self, conn: &mut sqlx::PgConnection) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(WORK_CHANNEL)
            .bind(&*self.origin)
            .execute(conn)
            .await
            .map_err(db_error("announcing due work"))?;
        Ok(())
    }

    /// A `LISTEN` on [`WORK_CHANNEL`], on a connection of its own.
    async fn work_listener(&self) -> StoreResult<Option<Box<dyn WorkListener>>> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(db_error("connecting a listener"))?;
        listener
            .listen(WORK_CHANNEL)
            .await
            .map_err(db_error("listening for due work"))?;
        Ok(Some(Box::new(PgWorkListener {
            listener,
            origin: self.origin.clone(),
        })))
    }

    /// Nothing to do after a tenant's key is destroyed: dead tuples are
    /// reclaimed by (auto)vacuum; WAL archives and backups are the
    /// operator's (see docs/keys.md).
    async fn after_shred(&self) {}
}

/// `LISTEN gatehouse_work`. The connection reconnects by itself on the next
/// `recv` after it drops; signals sent meanwhile are lost, which the engine's
/// idle poll covers.
#[derive(Debug)]
struct PgWorkListener {
    listener: PgListener,
    /// Signals with this payload came from this store's own commits.
    origin: std::sync::Arc<str>,
}

#[async_trait::async_trait]
impl WorkListener for PgWorkListener {
    async fn recv(&mut self) -> StoreResult<()> {
        loop {
            let signal = self
                .listener
                .recv()
                .await
                .map_err(db_error("waiting for due work"))?;
            if signal.payload() != &*self.origin {
                return Ok(());
            }
        }
    }
}

crate::sql::impl_store_traits!(PgStore, sqlx::Postgres);
crate::engine_sql::impl_engine_store!(PgStore, sqlx::Postgres);
crate::gate_sql::impl_gate_store!(PgStore, sqlx::Postgres);
crate::notify_sql::impl_notification_store!(PgStore, sqlx::Postgres);
crate::metrics_sql::impl_metrics_store!(PgStore, sqlx::Postgres);
crate::audit_sql::impl_audit_store!(PgStore, sqlx::Postgres, " COLLATE \"C\"");
crate::audit_key_sql::impl_audit_key_store!(PgStore);
crate::onboarding_sql::impl_onboarding_store!(PgStore, sqlx::Postgres);
crate::connector_sql::impl_connector_store!(PgStore);
crate::hooks_sql::impl_hook_store!(PgStore);
crate::kb_sql::impl_kb_store!(PgStore);
crate::scim_sql::impl_scim_store!(PgStore);
crate::identity_sql::impl_identity_store!(PgStore, sqlx::Postgres);
crate::signin_sql::impl_sign_in_store!(PgStore);
crate::tenant_group_sql::impl_tenant_group_store!(PgStore, sqlx::Postgres);

#[async_trait::async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend {
                context: "applying PostgreSQL migrations",
                source: Box::new(e),
            })
    }

    async fn schema_status(&self) -> StoreResult<SchemaStatus> {
        let known = MIGRATOR.iter().count();
        let exists: (Option<String>,) =
            sqlx::query_as("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
                .await
                .map_err(db_error("reading the schema status"))?;
        if exists.0.is_none() {
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
        self.claimer.close().await;
    }
}
