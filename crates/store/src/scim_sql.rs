//! The SQL behind `ScimStore`: sealed SCIM resources, their blind index
//! and the tenants' SCIM bearer tokens, written once for both back ends.
//!
//! Rules the database keeps:
//! - **Tenant scoping**: every statement names the tenant (tokens are
//!   found by their hash, and the caller then checks the tenant).
//! - **Uniqueness**: a partial unique index on `scim_index (tenant_id,
//!   resource_type, attribute, digest) WHERE uniq = 1`, written in the
//!   resource's own transaction, so of two racing creates with one
//!   `userName` exactly one wins.
//! - **No lost updates**: a replace names the version it replaces.
//! - **Crypto-shredding**: everything references the tenant's key row with
//!   `ON DELETE CASCADE`.

use gatehouse_core::scim::{ScimToken, StoredScimResource};
use gatehouse_core::store::StoreError;

pub(crate) const RESOURCE_COLUMNS: &str =
    "tenant_id, resource_type, id, version, created_at, updated_at, sealed";
pub(crate) const TOKEN_COLUMNS: &str =
    "id, tenant_id, label, hash, created_by, created_at, revoked_at";

fn corrupt(column: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {err}"))
}

/// A row of `scim_resources`.
#[derive(sqlx::FromRow)]
pub(crate) struct ResourceRow {
    tenant_id: String,
    resource_type: String,
    id: String,
    version: i64,
    created_at: time::OffsetDateTime,
    updated_at: time::OffsetDateTime,
    sealed: Vec<u8>,
}

impl TryFrom<ResourceRow> for StoredScimResource {
    type Error = StoreError;

    fn try_from(row: ResourceRow) -> Result<Self, Self::Error> {
        Ok(Self {
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(|e| corrupt("scim_resources.tenant_id", e))?,
            resource_type: row.resource_type,
            id: row.id,
            version: u64::try_from(row.version)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| corrupt("scim_resources.version", row.version))?,
            created_at: row.created_at,
            updated_at: row.updated_at,
            sealed: row.sealed,
        })
    }
}

/// A row of `scim_tokens`.
#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: String,
    tenant_id: String,
    label: String,
    hash: Vec<u8>,
    created_by: String,
    created_at: time::OffsetDateTime,
    revoked_at: Option<time::OffsetDateTime>,
}

impl TryFrom<TokenRow> for ScimToken {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id,
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(|e| corrupt("scim_tokens.tenant_id", e))?,
            label: row.label,
            hash: row.hash,
            created_by: row.created_by,
            created_at: row.created_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// A version as SQL stores it.
pub(crate) fn sql_version(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::Conflict(format!("version {version} is out of range")))
}

