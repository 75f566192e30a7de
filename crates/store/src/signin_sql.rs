//! The SQL behind `SignInStore`, written once for both back ends: operators'
//! credentials (password hash, wrapped TOTP secret, failures and lock) and
//! console sessions.
//!
//! Counting a failure is one upsert that adds one and returns the new
//! count, so concurrent wrong guesses cannot overwrite each other's count;
//! accepting a TOTP step is one conditional update, so a code replayed
//! while its first use commits is refused.

use gatehouse_core::keys::WrappedKey;
use gatehouse_core::signin::{Credentials, Session};
use gatehouse_core::store::StoreError;
use time::OffsetDateTime;

pub(crate) const CREDENTIAL_COLUMNS: &str = "operator_id, password_hash, totp_kek_id, totp_wrapped, totp_last_step, failures, locked_until, updated_at";

/// A row of `operator_credentials`.
#[derive(sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    operator_id: String,
    password_hash: Option<String>,
    totp_kek_id: Option<String>,
    totp_wrapped: Option<Vec<u8>>,
    totp_last_step: Option<i64>,
    failures: i32,
    locked_until: Option<OffsetDateTime>,
    updated_at: OffsetDateTime,
}

impl TryFrom<CredentialsRow> for Credentials {
    type Error = StoreError;

    fn try_from(row: CredentialsRow) -> Result<Self, StoreError> {
        let totp = match (row.totp_kek_id, row.totp_wrapped) {
            (Some(kek_id), Some(ciphertext)) => Some(WrappedKey { kek_id, ciphertext }),
            (None, None) => None,
            _ => {
                return Err(StoreError::Corrupt(
                    "operator_credentials: a TOTP secret without its KEK id, or the reverse".into(),
                ));
            }
        };
        Ok(Self {
            operator_id: row.operator_id.parse().map_err(|e| {
                StoreError::Corrupt(format!("operator_credentials.operator_id: {e}"))
            })?,
            password_hash: row.password_hash,
            totp,
            totp_last_step: row.totp_last_step,
            failures: u32::try_from(row.failures).map_err(|_| {
                StoreError::Corrupt("operator_credentials.failures is negative".into())
            })?,
            locked_until: row.locked_until,
            updated_at: row.updated_at,
        })
    }
}

/// A row of `operator_sessions` joined with its operator.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    session_id: String,
    session_operator_id: String,
    session_secret_hash: String,
    session_second_factor: bool,
    session_created_at: OffsetDateTime,
    session_expires_at: OffsetDateTime,
    session_revoked_at: Option<OffsetDateTime>,
    #[sqlx(flatten)]
    operator: crate::rows::OperatorRow,
}

impl SessionRow {
    pub(crate) fn split(self) -> Result<(Session, gatehouse_core::operator::Operator), StoreError> {
        let corrupt = |column: &str, e: gatehouse_core::DomainError| {
            StoreError::Corrupt(format!("operator_sessions.{column}: {e}"))
        };
        let session = Session {
            id: self.session_id.parse().map_err(|e| corrupt("id", e))?,
            operator_id: self
                .session_operator_id
                .parse()
                .map_err(|e| corrupt("operator_id", e))?,
            hash: self.session_secret_hash,
            second_factor: self.session_second_factor,
            created_at: self.session_created_at,
            expires_at: self.session_expires_at,
            revoked_at: self.session_revoked_at,
        };
        Ok((session, self.operator.try_into()?))
    }
}

