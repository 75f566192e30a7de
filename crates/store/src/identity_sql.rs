//! The SQL behind `IdentityStore`: people, their lifecycle events, the
//! tenant's access policy, just-in-time elevations and leavers'
//! revocations, written once for both back ends.
//!
//! Rules the database keeps:
//! - **Tenant scoping**: every statement names the tenant; primary keys
//!   start with it.
//! - **Deduplication**: `(tenant_id, digest)` is the events' primary key,
//!   so a repeated event is stored once, whoever sends it twice at once.
//! - **No lost updates**: a person or a policy is written naming the
//!   version it replaces.
//! - **Crypto-shredding**: everything references the tenant's key row with
//!   `ON DELETE CASCADE`.

use gatehouse_core::id::TenantId;
use gatehouse_core::identity::{
    StoredElevation, StoredEvent, StoredPerson, StoredPolicy, StoredRevocation,
};
use gatehouse_core::store::StoreError;
use time::OffsetDateTime;

pub(crate) const PERSON_COLUMNS: &str =
    "tenant_id, id, status, version, updated_at, ends_on, sealed";
pub(crate) const EVENT_COLUMNS: &str =
    "tenant_id, digest, person_id, occurred_at, received_at, sealed";
pub(crate) const POLICY_COLUMNS: &str = "tenant_id, version, updated_by, updated_at, sealed";
pub(crate) const ELEVATION_COLUMNS: &str =
    "tenant_id, id, person_id, state, requested_by, created_at, expires_at, ended_at, sealed";
pub(crate) const REVOCATION_COLUMNS: &str =
    "tenant_id, person_id, started_at, deadline_at, completed_at, escalated_at, sealed";

fn corrupt(column: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {err}"))
}

fn tenant(column: &str, text: &str) -> Result<TenantId, StoreError> {
    text.parse().map_err(|e| corrupt(column, e))
}

pub(crate) fn version(column: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| corrupt(column, format!("version {value} is out of range")))
}

