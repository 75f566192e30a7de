//! The SQL behind `AuditKeyStore`: the audit log's wrapped signing keys,
//! written once for both back ends in the way of [`crate::sql`].
//!
//! "At most one active key" is enforced by the database (a unique partial
//! index over the rows with no `retired_at`), so two nodes creating the
//! first key at once cannot both succeed: the loser gets `Conflict` and
//! reads the winner's key.

#[derive(sqlx::FromRow)]
pub(crate) struct AuditKeyRow {
    public_key: Vec<u8>,
    name: String,
    kek_id: String,
    wrapped: Vec<u8>,
    created_at: time::OffsetDateTime,
    rewrapped_at: Option<time::OffsetDateTime>,
    retired_at: Option<time::OffsetDateTime>,
}

impl TryFrom<AuditKeyRow> for gatehouse_core::audit_key::AuditSigningKey {
    type Error = gatehouse_core::store::StoreError;

    fn try_from(row: AuditKeyRow) -> Result<Self, Self::Error> {
        let public_key = <[u8; 32]>::try_from(row.public_key.as_slice()).map_err(|_| {
            gatehouse_core::store::StoreError::Corrupt(format!(
                "audit_signing_keys.public_key is {} bytes, not 32",
                row.public_key.len()
            ))
        })?;
        Ok(Self {
            name: row.name,
            public_key,
            wrapped: gatehouse_core::keys::WrappedKey {
                kek_id: row.kek_id,
                ciphertext: row.wrapped,
            },
            created_at: row.created_at,
            rewrapped_at: row.rewrapped_at,
            retired_at: row.retired_at,
        })
    }
}

pub(crate) const AUDIT_KEY_COLUMNS: &str =
    "public_key, name, kek_id, wrapped, created_at, rewrapped_at, retired_at";

macro_rules! impl_audit_key_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl gatehouse_core::audit_key::AuditKeyStore for $store {
            async fn insert_audit_key(
                &self,
                key: &gatehouse_core::audit_key::AuditSigningKey,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                if key.retired_at.is_some() {
                    return Err(gatehouse_core::store::StoreError::Conflict(
                        "a new audit signing key must be active (no retired_at)".into(),
                    ));
                }
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                sqlx::query(
                    "INSERT INTO audit_signing_keys
                         (public_key, name, kek_id, wrapped, created_at, rewrapped_at, retired_at)
                     VALUES ($1, $2, $3, $4, $5, $6, NULL)",
                )
                .bind(key.public_key.as_slice())
                .bind(&key.name)
                .bind(&key.wrapped.kek_id)
                .bind(&key.wrapped.ciphertext)
                .bind(key.created_at)
                .bind(key.rewrapped_at)
                .execute(&mut *tx)
                .await
                .map_err(crate::sql::conflict_or(
                    "storing the audit signing key",
                    "an audit signing key is already active".into(),
                ))?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing the audit signing key"))
            }

            async fn active_audit_key(
                &self,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::audit_key::AuditSigningKey>
            {
                sqlx::query_as::<_, crate::audit_key_sql::AuditKeyRow>(&format!(
                    "SELECT {} FROM audit_signing_keys WHERE retired_at IS NULL",
                    crate::audit_key_sql::AUDIT_KEY_COLUMNS
                ))
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading the audit signing key"))?
                .ok_or(gatehouse_core::store::StoreError::NotFound(
                    "audit signing key",
                ))?
                .try_into()
            }

            async fn list_audit_keys(
                &self,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::audit_key::AuditSigningKey>>
            {
                let rows = sqlx::query_as::<_, crate::audit_key_sql::AuditKeyRow>(&format!(
                    "SELECT {} FROM audit_signing_keys ORDER BY created_at, public_key",
                    crate::audit_key_sql::AUDIT_KEY_COLUMNS
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing audit signing keys"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn rewrap_audit_key(
                &self,
                public_key: &[u8; 32],
                expected_kek: &str,
                wrapped: &gatehouse_core::keys::WrappedKey,
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE audit_signing_keys SET kek_id = $1, wrapped = $2, rewrapped_at = $3
                     WHERE public_key = $4 AND kek_id = $5",
                )
                .bind(&wrapped.kek_id)
                .bind(&wrapped.ciphertext)
                .bind(at)
                .bind(public_key.as_slice())
                .bind(expected_kek)
                .execute(&mut *tx)
                .await
                .map_err(crate::db_error("rewrapping the audit signing key"))?;
                if done.rows_affected() == 1 {
                    Self::write_audit_records(&mut tx, audit).await?;
                    return tx
                        .commit()
                        .await
                        .map_err(crate::db_error("committing the rewrapped audit signing key"));
                }
                drop(tx);
                let exists: Option<(String,)> =
                    sqlx::query_as("SELECT name FROM audit_signing_keys WHERE public_key = $1")
                        .bind(public_key.as_slice())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(crate::db_error("reading an audit signing key"))?;
                match exists {
                    Some(_) => Err(gatehouse_core::store::StoreError::Stale(
                        "audit signing key",
                    )),
                    None => Err(gatehouse_core::store::StoreError::NotFound(
                        "audit signing key",
                    )),
                }
            }
        }
    };
}

pub(crate) use impl_audit_key_store;
