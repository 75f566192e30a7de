//! Storage for Gatehouse: the SQLite and PostgreSQL implementations of the
//! traits in `gatehouse_core::store`.
//!
//! Both back ends run the same SQL (SQLite accepts PostgreSQL's `$1`
//! placeholders), written once in [`sql`] and instantiated for each pool
//! type; each back end owns its own migrations under `migrations/`, because
//! types (`TIMESTAMPTZ`, `BYTEA`, `STRICT` tables) differ.
//!
//! Open a store with [`connect`]: `sqlite://path/to/file.db` or
//! `postgres://user@host/db`.

mod audit_key_sql;
mod audit_sql;
mod connector_sql;
mod engine_sql;
mod gate_sql;
mod hooks_sql;
mod identity_sql;
mod kb_sql;
mod metrics_sql;
mod notify_sql;
mod onboarding_sql;
mod placeholders;
mod postgres;
mod rows;
mod scim_sql;
mod signin_sql;
mod sql;
mod sqlite;
mod tenant_group_sql;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;

use gatehouse_core::store::{Store, StoreError};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Opens the store named by `url` (without migrating it).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else {
        Err(StoreError::Backend {
            context: "opening the database",
            source: format!(
                "unsupported database URL `{}`: use sqlite://PATH or postgres://…",
                redact_url(url)
            )
            .into(),
        })
    }
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

pub(crate) fn db_error(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| StoreError::Backend {
        context,
        source: Box::new(err),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://gh:s3cret@db:5432/gatehouse"),
            "postgres://gh:***@db:5432/gatehouse"
        );
        assert_eq!(
            super::redact_url("postgres://gh@db/x"),
            "postgres://gh@db/x"
        );
        assert_eq!(super::redact_url("sqlite://a.db"), "sqlite://a.db");
    }
}