pub(crate) fn sql_version(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("version {value} is out of range")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct PersonRow {
    tenant_id: String,
    id: String,
    status: String,
    version: i64,
    updated_at: OffsetDateTime,
    ends_on: Option<String>,
    sealed: Vec<u8>,
}

impl TryFrom<PersonRow> for StoredPerson {
    type Error = StoreError;
    fn try_from(row: PersonRow) -> Result<Self, Self::Error> {
        Ok(Self {
            tenant_id: tenant("identity_people.tenant_id", &row.tenant_id)?,
            id: row.id,
            status: row.status,
            version: version("identity_people.version", row.version)?,
            updated_at: row.updated_at,
            ends_on: row.ends_on,
            sealed: row.sealed,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    tenant_id: String,
    digest: Vec<u8>,
    person_id: String,
    occurred_at: OffsetDateTime,
    received_at: OffsetDateTime,
    sealed: Vec<u8>,
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = StoreError;
    fn try_from(row: EventRow) -> Result<Self, Self::Error> {
        Ok(Self {
            tenant_id: tenant("identity_events.tenant_id", &row.tenant_id)?,
            digest: row.digest,
            person_id: row.person_id,
            occurred_at: row.occurred_at,
            received_at: row.received_at,
            sealed: row.sealed,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PolicyRow {
    tenant_id: String,
    version: i64,
    updated_by: String,
    updated_at: OffsetDateTime,
    sealed: Vec<u8>,
}

impl TryFrom<PolicyRow> for StoredPolicy {
    type Error = StoreError;
    fn try_from(row: PolicyRow) -> Result<Self, Self::Error> {
        Ok(Self {
            tenant_id: tenant("identity_policies.tenant_id", &row.tenant_id)?,
            version: version("identity_policies.version", row.version)?,
            updated_by: row.updated_by,
            updated_at: row.updated_at,
            sealed: row.sealed,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ElevationRow {
    tenant_id: String,
    id: String,
    person_id: String,
    state: String,
    requested_by: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    ended_at: Option<OffsetDateTime>,
    sealed: Vec<u8>,
}

impl TryFrom<ElevationRow> for StoredElevation {
    type Error = StoreError;
    fn try_from(row: ElevationRow) -> Result<Self, Self::Error> {
        Ok(Self {
            tenant_id: tenant("identity_elevations.tenant_id", &row.tenant_id)?,
            id: row.id,
            person_id: row.person_id,
            state: row.state,
            requested_by: row.requested_by,
            created_at: row.created_at,
            expires_at: row.expires_at,
            ended_at: row.ended_at,
            sealed: row.sealed,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RevocationRow {
    tenant_id: String,
    person_id: String,
    started_at: OffsetDateTime,
    deadline_at: OffsetDateTime,
    completed_at: Option<OffsetDateTime>,
    escalated_at: Option<OffsetDateTime>,
    sealed: Vec<u8>,
}

impl TryFrom<RevocationRow> for StoredRevocation {
    type Error = StoreError;
    fn try_from(row: RevocationRow) -> Result<Self, Self::Error> {
        Ok(Self {
            tenant_id: tenant("identity_revocations.tenant_id", &row.tenant_id)?,
            person_id: row.person_id,
            started_at: row.started_at,
            deadline_at: row.deadline_at,
            completed_at: row.completed_at,
            escalated_at: row.escalated_at,
            sealed: row.sealed,
        })
    }
}

/// Implements `IdentityStore` for a store with `pool` (reads) and
/// `writer` (writes) pools and `write_audit_records`.
macro_rules! impl_identity_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl gatehouse_core::identity::IdentityStore for $store {
            async fn identity_events(
                &self,
                tenant: gatehouse_core::id::TenantId,
                person: &str,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::identity::StoredEvent>> {
                sqlx::query_as::<_, crate::identity_sql::EventRow>(&format!(
                    "SELECT {} FROM identity_events WHERE tenant_id = $1 AND person_id = $2 ORDER BY occurred_at, digest",
                    crate::identity_sql::EVENT_COLUMNS
                ))
                .bind(tenant.to_string())
                .bind(person)
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("reading lifecycle events"))?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
            }

            async fn identity_person(
                &self,
                tenant: gatehouse_core::id::TenantId,
                id: &str,
            ) -> gatehouse_core::store::StoreResult<Option<gatehouse_core::identity::StoredPerson>> {
                sqlx::query_as::<_, crate::identity_sql::PersonRow>(&format!(
                    "SELECT {} FROM identity_people WHERE tenant_id = $1 AND id = $2",
                    crate::identity_sql::PERSON_COLUMNS
                ))
                .bind(tenant.to_string())
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading a person"))?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn identity_record(
                &self,
                event: Option<&gatehouse_core::identity::StoredEvent>,
                person: &gatehouse_core::identity::StoredPerson,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::identity::Recorded> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::identity::Recorded;
                use gatehouse_core::store::StoreError;
                let fk = |context: &'static str| move |err: sqlx::Error| match violation(&err) {
                    Violation::ForeignKey => StoreError::NotFound("tenant"),
                    _ => crate::db_error(context)(err),
                };
                let version = crate::identity_sql::sql_version(person.version)?;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                if let Some(event) = event {
                    let done = sqlx::query(&format!(
                        "INSERT INTO identity_events ({}) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, digest) DO NOTHING",
                        crate::identity_sql::EVENT_COLUMNS
                    ))
                    .bind(event.tenant_id.to_string())
                    .bind(&event.digest)
                    .bind(&event.person_id)
                    .bind(SortableTime(event.occurred_at))
                    .bind(SortableTime(event.received_at))
                    .bind(&event.sealed)
                    .execute(&mut *tx)
                    .await
                    .map_err(fk("storing a lifecycle event"))?;
                    if done.rows_affected() != 1 {
                        return Ok(Recorded::Duplicate);
                    }
                }
                let done = if person.version == 1 {
                    sqlx::query(&format!(
                        "INSERT INTO identity_people ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (tenant_id, id) DO NOTHING",
                        crate::identity_sql::PERSON_COLUMNS
                    ))
                    .bind(person.tenant_id.to_string())
                    .bind(&person.id)
                    .bind(&person.status)
                    .bind(version)
                    .bind(SortableTime(person.updated_at))
                    .bind(&person.ends_on)
                    .bind(&person.sealed)
                    .execute(&mut *tx)
                    .await
                } else {
                    sqlx::query(
                        "UPDATE identity_people SET status = $1, version = $2, updated_at = $3, ends_on = $4, sealed = $5
                         WHERE tenant_id = $6 AND id = $7 AND version = $8",
                    )
                    .bind(&person.status)
                    .bind(version)
                    .bind(SortableTime(person.updated_at))
                    .bind(&person.ends_on)
                    .bind(&person.sealed)
                    .bind(person.tenant_id.to_string())
                    .bind(&person.id)
                    .bind(version - 1)
                    .execute(&mut *tx)
                    .await
                }
                .map_err(fk("storing a person"))?;
                if done.rows_affected() != 1 {
                    return Ok(Recorded::Stale);
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a person"))?;
                Ok(Recorded::Written)
            }

            async fn identity_people(
                &self,
                tenant: gatehouse_core::id::TenantId,
                after: Option<&str>,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::identity::StoredPerson>> {
                sqlx::query_as::<_, crate::identity_sql::PersonRow>(&format!(
                    "SELECT {} FROM identity_people WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                    crate::identity_sql::PERSON_COLUMNS
                ))
                .bind(tenant.to_string())
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing people"))?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
            }

            async fn identity_people_ended(
                &self,
                today: &str,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<(gatehouse_core::id::TenantId, String)>> {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT tenant_id, id FROM identity_people
                     WHERE ends_on IS NOT NULL AND status <> 'terminated' AND ends_on < $1
                     ORDER BY ends_on LIMIT $2",
                )
                .bind(today)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("finding people whose contract ended"))?;
                rows.into_iter()
                    .map(|(tenant, id)| Ok((tenant.parse().map_err(|e| gatehouse_core::store::StoreError::Corrupt(format!("identity_people.tenant_id: {e}")))?, id)))
                    .collect()
            }

            async fn identity_policy(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<Option<gatehouse_core::identity::StoredPolicy>> {
                sqlx::query_as::<_, crate::identity_sql::PolicyRow>(&format!(
                    "SELECT {} FROM identity_policies WHERE tenant_id = $1",
                    crate::identity_sql::POLICY_COLUMNS
                ))
                .bind(tenant.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading the access policy"))?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn identity_policy_put(
                &self,
                policy: &gatehouse_core::identity::StoredPolicy,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                let version = crate::identity_sql::sql_version(policy.version)?;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = if policy.version == 1 {
                    sqlx::query(&format!(
                        "INSERT INTO identity_policies ({}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO NOTHING",
                        crate::identity_sql::POLICY_COLUMNS
                    ))
                    .bind(policy.tenant_id.to_string())
                    .bind(version)
                    .bind(&policy.updated_by)
                    .bind(SortableTime(policy.updated_at))
                    .bind(&policy.sealed)
                    .execute(&mut *tx)
                    .await
                } else {
                    sqlx::query(
                        "UPDATE identity_policies SET version = $1, updated_by = $2, updated_at = $3, sealed = $4
                         WHERE tenant_id = $5 AND version = $6",
                    )
                    .bind(version)
                    .bind(&policy.updated_by)
                    .bind(SortableTime(policy.updated_at))
                    .bind(&policy.sealed)
                    .bind(policy.tenant_id.to_string())
                    .bind(version - 1)
                    .execute(&mut *tx)
                    .await
                }
                .map_err(|err| match violation(&err) {
                    Violation::ForeignKey => StoreError::NotFound("tenant"),
                    _ => crate::db_error("storing the access policy")(err),
                })?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing the access policy"))?;
                Ok(true)
            }

            async fn identity_elevation_put(
                &self,
                e: &gatehouse_core::identity::StoredElevation,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                sqlx::query(&format!(
                    "INSERT INTO identity_elevations ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (tenant_id, id) DO UPDATE SET state = excluded.state, expires_at = excluded.expires_at,
                       ended_at = excluded.ended_at, sealed = excluded.sealed",
                    crate::identity_sql::ELEVATION_COLUMNS
                ))
                .bind(e.tenant_id.to_string())
                .bind(&e.id)
                .bind(&e.person_id)
                .bind(&e.state)
                .bind(&e.requested_by)
                .bind(SortableTime(e.created_at))
                .bind(e.expires_at.map(SortableTime))
                .bind(e.ended_at.map(SortableTime))
                .bind(&e.sealed)
                .execute(&mut *tx)
                .await
                .map_err(|err| match violation(&err) {
                    Violation::ForeignKey => StoreError::NotFound("tenant"),
                    _ => crate::db_error("storing an elevation")(err),
                })?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing an elevation"))?;
                Ok(())
            }

            async fn identity_elevation(
                &self,
                tenant: gatehouse_core::id::TenantId,
                id: &str,
            ) -> gatehouse_core::store::StoreResult<Option<gatehouse_core::identity::StoredElevation>> {
                sqlx::query_as::<_, crate::identity_sql::ElevationRow>(&format!(
                    "SELECT {} FROM identity_elevations WHERE tenant_id = $1 AND id = $2",
                    crate::identity_sql::ELEVATION_COLUMNS
                ))
                .bind(tenant.to_string())
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading an elevation"))?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn identity_elevations(
                &self,
                tenant: gatehouse_core::id::TenantId,
                person: Option<&str>,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::identity::StoredElevation>> {
                sqlx::query_as::<_, crate::identity_sql::ElevationRow>(&format!(
                    "SELECT {} FROM identity_elevations WHERE tenant_id = $1 AND ($2 = '' OR person_id = $2) ORDER BY created_at, id",
                    crate::identity_sql::ELEVATION_COLUMNS
                ))
                .bind(tenant.to_string())
                .bind(person.unwrap_or(""))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing elevations"))?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
            }

            async fn identity_revocation_put(
                &self,
                r: &gatehouse_core::identity::StoredRevocation,
                notification: Option<&gatehouse_core::notify::Notification>,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                sqlx::query(&format!(
                    "INSERT INTO identity_revocations ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (tenant_id, person_id) DO UPDATE SET started_at = excluded.started_at,
                       deadline_at = excluded.deadline_at, completed_at = excluded.completed_at,
                       escalated_at = excluded.escalated_at, sealed = excluded.sealed",
                    crate::identity_sql::REVOCATION_COLUMNS
                ))
                .bind(r.tenant_id.to_string())
                .bind(&r.person_id)
                .bind(SortableTime(r.started_at))
                .bind(SortableTime(r.deadline_at))
                .bind(r.completed_at.map(SortableTime))
                .bind(r.escalated_at.map(SortableTime))
                .bind(&r.sealed)
                .execute(&mut *tx)
                .await
                .map_err(|err| match violation(&err) {
                    Violation::ForeignKey => StoreError::NotFound("tenant"),
                    _ => crate::db_error("storing a revocation")(err),
                })?;
                if let Some(notification) = notification {
                    let text = <$db as crate::placeholders::Placeholders>::sequential(
                        crate::notify_sql::insert_notifications_sql(1),
                    );
                    crate::notify_sql::bind_notification(sqlx::query(&text), notification)?
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::db_error("queueing a revocation escalation"))?;
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a revocation"))?;
                Ok(())
            }

            async fn identity_revocation(
                &self,
                tenant: gatehouse_core::id::TenantId,
                person: &str,
            ) -> gatehouse_core::store::StoreResult<Option<gatehouse_core::identity::StoredRevocation>> {
                sqlx::query_as::<_, crate::identity_sql::RevocationRow>(&format!(
                    "SELECT {} FROM identity_revocations WHERE tenant_id = $1 AND person_id = $2",
                    crate::identity_sql::REVOCATION_COLUMNS
                ))
                .bind(tenant.to_string())
                .bind(person)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading a revocation"))?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn identity_revocations(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::identity::StoredRevocation>> {
                sqlx::query_as::<_, crate::identity_sql::RevocationRow>(&format!(
                    "SELECT {} FROM identity_revocations WHERE tenant_id = $1
                     ORDER BY CASE WHEN completed_at IS NULL THEN 0 ELSE 1 END, started_at DESC, person_id",
                    crate::identity_sql::REVOCATION_COLUMNS
                ))
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing revocations"))?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
            }
        }
    };
}

pub(crate) use impl_identity_store;