macro_rules! impl_sign_in_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl gatehouse_core::signin::SignInStore for $store {
            async fn credentials(
                &self,
                operator: gatehouse_core::id::OperatorId,
            ) -> gatehouse_core::store::StoreResult<Option<gatehouse_core::signin::Credentials>> {
                let sql = format!(
                    "SELECT {} FROM operator_credentials WHERE operator_id = $1",
                    crate::signin_sql::CREDENTIAL_COLUMNS
                );
                sqlx::query_as::<_, crate::signin_sql::CredentialsRow>(&sql)
                    .bind(operator.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading an operator's credentials"))?
                    .map(TryInto::try_into)
                    .transpose()
            }

            async fn put_credentials(
                &self,
                credentials: &gatehouse_core::signin::Credentials,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                sqlx::query(
                    "INSERT INTO operator_credentials
                         (operator_id, password_hash, totp_kek_id, totp_wrapped, totp_last_step, failures, locked_until, updated_at)
                     VALUES ($1, $2, $3, $4, $5, 0, NULL, $6)
                     ON CONFLICT (operator_id) DO UPDATE SET
                         password_hash = excluded.password_hash,
                         totp_kek_id = excluded.totp_kek_id,
                         totp_wrapped = excluded.totp_wrapped,
                         totp_last_step = excluded.totp_last_step,
                         failures = 0,
                         locked_until = NULL,
                         updated_at = excluded.updated_at",
                )
                .bind(credentials.operator_id.to_string())
                .bind(credentials.password_hash.as_deref())
                .bind(credentials.totp.as_ref().map(|k| k.kek_id.as_str()))
                .bind(credentials.totp.as_ref().map(|k| k.ciphertext.as_slice()))
                .bind(credentials.totp_last_step)
                .bind(credentials.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(|err| match crate::engine_sql::violation(&err) {
                    crate::engine_sql::Violation::ForeignKey => {
                        gatehouse_core::store::StoreError::NotFound("operator")
                    }
                    _ => db_error("storing an operator's credentials")(err),
                })?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing credentials"))
            }

            async fn record_sign_in_failure(
                &self,
                operator: gatehouse_core::id::OperatorId,
                now: time::OffsetDateTime,
                lockout: gatehouse_core::signin::Lockout,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<u32> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let failures: i32 = sqlx::query_scalar(
                    "INSERT INTO operator_credentials (operator_id, failures, updated_at)
                     VALUES ($1, 1, $2)
                     ON CONFLICT (operator_id) DO UPDATE SET
                         failures = operator_credentials.failures + 1,
                         updated_at = excluded.updated_at
                     RETURNING failures",
                )
                .bind(operator.to_string())
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error("counting a failed sign-in"))?;
                let failures = u32::try_from(failures).unwrap_or(0);
                if let Some(until) = lockout.until(failures, now) {
                    sqlx::query("UPDATE operator_credentials SET locked_until = $1 WHERE operator_id = $2")
                        .bind(until)
                        .bind(operator.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_error("locking an operator's sign-in"))?;
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a failed sign-in"))?;
                Ok(failures)
            }

            async fn open_session(
                &self,
                session: &gatehouse_core::signin::Session,
                totp_step: Option<i64>,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let reset = match totp_step {
                    Some(step) => sqlx::query(
                        "UPDATE operator_credentials
                         SET failures = 0, locked_until = NULL, totp_last_step = $1, updated_at = $2
                         WHERE operator_id = $3 AND (totp_last_step IS NULL OR totp_last_step < $1)",
                    )
                    .bind(step),
                    None => sqlx::query(
                        "UPDATE operator_credentials
                         SET failures = 0, locked_until = NULL, updated_at = $1
                         WHERE operator_id = $2",
                    ),
                };
                let done = reset
                    .bind(session.created_at)
                    .bind(session.operator_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("resetting an operator's failures"))?;
                if totp_step.is_some() && done.rows_affected() != 1 {
                    return Err(gatehouse_core::store::StoreError::Conflict(
                        "this code has been used already; wait for the next one".into(),
                    ));
                }
                sqlx::query(
                    "INSERT INTO operator_sessions
                         (id, operator_id, secret_hash, second_factor, created_at, expires_at, revoked_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(session.id.to_string())
                .bind(session.operator_id.to_string())
                .bind(session.hash.as_str())
                .bind(session.second_factor)
                .bind(session.created_at)
                .bind(session.expires_at)
                .bind(session.revoked_at)
                .execute(&mut *tx)
                .await
                .map_err(db_error("opening a session"))?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a sign-in"))
            }

            async fn find_session(
                &self,
                hash: &str,
            ) -> gatehouse_core::store::StoreResult<(
                gatehouse_core::signin::Session,
                gatehouse_core::operator::Operator,
            )> {
                let found = sqlx::query_as::<_, crate::signin_sql::SessionRow>(
                    "SELECT s.id AS session_id, s.operator_id AS session_operator_id,
                            s.secret_hash AS session_secret_hash, s.second_factor AS session_second_factor,
                            s.created_at AS session_created_at, s.expires_at AS session_expires_at,
                            s.revoked_at AS session_revoked_at,
                            o.id, o.name, o.display_name, o.role, o.disabled, o.tenant_scope, o.created_at
                     FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
                     WHERE s.secret_hash = $1",
                )
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("looking up a session"))?
                .ok_or(gatehouse_core::store::StoreError::NotFound("session"))?
                .split()?;
                let (session, operator) = found;
                Ok((session, self.with_scope_groups_of(operator).await?))
            }

            async fn totp_secrets(
                &self,
            ) -> gatehouse_core::store::StoreResult<
                Vec<(gatehouse_core::id::OperatorId, gatehouse_core::keys::WrappedKey)>,
            > {
                let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT operator_id, totp_kek_id, totp_wrapped FROM operator_credentials
                     WHERE totp_kek_id IS NOT NULL ORDER BY operator_id",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing TOTP secrets"))?;
                rows.into_iter()
                    .map(|(operator, kek_id, ciphertext)| {
                        let operator = operator.parse().map_err(|e| {
                            gatehouse_core::store::StoreError::Corrupt(format!(
                                "operator_credentials.operator_id: {e}"
                            ))
                        })?;
                        Ok((operator, gatehouse_core::keys::WrappedKey { kek_id, ciphertext }))
                    })
                    .collect()
            }

            async fn rewrap_totp_secret(
                &self,
                operator: gatehouse_core::id::OperatorId,
                from_kek: &str,
                new: &gatehouse_core::keys::WrappedKey,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE operator_credentials SET totp_kek_id = $1, totp_wrapped = $2
                     WHERE operator_id = $3 AND totp_kek_id = $4",
                )
                .bind(new.kek_id.as_str())
                .bind(new.ciphertext.as_slice())
                .bind(operator.to_string())
                .bind(from_kek)
                .execute(&mut *tx)
                .await
                .map_err(db_error("rewrapping a TOTP secret"))?;
                if done.rows_affected() != 1 {
                    return Err(gatehouse_core::store::StoreError::Stale("TOTP secret"));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a TOTP rewrap"))
            }

            async fn end_session(
                &self,
                id: gatehouse_core::id::SessionId,
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::db_error;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE operator_sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_error("ending a session"))?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(db_error("committing a sign-out"))?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_sign_in_store;
