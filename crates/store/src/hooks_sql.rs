//! The SQL behind `HookStore`, written once for both back ends in the way
//! of [`crate::gate_sql`]: delivery records of inbound webhooks and the
//! watermarks of the intake pollers.
//!
//! The watermark never moves backwards: the upsert keeps the later of the
//! stored and the new instant, so two nodes polling at once cannot undo
//! each other's progress.

use gatehouse_core::hooks::HookDelivery;
use gatehouse_core::store::StoreError;

pub(crate) const DELIVERY_COLUMNS: &str =
    "id, tenant_id, source, received_at, outcome, reason, event_id, body_sha256";

/// A row of `hook_deliveries`.
#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: String,
    tenant_id: String,
    source: String,
    received_at: time::OffsetDateTime,
    outcome: String,
    reason: Option<String>,
    event_id: Option<String>,
    body_sha256: String,
}

impl TryFrom<DeliveryRow> for HookDelivery {
    type Error = StoreError;

    fn try_from(row: DeliveryRow) -> Result<Self, Self::Error> {
        let corrupt = |column: &str, err: gatehouse_core::DomainError| {
            StoreError::Corrupt(format!("hook_deliveries.{column}: {err}"))
        };
        Ok(Self {
            id: row.id.parse().map_err(|e| corrupt("id", e))?,
            tenant_id: row.tenant_id.parse().map_err(|e| corrupt("tenant_id", e))?,
            source: row.source.parse().map_err(|e| corrupt("source", e))?,
            received_at: row.received_at,
            outcome: row.outcome.parse().map_err(|e| corrupt("outcome", e))?,
            reason: row.reason,
            event_id: row
                .event_id
                .map(|e| e.parse())
                .transpose()
                .map_err(|e| corrupt("event_id", e))?,
            body_sha256: row.body_sha256,
        })
    }
}

macro_rules! impl_hook_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl gatehouse_core::hooks::HookStore for $store {
            async fn record_hook_delivery(
                &self,
                delivery: &gatehouse_core::hooks::HookDelivery,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                let text = format!(
                    "INSERT INTO hook_deliveries ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    crate::hooks_sql::DELIVERY_COLUMNS
                );
                let mut tx = self
                    .writer
                    .begin()
                    .await
                    .map_err(crate::db_error("starting a transaction"))?;
                sqlx::query(&text)
                    .bind(delivery.id.to_string())
                    .bind(delivery.tenant_id.to_string())
                    .bind(delivery.source.as_str())
                    .bind(SortableTime(delivery.received_at))
                    .bind(delivery.outcome.as_str())
                    .bind(delivery.reason.as_deref())
                    .bind(delivery.event_id.map(|e| e.to_string()))
                    .bind(delivery.body_sha256.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| match violation(&err) {
                        Violation::ForeignKey => StoreError::NotFound("tenant or event"),
                        Violation::Unique => StoreError::Conflict(format!(
                            "hook delivery {} is recorded already",
                            delivery.id
                        )),
                        Violation::Other => crate::db_error("recording a hook delivery")(err),
                    })?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit()
                    .await
                    .map_err(crate::db_error("committing a hook delivery"))
            }

            async fn list_hook_deliveries(
                &self,
                query: &gatehouse_core::hooks::DeliveryQuery,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::hooks::HookDelivery>> {
                let text = format!(
                    "SELECT {} FROM hook_deliveries
                     WHERE tenant_id = $1
                       AND ($2 IS NULL OR source = $2)
                       AND ($3 IS NULL OR outcome = $3)
                       AND ($4 IS NULL OR id < $4)
                     ORDER BY id DESC LIMIT $5",
                    crate::hooks_sql::DELIVERY_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::hooks_sql::DeliveryRow>(&text)
                    .bind(query.tenant.to_string())
                    .bind(query.source.map(|s| s.as_str()))
                    .bind(query.outcome.map(|o| o.as_str()))
                    .bind(query.before.map(|id| id.to_string()))
                    .bind(i64::from(query.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing hook deliveries"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn intake_watermark(
                &self,
                tenant: gatehouse_core::id::TenantId,
                name: &str,
            ) -> gatehouse_core::store::StoreResult<Option<time::OffsetDateTime>> {
                let row: Option<(time::OffsetDateTime,)> = sqlx::query_as(
                    "SELECT at FROM intake_watermarks WHERE tenant_id = $1 AND name = $2",
                )
                .bind(tenant.to_string())
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading an intake watermark"))?;
                Ok(row.map(|(at,)| at))
            }

            async fn set_intake_watermark(
                &self,
                tenant: gatehouse_core::id::TenantId,
                name: &str,
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                let mut tx = self
                    .writer
                    .begin()
                    .await
                    .map_err(crate::db_error("starting a transaction"))?;
                sqlx::query(
                    "INSERT INTO intake_watermarks (tenant_id, name, at) VALUES ($1, $2, $3)
                     ON CONFLICT (tenant_id, name) DO UPDATE SET at = excluded.at
                     WHERE intake_watermarks.at < excluded.at",
                )
                .bind(tenant.to_string())
                .bind(name)
                .bind(SortableTime(at))
                .execute(&mut *tx)
                .await
                .map_err(|err| match violation(&err) {
                    Violation::ForeignKey => StoreError::NotFound("tenant"),
                    _ => crate::db_error("moving an intake watermark")(err),
                })?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit()
                    .await
                    .map_err(crate::db_error("committing an intake watermark"))
            }
        }
    };
}

pub(crate) use impl_hook_store;
