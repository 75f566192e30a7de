//! The SQL behind every storage trait, written once for both back ends.
//!
//! `impl_store_traits!` instantiates the trait implementations for a store
//! type with a `pool` field (reads) and a `writer` field (writes and
//! transactions) of the back end's pool type. On PostgreSQL both are the
//! same pool; on SQLite the writer is a single connection, so writers queue
//! in the pool instead of spinning on SQLite's write lock. Everything inside
//! is ordinary sqlx code; only what truly differs between SQLite and
//! PostgreSQL (connecting, migrations, the pool type) lives in `sqlite.rs`
//! and `postgres.rs`.

use gatehouse_core::store::StoreError;

/// Maps a unique-constraint violation to `Conflict(message)` and anything
/// else to a back-end error with `context`.
pub(crate) fn conflict_or(
    context: &'static str,
    message: String,
) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| {
        let unique = err
            .as_database_error()
            .is_some_and(|d| d.is_unique_violation());
        if unique {
            StoreError::Conflict(message)
        } else {
            crate::db_error(context)(err)
        }
    }
}

pub(crate) const TENANT_COLUMNS: &str =
    "id, slug, display_name, region, state, version, created_at, updated_at";
pub(crate) const OPERATOR_COLUMNS: &str =
    "id, name, display_name, role, disabled, tenant_scope, created_at";
pub(crate) const TOKEN_COLUMNS: &str =
    "id, operator_id, name, token_hash, created_at, expires_at, revoked_at";

