//! The SQL behind `ConnectorStore` (the connector directory), written once
//! for both back ends in the way of [`crate::gate_sql`]:
//! `impl_connector_store!` instantiates it for a store type with a `pool`
//! (reads) and a `writer` (writes and transactions).
//!
//! A connector's settings and the names of its secrets are stored as JSON
//! text. They are configuration, not credentials (the domain refuses
//! credential-like settings); the credentials stay sealed in
//! `tenant_secrets`.

use std::collections::BTreeMap;

use gatehouse_core::connector::{ConnectorConfig, ConnectorName};
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::StoreError;
use time::OffsetDateTime;

pub(crate) const CONNECTOR_COLUMNS: &str =
    "id, tenant_id, name, kind, base_url, settings, secrets, created_at, updated_at, version";

/// A row of `connectors`.
#[derive(sqlx::FromRow)]
pub(crate) struct ConnectorRow {
    id: String,
    tenant_id: String,
    name: String,
    kind: String,
    base_url: String,
    settings: String,
    secrets: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    version: i64,
}

impl TryFrom<ConnectorRow> for ConnectorConfig {
    type Error = StoreError;

    fn try_from(row: ConnectorRow) -> Result<Self, Self::Error> {
        fn corrupt(column: &str, err: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("connectors.{column}: {err}"))
        }
        let kind: gatehouse_core::connector::ConnectorKind =
            row.kind.parse().map_err(|e| corrupt("kind", e))?;
        let secrets: BTreeMap<String, String> =
            serde_json::from_str(&row.secrets).map_err(|e| corrupt("secrets", e))?;
        let secrets = secrets
            .into_iter()
            .map(|(role, name)| Ok((role, SecretName::parse(&name)?)))
            .collect::<Result<BTreeMap<_, _>, gatehouse_core::DomainError>>()
            .map_err(|e| corrupt("secrets", e))?;
        Ok(Self {
            id: row.id.parse().map_err(|e| corrupt("id", e))?,
            tenant_id: row.tenant_id.parse().map_err(|e| corrupt("tenant_id", e))?,
            name: ConnectorName::parse(&row.name).map_err(|e| corrupt("name", e))?,
            kind,
            category: kind.category(),
            base_url: row.base_url,
            settings: serde_json::from_str(&row.settings).map_err(|e| corrupt("settings", e))?,
            secrets,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        })
    }
}

/// The secrets' names as the JSON text stored.
pub(crate) fn secrets_json(connector: &ConnectorConfig) -> Result<String, StoreError> {
    let names: BTreeMap<&str, &str> = connector
        .secrets
        .iter()
        .map(|(role, name)| (role.as_str(), name.as_str()))
        .collect();
    crate::engine_sql::to_json(&serde_json::json!(names))
}

/// Implements `ConnectorStore` for `$store`.
macro_rules! impl_connector_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl gatehouse_core::connector::ConnectorStore for $store {
            async fn list_connectors(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::connector::ConnectorConfig>> {
                let text = format!(
                    "SELECT {} FROM connectors WHERE tenant_id = $1 ORDER BY name",
                    crate::connector_sql::CONNECTOR_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::connector_sql::ConnectorRow>(&text)
                    .bind(tenant.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing connectors"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn get_connector(
                &self,
                tenant: gatehouse_core::id::TenantId,
                name: &gatehouse_core::connector::ConnectorName,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::connector::ConnectorConfig> {
                let text = format!(
                    "SELECT {} FROM connectors WHERE tenant_id = $1 AND name = $2",
                    crate::connector_sql::CONNECTOR_COLUMNS
                );
                let row = sqlx::query_as::<_, crate::connector_sql::ConnectorRow>(&text)
                    .bind(tenant.to_string())
                    .bind(name.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading a connector"))?;
                row.ok_or(gatehouse_core::store::StoreError::NotFound("connector"))?
                    .try_into()
            }

            async fn put_connector(
                &self,
                connector: &gatehouse_core::connector::ConnectorConfig,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                let settings = crate::engine_sql::to_json(&connector.settings)?;
                let secrets = crate::connector_sql::secrets_json(connector)?;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                if connector.version == 1 {
                    let text = format!(
                        "INSERT INTO connectors ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                        crate::connector_sql::CONNECTOR_COLUMNS
                    );
                    sqlx::query(&text)
                        .bind(connector.id.to_string())
                        .bind(connector.tenant_id.to_string())
                        .bind(connector.name.as_str())
                        .bind(connector.kind.as_str())
                        .bind(connector.base_url.as_str())
                        .bind(settings)
                        .bind(secrets)
                        .bind(SortableTime(connector.created_at))
                        .bind(SortableTime(connector.updated_at))
                        .bind(connector.version)
                        .execute(&mut *tx)
                        .await
                        .map_err(|err| match violation(&err) {
                            Violation::Unique => StoreError::Conflict(format!(
                                "tenant {} has a connector called `{}` already",
                                connector.tenant_id, connector.name
                            )),
                            Violation::ForeignKey => StoreError::NotFound("tenant"),
                            Violation::Other => crate::db_error("storing a connector")(err),
                        })?;
                } else {
                    let done = sqlx::query(
                        "UPDATE connectors SET kind = $1, base_url = $2, settings = $3, secrets = $4,
                                updated_at = $5, version = $6
                         WHERE tenant_id = $7 AND name = $8 AND id = $9 AND version = $10",
                    )
                    .bind(connector.kind.as_str())
                    .bind(connector.base_url.as_str())
                    .bind(settings)
                    .bind(secrets)
                    .bind(SortableTime(connector.updated_at))
                    .bind(connector.version)
                    .bind(connector.tenant_id.to_string())
                    .bind(connector.name.as_str())
                    .bind(connector.id.to_string())
                    .bind(connector.version - 1)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::db_error("updating a connector"))?;
                    if done.rows_affected() != 1 {
                        return Err(StoreError::Stale("connector"));
                    }
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a connector"))
            }

            async fn delete_connector(
                &self,
                tenant: gatehouse_core::id::TenantId,
                name: &gatehouse_core::connector::ConnectorName,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query("DELETE FROM connectors WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant.to_string())
                    .bind(name.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::db_error("removing a connector"))?;
                if done.rows_affected() != 1 {
                    return Err(gatehouse_core::store::StoreError::NotFound("connector"));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a connector removal"))
            }
        }
    };
}

pub(crate) use impl_connector_store;
