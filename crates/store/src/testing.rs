//! Throw-away databases for tests: a SQLite file in a temporary directory,
//! or a fresh schema in the PostgreSQL database named by
//! `GATEHOUSE_TEST_DATABASE_URL`. Each test gets its own, so tests run in
//! parallel without seeing each other's rows.

use std::sync::Arc;

use gatehouse_core::store::{Store, StoreResult};

use crate::{PgStore, SqliteStore};

/// The variable naming the PostgreSQL server for tests.
pub const TEST_DATABASE_URL: &str = "GATEHOUSE_TEST_DATABASE_URL";

/// A migrated, empty store that cleans up after itself.
#[derive(Debug)]
pub struct TestDatabase {
    /// The store.
    pub store: Arc<dyn Store>,
    /// A URL another process can use to reach the same database.
    pub url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Sqlite(
        #[expect(
            dead_code,
            reason = "held so the directory lives as long as the database"
        )]
        tempfile::TempDir,
    ),
    Postgres(PgStore),
}

impl TestDatabase {
    /// A fresh SQLite database in a temporary directory.
    pub async fn sqlite() -> StoreResult<Self> {
        let dir = tempfile::tempdir().map_err(|e| gatehouse_core::store::StoreError::Backend {
            context: "creating a temporary directory",
            source: Box::new(e),
        })?;
        let url = format!("sqlite://{}", dir.path().join("gatehouse.db").display());
        let store = SqliteStore::connect(&url).await?;
        store.migrate().await?;
        Ok(Self {
            store: Arc::new(store),
            url,
            kind: Kind::Sqlite(dir),
        })
    }

    /// A fresh schema in the PostgreSQL test database, or `None` when
    /// `GATEHOUSE_TEST_DATABASE_URL` is not set.
    pub async fn postgres(label: &str) -> StoreResult<Option<Self>> {
        let Ok(base) = std::env::var(TEST_DATABASE_URL) else {
            return Ok(None);
        };
        let store = PgStore::connect_isolated(&base, label).await?;
        store.migrate().await?;
        let url = store.url_for_schema(&base);
        Ok(Some(Self {
            store: Arc::new(store.clone()),
            url,
            kind: Kind::Postgres(store),
        }))
    }

    /// The path of the SQLite file, if this is SQLite.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        match &self.kind {
            Kind::Sqlite(_) => self
                .url
                .strip_prefix("sqlite://")
                .map(std::path::PathBuf::from),
            Kind::Postgres(_) => None,
        }
    }

    /// Closes the store and removes the database.
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Kind::Postgres(pg) = &self.kind
            && let Ok(admin) =
                PgStore::connect(&std::env::var(TEST_DATABASE_URL).unwrap_or_default()).await
        {
            let _ = admin.drop_named_schema(pg).await;
            admin.close_pool().await;
        }
    }
}