macro_rules! impl_store_traits {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl gatehouse_core::store::TenantStore for $store {
            async fn insert_tenant(
                &self,
                tenant: &gatehouse_core::tenant::Tenant,
                key: &gatehouse_core::keys::TenantKey,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                sqlx::query(
                    "INSERT INTO tenants (id, slug, display_name, region, state, version, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(tenant.id.to_string())
                .bind(tenant.slug.as_str())
                .bind(tenant.display_name.as_str())
                .bind(tenant.region.as_str())
                .bind(tenant.state.as_str())
                .bind(tenant.version)
                .bind(tenant.created_at)
                .bind(tenant.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(crate::sql::conflict_or(
                    "inserting a tenant",
                    format!("a tenant with slug `{}` already exists", tenant.slug),
                ))?;
                sqlx::query(
                    "INSERT INTO tenant_keys (tenant_id, kek_id, wrapped, created_at, rewrapped_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(key.tenant_id.to_string())
                .bind(&key.wrapped.kek_id)
                .bind(&key.wrapped.ciphertext)
                .bind(key.created_at)
                .bind(key.rewrapped_at)
                .execute(&mut *tx)
                .await
                .map_err(db_error("inserting a tenant key"))?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a new tenant"))
            }

            async fn get_tenant(
                &self,
                id: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::tenant::Tenant> {
                let sql = format!("SELECT {} FROM tenants WHERE id = $1", crate::sql::TENANT_COLUMNS);
                sqlx::query_as::<_, crate::rows::TenantRow>(&sql)
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading a tenant"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("tenant"))?
                    .try_into()
            }

            async fn find_tenant_by_slug(
                &self,
                slug: &gatehouse_core::tenant::TenantSlug,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::tenant::Tenant> {
                let sql = format!(
                    "SELECT {} FROM tenants WHERE slug = $1 AND state <> 'deleted'",
                    crate::sql::TENANT_COLUMNS
                );
                sqlx::query_as::<_, crate::rows::TenantRow>(&sql)
                    .bind(slug.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading a tenant"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("tenant"))?
                    .try_into()
            }

            async fn list_tenants(
                &self,
                query: &gatehouse_core::store::TenantQuery,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::tenant::Tenant>> {
                // `$1` is the state filter (NULL: every live state), `$2` the cursor.
                let sql = format!(
                    "SELECT {} FROM tenants
                     WHERE (($1 IS NULL AND state <> 'deleted') OR state = $1)
                       AND ($2 IS NULL OR id > $2)
                       AND {}
                     ORDER BY id LIMIT $3",
                    crate::sql::TENANT_COLUMNS,
                    <$db as crate::placeholders::IdSet>::within("id", "$4"),
                );
                let rows = sqlx::query_as::<_, crate::rows::TenantRow>(&sql)
                    .bind(query.state.map(|s| s.as_str()))
                    .bind(query.after.map(|id| id.to_string()))
                    .bind(i64::from(query.limit))
                    .bind(crate::placeholders::id_set(query.within.as_deref()))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing tenants"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn update_tenant(
                &self,
                tenant: &gatehouse_core::tenant::Tenant,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE tenants SET display_name = $1, region = $2, state = $3, version = $4, updated_at = $5
                     WHERE id = $6 AND version = $7",
                )
                .bind(tenant.display_name.as_str())
                .bind(tenant.region.as_str())
                .bind(tenant.state.as_str())
                .bind(tenant.version)
                .bind(tenant.updated_at)
                .bind(tenant.id.to_string())
                .bind(tenant.version - 1)
                .execute(&mut *tx)
                .await
                .map_err(db_error("updating a tenant"))?;
                if done.rows_affected() != 1 {
                    drop(tx);
                    // Either gone or changed meanwhile: tell which.
                    self.get_tenant(tenant.id).await?;
                    return Err(gatehouse_core::store::StoreError::Stale("tenant"));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a tenant update"))
            }

            async fn delete_tenant(
                &self,
                tenant: &gatehouse_core::tenant::Tenant,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let id = tenant.id.to_string();
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE tenants SET state = 'deleted', version = $1, updated_at = $2
                     WHERE id = $3 AND version = $4",
                )
                .bind(tenant.version)
                .bind(tenant.updated_at)
                .bind(&id)
                .bind(tenant.version - 1)
                .execute(&mut *tx)
                .await
                .map_err(db_error("deleting a tenant"))?;
                if done.rows_affected() != 1 {
                    drop(tx);
                    self.get_tenant(tenant.id).await?;
                    return Err(gatehouse_core::store::StoreError::Stale("tenant"));
                }
                sqlx::query("DELETE FROM tenant_secrets WHERE tenant_id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("shredding a tenant's secrets"))?;
                sqlx::query("DELETE FROM tenant_keys WHERE tenant_id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("shredding a tenant's key"))?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit()
                    .await
                    .map_err(db_error("committing a tenant deletion"))?;
                self.after_shred().await;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::store::TenantKeyStore for $store {
            async fn get_tenant_key(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::keys::TenantKey> {
                sqlx::query_as::<_, crate::rows::TenantKeyRow>(
                    "SELECT tenant_id, kek_id, wrapped, created_at, rewrapped_at FROM tenant_keys WHERE tenant_id = $1",
                )
                .bind(tenant.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading a tenant key"))?
                .ok_or(gatehouse_core::store::StoreError::NotFound("tenant key"))?
                .try_into()
            }

            async fn list_tenant_keys(
                &self,
                after: Option<gatehouse_core::id::TenantId>,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::keys::TenantKey>> {
                let rows = sqlx::query_as::<_, crate::rows::TenantKeyRow>(
                    "SELECT tenant_id, kek_id, wrapped, created_at, rewrapped_at FROM tenant_keys
                     WHERE ($1 IS NULL OR tenant_id > $1) ORDER BY tenant_id LIMIT $2",
                )
                .bind(after.map(|id| id.to_string()))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing tenant keys"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn rewrap_tenant_key(
                &self,
                tenant: gatehouse_core::id::TenantId,
                expected_kek: &str,
                wrapped: &gatehouse_core::keys::WrappedKey,
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE tenant_keys SET kek_id = $1, wrapped = $2, rewrapped_at = $3
                     WHERE tenant_id = $4 AND kek_id = $5",
                )
                .bind(&wrapped.kek_id)
                .bind(&wrapped.ciphertext)
                .bind(at)
                .bind(tenant.to_string())
                .bind(expected_kek)
                .execute(&mut *tx)
                .await
                .map_err(db_error("rewrapping a tenant key"))?;
                if done.rows_affected() != 1 {
                    drop(tx);
                    self.get_tenant_key(tenant).await?;
                    return Err(gatehouse_core::store::StoreError::Stale("tenant key"));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a rewrapped tenant key"))
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::store::SecretStore for $store {
            async fn put_secret(
                &self,
                tenant: gatehouse_core::id::TenantId,
                name: &gatehouse_core::secret::SecretName,
                sealed: &[u8],
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::secret::SecretMeta> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let meta = sqlx::query_as::<_, crate::rows::SecretMetaRow>(
                    "INSERT INTO tenant_secrets (tenant_id, name, sealed, version, created_at, updated_at)
                     VALUES ($1, $2, $3, 1, $4, $4)
                     ON CONFLICT (tenant_id, name) DO UPDATE
                       SET sealed = excluded.sealed, version = tenant_secrets.version + 1, updated_at = excluded.updated_at
                     RETURNING tenant_id, name, version, created_at, updated_at",
                )
                .bind(tenant.to_string())
                .bind(name.as_str())
                .bind(sealed)
                .bind(at)
                .fetch_one(&mut *tx)
                .await
                .map_err(|err| {
                    if err.as_database_error().is_some_and(|d| d.is_foreign_key_violation()) {
                        // The tenant's key is destroyed (or never existed).
                        gatehouse_core::store::StoreError::NotFound("tenant key")
                    } else {
                        db_error("storing a secret")(err)
                    }
                })?
                .try_into()?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a secret"))?;
                Ok(meta)
            }

            async fn get_secret(
                &self,
                tenant: gatehouse_core::id::TenantId,
                name: &gatehouse_core::secret::SecretName,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::secret::SealedSecret> {
                #[derive(sqlx::FromRow)]
                struct Row {
                    #[sqlx(flatten)]
                    meta: crate::rows::SecretMetaRow,
                    sealed: Vec<u8>,
                }
                let row = sqlx::query_as::<_, Row>(
                    "SELECT tenant_id, name, version, created_at, updated_at, sealed FROM tenant_secrets
                     WHERE tenant_id = $1 AND name = $2",
                )
                .bind(tenant.to_string())
                .bind(name.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading a secret"))?
                .ok_or(gatehouse_core::store::StoreError::NotFound("secret"))?;
                Ok(gatehouse_core::secret::SealedSecret { meta: row.meta.try_into()?, sealed: row.sealed })
            }

            async fn list_secrets(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::secret::SecretMeta>> {
                let rows = sqlx::query_as::<_, crate::rows::SecretMetaRow>(
                    "SELECT tenant_id, name, version, created_at, updated_at FROM tenant_secrets
                     WHERE tenant_id = $1 ORDER BY name",
                )
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing secrets"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn delete_secret(
                &self,
                tenant: gatehouse_core::id::TenantId,
                name: &gatehouse_core::secret::SecretName,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query("DELETE FROM tenant_secrets WHERE tenant_id = $1 AND name = $2")
                    .bind(tenant.to_string())
                    .bind(name.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("deleting a secret"))?;
                if done.rows_affected() != 1 {
                    return Err(gatehouse_core::store::StoreError::NotFound("secret"));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a secret deletion"))
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::store::OperatorStore for $store {
            async fn bootstrap_operator(
                &self,
                operator: &gatehouse_core::operator::Operator,
                token: &gatehouse_core::operator::ApiToken,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                crate::sql::insert_operator_sql(operator).execute(&mut *tx).await.map_err(
                    crate::sql::conflict_or("bootstrapping", format!("operator `{}` already exists", operator.name)),
                )?;
                let claimed = sqlx::query("INSERT INTO bootstrap (id, operator_id, at) VALUES (1, $1, $2)")
                    .bind(operator.id.to_string())
                    .bind(operator.created_at)
                    .execute(&mut *tx)
                    .await;
                match claimed {
                    Ok(_) => {}
                    Err(err) if err.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                        return Ok(false);
                    }
                    Err(err) => return Err(db_error("claiming the bootstrap")(err)),
                }
                crate::sql::insert_token_sql(token).execute(&mut *tx).await.map_err(db_error("storing a token"))?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing the bootstrap"))?;
                Ok(true)
            }

            async fn insert_operator(
                &self,
                operator: &gatehouse_core::operator::Operator,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                crate::sql::insert_operator_sql(operator).execute(&mut *tx).await.map_err(
                    crate::sql::conflict_or(
                        "inserting an operator",
                        format!("an operator named `{}` already exists", operator.name),
                    ),
                )?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a new operator"))
            }

            async fn get_operator(
                &self,
                id: gatehouse_core::id::OperatorId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::operator::Operator> {
                let sql = format!("SELECT {} FROM operators WHERE id = $1", crate::sql::OPERATOR_COLUMNS);
                let row = sqlx::query_as::<_, crate::rows::OperatorRow>(&sql)
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading an operator"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("operator"))?;
                self.with_scope_groups_of(row.try_into()?).await
            }

            async fn find_operator_by_name(
                &self,
                name: &gatehouse_core::operator::OperatorName,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::operator::Operator> {
                let sql = format!("SELECT {} FROM operators WHERE name = $1", crate::sql::OPERATOR_COLUMNS);
                let row = sqlx::query_as::<_, crate::rows::OperatorRow>(&sql)
                    .bind(name.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading an operator"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("operator"))?;
                self.with_scope_groups_of(row.try_into()?).await
            }

            async fn list_operators(
                &self,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::operator::Operator>> {
                let sql = format!("SELECT {} FROM operators ORDER BY name", crate::sql::OPERATOR_COLUMNS);
                let rows = sqlx::query_as::<_, crate::rows::OperatorRow>(&sql)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing operators"))?;
                let mut operators = rows
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect::<Result<Vec<gatehouse_core::operator::Operator>, _>>()?;
                self.with_scope_groups(&mut operators).await?;
                Ok(operators)
            }

            async fn set_operator_disabled(
                &self,
                id: gatehouse_core::id::OperatorId,
                disabled: bool,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query("UPDATE operators SET disabled = $1 WHERE id = $2 AND disabled <> $1")
                    .bind(disabled)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("updating an operator"))?;
                if done.rows_affected() != 1 {
                    drop(tx);
                    // Already so (nothing to record) or missing.
                    self.get_operator(id).await?;
                    return Ok(false);
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing an operator change"))?;
                Ok(true)
            }

            async fn set_operator_scope(
                &self,
                id: gatehouse_core::id::OperatorId,
                scope: &gatehouse_core::operator::Scope,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::db_error;
                use crate::engine_sql::{Violation, violation};
                use gatehouse_core::store::StoreError;
                let stored = scope.to_stored();
                let groups: std::collections::BTreeSet<String> =
                    scope.groups().map(|g| g.to_string()).collect();
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                // Lock the operator's row first, so two admins changing one
                // scope at once take turns (PostgreSQL; SQLite has one writer).
                let locked = sqlx::query("UPDATE operators SET tenant_scope = tenant_scope WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("reading an operator's scope"))?;
                if locked.rows_affected() != 1 {
                    return Err(StoreError::NotFound("operator"));
                }
                let current: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT tenant_scope FROM operators WHERE id = $1")
                        .bind(id.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_error("reading an operator's scope"))?;
                let Some((current,)) = current else {
                    return Err(StoreError::NotFound("operator"));
                };
                let current_groups: Vec<(String,)> =
                    sqlx::query_as("SELECT group_id FROM operator_scope_groups WHERE operator_id = $1")
                        .bind(id.to_string())
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(db_error("reading an operator's scope"))?;
                let current_groups: std::collections::BTreeSet<String> =
                    current_groups.into_iter().map(|(g,)| g).collect();
                if current == stored && current_groups == groups {
                    // Already so: nothing to record.
                    return Ok(false);
                }
                sqlx::query("UPDATE operators SET tenant_scope = $1 WHERE id = $2")
                    .bind(stored.as_deref())
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("updating an operator's scope"))?;
                sqlx::query("DELETE FROM operator_scope_groups WHERE operator_id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("updating an operator's scope"))?;
                for group in &groups {
                    sqlx::query("INSERT INTO operator_scope_groups (operator_id, group_id) VALUES ($1, $2)")
                        .bind(id.to_string())
                        .bind(group)
                        .execute(&mut *tx)
                        .await
                        .map_err(|err| match violation(&err) {
                            Violation::ForeignKey => StoreError::NotFound("tenant group"),
                            _ => db_error("updating an operator's scope")(err),
                        })?;
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing an operator's scope"))?;
                Ok(true)
            }

            async fn insert_token(
                &self,
                token: &gatehouse_core::operator::ApiToken,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                crate::sql::insert_token_sql(token)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("storing a token"))?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a new token"))
            }

            async fn find_token(
                &self,
                hash: &gatehouse_core::operator::TokenHash,
            ) -> gatehouse_core::store::StoreResult<(
                gatehouse_core::operator::ApiToken,
                gatehouse_core::operator::Operator,
            )> {
                let row = sqlx::query_as::<_, crate::rows::TokenWithOperatorRow>(
                    "SELECT t.id, t.operator_id, t.name, t.token_hash, t.created_at, t.expires_at, t.revoked_at,
                            o.id AS op_id, o.name AS op_name, o.display_name AS op_display_name,
                            o.role AS op_role, o.disabled AS op_disabled, o.tenant_scope AS op_tenant_scope,
                            o.created_at AS op_created_at
                     FROM api_tokens t JOIN operators o ON o.id = t.operator_id
                     WHERE t.token_hash = $1",
                )
                .bind(hash.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("looking up a token"))?
                .ok_or(gatehouse_core::store::StoreError::NotFound("token"))?;
                let operator = self.with_scope_groups_of(row.operator()?).await?;
                Ok((row.token.try_into()?, operator))
            }

            async fn list_tokens(
                &self,
                operator: gatehouse_core::id::OperatorId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::operator::ApiToken>> {
                let sql = format!(
                    "SELECT {} FROM api_tokens WHERE operator_id = $1 ORDER BY id DESC",
                    crate::sql::TOKEN_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::rows::TokenRow>(&sql)
                    .bind(operator.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing tokens"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn get_token(
                &self,
                id: gatehouse_core::id::TokenId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::operator::ApiToken> {
                let sql = format!("SELECT {} FROM api_tokens WHERE id = $1", crate::sql::TOKEN_COLUMNS);
                sqlx::query_as::<_, crate::rows::TokenRow>(&sql)
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading a token"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("token"))?
                    .try_into()
            }

            async fn revoke_token(
                &self,
                id: gatehouse_core::id::TokenId,
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(at)
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("revoking a token"))?;
                if done.rows_affected() != 1 {
                    drop(tx);
                    // Revoked before (nothing to record) or missing.
                    self.get_token(id).await?;
                    return Ok(false);
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a token revocation"))?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_store_traits;

/// The operator insert, shared by bootstrap and plain inserts. Generic over
/// the database so both back ends use it.
pub(crate) fn insert_operator_sql<'q, DB>(
    operator: &'q gatehouse_core::operator::Operator,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    time::OffsetDateTime: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO operators (id, name, display_name, role, disabled, tenant_scope, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(operator.id.to_string())
    .bind(operator.name.as_str())
    .bind(operator.display_name.as_str())
    .bind(operator.role.as_str())
    .bind(operator.disabled)
    .bind(operator.scope.to_stored())
    .bind(operator.created_at)
}

/// The token insert, shared by bootstrap and plain inserts.
pub(crate) fn insert_token_sql<'q, DB>(
    token: &'q gatehouse_core::operator::ApiToken,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    DB: sqlx::Database,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    time::OffsetDateTime: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<time::OffsetDateTime>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "INSERT INTO api_tokens (id, operator_id, name, token_hash, created_at, expires_at, revoked_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.id.to_string())
    .bind(token.operator_id.to_string())
    .bind(token.name.as_str())
    .bind(token.hash.as_str())
    .bind(token.created_at)
    .bind(token.expires_at)
    .bind(token.revoked_at)
}