macro_rules! impl_scim_store {
    ($store:ty) => {
        impl $store {
            /// Writes `index` for `resource` inside the caller's transaction;
            /// `Taken` names the first unique attribute already held.
            async fn write_scim_index(
                conn: &mut <Self as crate::kb_sql::KbBackend>::Connection,
                resource: &gatehouse_core::scim::StoredScimResource,
                index: &[gatehouse_core::scim::IndexEntry],
            ) -> gatehouse_core::store::StoreResult<Result<(), gatehouse_core::scim::ScimWriteError>> {
                use crate::engine_sql::{Violation, violation};
                for entry in index {
                    let written = sqlx::query(
                        "INSERT INTO scim_index (tenant_id, resource_type, attribute, digest, resource_id, uniq)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, resource_type, attribute, digest, resource_id) DO NOTHING",
                    )
                    .bind(resource.tenant_id.to_string())
                    .bind(&resource.resource_type)
                    .bind(&entry.attribute)
                    .bind(&entry.digest)
                    .bind(&resource.id)
                    .bind(i64::from(entry.unique))
                    .execute(&mut *conn)
                    .await;
                    match written {
                        Ok(_) => {}
                        Err(err) if matches!(violation(&err), Violation::Unique) => {
                            return Ok(Err(gatehouse_core::scim::ScimWriteError::Taken(
                                entry.attribute.clone(),
                            )));
                        }
                        Err(err) => return Err(crate::db_error("indexing a SCIM resource")(err)),
                    }
                }
                Ok(Ok(()))
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::scim::ScimStore for $store {
            async fn scim_insert(
                &self,
                resource: &gatehouse_core::scim::StoredScimResource,
                index: &[gatehouse_core::scim::IndexEntry],
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<Result<(), gatehouse_core::scim::ScimWriteError>> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                sqlx::query(&format!(
                    "INSERT INTO scim_resources ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    crate::scim_sql::RESOURCE_COLUMNS
                ))
                .bind(resource.tenant_id.to_string())
                .bind(&resource.resource_type)
                .bind(&resource.id)
                .bind(crate::scim_sql::sql_version(resource.version)?)
                .bind(SortableTime(resource.created_at))
                .bind(SortableTime(resource.updated_at))
                .bind(&resource.sealed)
                .execute(&mut *tx)
                .await
                .map_err(|err| match violation(&err) {
                    Violation::ForeignKey => StoreError::NotFound("tenant"),
                    Violation::Unique => StoreError::Conflict(format!("SCIM resource {} exists already", resource.id)),
                    Violation::Other => crate::db_error("storing a SCIM resource")(err),
                })?;
                if let Err(taken) = Self::write_scim_index(&mut tx, resource, index).await? {
                    return Ok(Err(taken));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a SCIM resource"))?;
                Ok(Ok(()))
            }

            async fn scim_replace(
                &self,
                resource: &gatehouse_core::scim::StoredScimResource,
                index: &[gatehouse_core::scim::IndexEntry],
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<Result<(), gatehouse_core::scim::ScimWriteError>> {
                use crate::engine_sql::SortableTime;
                use gatehouse_core::scim::ScimWriteError;
                let tenant = resource.tenant_id.to_string();
                let version = crate::scim_sql::sql_version(resource.version)?;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE scim_resources SET version = $1, updated_at = $2, sealed = $3
                     WHERE tenant_id = $4 AND resource_type = $5 AND id = $6 AND version = $7",
                )
                .bind(version)
                .bind(SortableTime(resource.updated_at))
                .bind(&resource.sealed)
                .bind(&tenant)
                .bind(&resource.resource_type)
                .bind(&resource.id)
                .bind(version - 1)
                .execute(&mut *tx)
                .await
                .map_err(crate::db_error("updating a SCIM resource"))?;
                if done.rows_affected() != 1 {
                    let exists = sqlx::query(
                        "SELECT 1 FROM scim_resources WHERE tenant_id = $1 AND resource_type = $2 AND id = $3",
                    )
                    .bind(&tenant)
                    .bind(&resource.resource_type)
                    .bind(&resource.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(crate::db_error("reading a SCIM resource"))?;
                    return Ok(Err(if exists.is_some() {
                        ScimWriteError::Stale
                    } else {
                        ScimWriteError::NotFound
                    }));
                }
                sqlx::query("DELETE FROM scim_index WHERE tenant_id = $1 AND resource_type = $2 AND resource_id = $3")
                    .bind(&tenant)
                    .bind(&resource.resource_type)
                    .bind(&resource.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::db_error("re-indexing a SCIM resource"))?;
                if let Err(taken) = Self::write_scim_index(&mut tx, resource, index).await? {
                    return Ok(Err(taken));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a SCIM resource"))?;
                Ok(Ok(()))
            }

            async fn scim_delete(
                &self,
                tenant: gatehouse_core::id::TenantId,
                resource_type: &str,
                id: &str,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                let tenant = tenant.to_string();
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                sqlx::query("DELETE FROM scim_index WHERE tenant_id = $1 AND resource_type = $2 AND resource_id = $3")
                    .bind(&tenant)
                    .bind(resource_type)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::db_error("deleting a SCIM resource's index"))?;
                let done = sqlx::query("DELETE FROM scim_resources WHERE tenant_id = $1 AND resource_type = $2 AND id = $3")
                    .bind(&tenant)
                    .bind(resource_type)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::db_error("deleting a SCIM resource"))?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a SCIM deletion"))?;
                Ok(true)
            }

            async fn scim_get(
                &self,
                tenant: gatehouse_core::id::TenantId,
                resource_type: &str,
                id: &str,
            ) -> gatehouse_core::store::StoreResult<Option<gatehouse_core::scim::StoredScimResource>> {
                sqlx::query_as::<_, crate::scim_sql::ResourceRow>(&format!(
                    "SELECT {} FROM scim_resources WHERE tenant_id = $1 AND resource_type = $2 AND id = $3",
                    crate::scim_sql::RESOURCE_COLUMNS
                ))
                .bind(tenant.to_string())
                .bind(resource_type)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading a SCIM resource"))?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn scim_list(
                &self,
                tenant: gatehouse_core::id::TenantId,
                resource_type: &str,
                by: Option<(&str, &[u8])>,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::scim::StoredScimResource>> {
                let rows = match by {
                    None => sqlx::query_as::<_, crate::scim_sql::ResourceRow>(&format!(
                        "SELECT {} FROM scim_resources WHERE tenant_id = $1 AND resource_type = $2 ORDER BY id",
                        crate::scim_sql::RESOURCE_COLUMNS
                    ))
                    .bind(tenant.to_string())
                    .bind(resource_type)
                    .fetch_all(&self.pool)
                    .await,
                    // Ordered by the index's column, not `r.id`: ordering by
                    // `r.id` lets SQLite's planner walk every resource of the
                    // type (to skip a sort) and probe the index for each, a
                    // scan of the tenant per equality filter.
                    Some((attribute, digest)) => sqlx::query_as::<_, crate::scim_sql::ResourceRow>(
                        "SELECT r.tenant_id, r.resource_type, r.id, r.version, r.created_at, r.updated_at, r.sealed
                         FROM scim_index i JOIN scim_resources r
                           ON r.tenant_id = i.tenant_id AND r.resource_type = i.resource_type AND r.id = i.resource_id
                         WHERE i.tenant_id = $1 AND i.resource_type = $2 AND i.attribute = $3 AND i.digest = $4
                         ORDER BY i.resource_id",
                    )
                    .bind(tenant.to_string())
                    .bind(resource_type)
                    .bind(attribute)
                    .bind(digest)
                    .fetch_all(&self.pool)
                    .await,
                }
                .map_err(crate::db_error("listing SCIM resources"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn scim_token_insert(
                &self,
                token: &gatehouse_core::scim::ScimToken,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                sqlx::query(&format!(
                    "INSERT INTO scim_tokens ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    crate::scim_sql::TOKEN_COLUMNS
                ))
                .bind(&token.id)
                .bind(token.tenant_id.to_string())
                .bind(&token.label)
                .bind(&token.hash)
                .bind(&token.created_by)
                .bind(SortableTime(token.created_at))
                .bind(token.revoked_at.map(SortableTime))
                .execute(&mut *tx)
                .await
                .map_err(|err| match violation(&err) {
                    Violation::ForeignKey => StoreError::NotFound("tenant"),
                    Violation::Unique => StoreError::Conflict("the SCIM token exists already".into()),
                    Violation::Other => crate::db_error("storing a SCIM token")(err),
                })?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a SCIM token"))
            }

            async fn scim_tokens(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::scim::ScimToken>> {
                let rows = sqlx::query_as::<_, crate::scim_sql::TokenRow>(&format!(
                    "SELECT {} FROM scim_tokens WHERE tenant_id = $1 ORDER BY created_at, id",
                    crate::scim_sql::TOKEN_COLUMNS
                ))
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing SCIM tokens"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn scim_token_by_hash(
                &self,
                hash: &[u8],
            ) -> gatehouse_core::store::StoreResult<Option<gatehouse_core::scim::ScimToken>> {
                sqlx::query_as::<_, crate::scim_sql::TokenRow>(&format!(
                    "SELECT {} FROM scim_tokens WHERE hash = $1",
                    crate::scim_sql::TOKEN_COLUMNS
                ))
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading a SCIM token"))?
                .map(TryInto::try_into)
                .transpose()
            }

            async fn scim_token_revoke(
                &self,
                tenant: gatehouse_core::id::TenantId,
                id: &str,
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::engine_sql::SortableTime;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE scim_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL",
                )
                .bind(SortableTime(at))
                .bind(tenant.to_string())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(crate::db_error("revoking a SCIM token"))?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a SCIM token revocation"))?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_scim_store;
