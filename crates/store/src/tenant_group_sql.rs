//! The SQL behind `TenantGroupStore`, and the groups an operator's scope
//! names (`operator_scope_groups`, migration 0024), written once for both
//! back ends: `impl_tenant_group_store!` instantiates it for a store type
//! with a `pool` (reads) and a `writer` (writes and transactions).

use std::collections::{BTreeMap, BTreeSet};

use gatehouse_core::id::{TenantGroupId, TenantId};
use gatehouse_core::store::StoreError;
use gatehouse_core::tenant::{DisplayName, TenantSlug};
use gatehouse_core::tenant_group::TenantGroup;
use time::OffsetDateTime;

pub(crate) const GROUP_COLUMNS: &str = "id, slug, display_name, created_at";

/// A row of `tenant_groups`.
#[derive(sqlx::FromRow)]
pub(crate) struct GroupRow {
    pub(crate) id: String,
    slug: String,
    display_name: String,
    created_at: OffsetDateTime,
}

fn corrupt(column: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {err}"))
}

impl GroupRow {
    /// The group, with its members from `members` (by group id).
    pub(crate) fn group(
        self,
        members: &BTreeMap<String, BTreeSet<TenantId>>,
    ) -> Result<TenantGroup, StoreError> {
        Ok(TenantGroup {
            tenants: members.get(&self.id).cloned().unwrap_or_default(),
            id: self
                .id
                .parse()
                .map_err(|e| corrupt("tenant_groups.id", e))?,
            slug: TenantSlug::parse(&self.slug).map_err(|e| corrupt("tenant_groups.slug", e))?,
            display_name: DisplayName::parse(&self.display_name)
                .map_err(|e| corrupt("tenant_groups.display_name", e))?,
            created_at: self.created_at,
        })
    }
}

/// Member rows (group id, tenant id) by group.
pub(crate) fn members_by_group(
    rows: Vec<(String, String)>,
) -> Result<BTreeMap<String, BTreeSet<TenantId>>, StoreError> {
    let mut by_group: BTreeMap<String, BTreeSet<TenantId>> = BTreeMap::new();
    for (group, tenant) in rows {
        let tenant = tenant
            .parse()
            .map_err(|e| corrupt("tenant_group_members.tenant_id", e))?;
        by_group.entry(group).or_default().insert(tenant);
    }
    Ok(by_group)
}

/// Adds to each scoped operator the groups its scope names and their
/// members: rows of (operator id, group id, member tenant id or NULL for an
/// empty group).
pub(crate) fn add_scope_groups(
    operators: &mut [gatehouse_core::operator::Operator],
    rows: Vec<(String, String, Option<String>)>,
) -> Result<(), StoreError> {
    for (operator, group, tenant) in rows {
        let group: TenantGroupId = group
            .parse()
            .map_err(|e| corrupt("operator_scope_groups.group_id", e))?;
        let tenant: Option<TenantId> = tenant
            .map(|t| t.parse())
            .transpose()
            .map_err(|e| corrupt("tenant_group_members.tenant_id", e))?;
        for found in operators
            .iter_mut()
            .filter(|o| o.id.to_string() == operator)
        {
            found.scope.add_group(group, tenant);
        }
    }
    Ok(())
}

/// Implements `TenantGroupStore` for `$store`, and the inherent
/// `with_scope_groups` that every operator lookup calls.
macro_rules! impl_tenant_group_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Fills in the groups each scoped operator's scope names and
            /// their members (its reach). One query for any number of
            /// operators; none when no operator is scoped.
            pub(crate) async fn with_scope_groups(
                &self,
                operators: &mut [gatehouse_core::operator::Operator],
            ) -> gatehouse_core::store::StoreResult<()> {
                let scoped: Vec<String> = operators
                    .iter()
                    .filter(|o| o.scope.tenants().is_some())
                    .map(|o| o.id.to_string())
                    .collect();
                if scoped.is_empty() {
                    return Ok(());
                }
                let sql = format!(
                    "SELECT s.operator_id, s.group_id, m.tenant_id
                     FROM operator_scope_groups s
                     LEFT JOIN tenant_group_members m ON m.group_id = s.group_id
                     WHERE {}",
                    <$db as crate::placeholders::IdSet>::within("s.operator_id", "$1"),
                );
                let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(&sql)
                    .bind(crate::placeholders::id_set(Some(&scoped)))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("reading the groups of operators' scopes"))?;
                crate::tenant_group_sql::add_scope_groups(operators, rows)
            }

            /// One operator with its scope's groups.
            pub(crate) async fn with_scope_groups_of(
                &self,
                operator: gatehouse_core::operator::Operator,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::operator::Operator> {
                let mut one = [operator];
                self.with_scope_groups(&mut one).await?;
                let [operator] = one;
                Ok(operator)
            }

            async fn tenant_group_where(
                &self,
                column: &str,
                value: String,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::tenant_group::TenantGroup> {
                let sql = format!(
                    "SELECT {} FROM tenant_groups WHERE {column} = $1",
                    crate::tenant_group_sql::GROUP_COLUMNS
                );
                let row = sqlx::query_as::<_, crate::tenant_group_sql::GroupRow>(&sql)
                    .bind(value)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading a tenant group"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("tenant group"))?;
                let members: Vec<(String, String)> = sqlx::query_as(
                    "SELECT group_id, tenant_id FROM tenant_group_members WHERE group_id = $1",
                )
                .bind(row.id.clone())
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("reading a tenant group's members"))?;
                row.group(&crate::tenant_group_sql::members_by_group(members)?)
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::tenant_group::TenantGroupStore for $store {
            async fn insert_tenant_group(
                &self,
                group: &gatehouse_core::tenant_group::TenantGroup,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                use crate::engine_sql::{Violation, violation};
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let inserted = sqlx::query(
                    "INSERT INTO tenant_groups (id, slug, display_name, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(group.id.to_string())
                .bind(group.slug.as_str())
                .bind(group.display_name.as_str())
                .bind(group.created_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(err) if matches!(violation(&err), Violation::Unique) => {
                        return Err(gatehouse_core::store::StoreError::Conflict(format!(
                            "a tenant group `{}` exists already",
                            group.slug
                        )));
                    }
                    other => other.map_err(db_error("storing a tenant group"))?,
                };
                for tenant in &group.tenants {
                    sqlx::query("INSERT INTO tenant_group_members (group_id, tenant_id) VALUES ($1, $2)")
                        .bind(group.id.to_string())
                        .bind(tenant.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(|err| match violation(&err) {
                            Violation::ForeignKey => gatehouse_core::store::StoreError::NotFound("tenant"),
                            _ => db_error("storing a tenant group's member")(err),
                        })?;
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a tenant group"))
            }

            async fn get_tenant_group(
                &self,
                id: gatehouse_core::id::TenantGroupId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::tenant_group::TenantGroup> {
                self.tenant_group_where("id", id.to_string()).await
            }

            async fn find_tenant_group_by_slug(
                &self,
                slug: &gatehouse_core::tenant::TenantSlug,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::tenant_group::TenantGroup> {
                self.tenant_group_where("slug", slug.as_str().to_owned()).await
            }

            async fn list_tenant_groups(
                &self,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::tenant_group::TenantGroup>> {
                let sql = format!(
                    "SELECT {} FROM tenant_groups ORDER BY slug",
                    crate::tenant_group_sql::GROUP_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::tenant_group_sql::GroupRow>(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing tenant groups"))?;
                let members: Vec<(String, String)> =
                    sqlx::query_as("SELECT group_id, tenant_id FROM tenant_group_members")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(crate::db_error("listing tenant groups' members"))?;
                let members = crate::tenant_group_sql::members_by_group(members)?;
                rows.into_iter().map(|row| row.group(&members)).collect()
            }

            async fn set_tenant_group_member(
                &self,
                group: gatehouse_core::id::TenantGroupId,
                tenant: gatehouse_core::id::TenantId,
                member: bool,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::db_error;
                use crate::engine_sql::{Violation, violation};
                use gatehouse_core::store::StoreError;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let exists: Option<(String,)> = sqlx::query_as("SELECT id FROM tenant_groups WHERE id = $1")
                    .bind(group.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error("reading a tenant group"))?;
                if exists.is_none() {
                    return Err(StoreError::NotFound("tenant group"));
                }
                let done = if member {
                    sqlx::query(
                        "INSERT INTO tenant_group_members (group_id, tenant_id) VALUES ($1, $2)
                         ON CONFLICT (group_id, tenant_id) DO NOTHING",
                    )
                } else {
                    sqlx::query("DELETE FROM tenant_group_members WHERE group_id = $1 AND tenant_id = $2")
                }
                .bind(group.to_string())
                .bind(tenant.to_string())
                .execute(&mut *tx)
                .await;
                let done = match done {
                    Ok(done) => done,
                    Err(err) if matches!(violation(&err), Violation::ForeignKey) => {
                        drop(tx);
                        // The tenant is missing, or the group was deleted
                        // meanwhile (PostgreSQL): say which.
                        return Err(match gatehouse_core::tenant_group::TenantGroupStore::get_tenant_group(self, group).await {
                            Ok(_) => StoreError::NotFound("tenant"),
                            Err(err) => err,
                        });
                    }
                    Err(err) => return Err(db_error("changing a tenant group's members")(err)),
                };
                if done.rows_affected() != 1 {
                    // Already so: nothing to record.
                    return Ok(false);
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a tenant group's members"))?;
                Ok(true)
            }

            async fn delete_tenant_group(
                &self,
                group: gatehouse_core::id::TenantGroupId,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                use crate::engine_sql::{Violation, violation};
                use gatehouse_core::store::StoreError;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let in_use: Vec<(String,)> = sqlx::query_as(
                    "SELECT o.name FROM operator_scope_groups s JOIN operators o ON o.id = s.operator_id
                     WHERE s.group_id = $1 ORDER BY o.name",
                )
                .bind(group.to_string())
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error("reading the scopes that name a tenant group"))?;
                if !in_use.is_empty() {
                    let names: Vec<String> = in_use.into_iter().map(|(name,)| name).collect();
                    return Err(StoreError::Conflict(format!(
                        "the scope of {} names this group",
                        names.join(", ")
                    )));
                }
                let done = sqlx::query("DELETE FROM tenant_groups WHERE id = $1")
                    .bind(group.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| match violation(&err) {
                        // A scope named it meanwhile (PostgreSQL).
                        Violation::ForeignKey => {
                            StoreError::Conflict("an operator's scope names this group".into())
                        }
                        _ => db_error("deleting a tenant group")(err),
                    })?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::NotFound("tenant group"));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a tenant group's deletion"))
            }
        }
    };
}

pub(crate) use impl_tenant_group_store;
