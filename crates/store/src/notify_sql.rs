//! The SQL behind `NotificationStore`, written once for both back ends in
//! the way of [`crate::engine_sql`]: `impl_notification_store!`
//! instantiates it for a store type with a `pool` (reads) and a `writer`
//! (writes and transactions), and adds `write_notifications`, which
//! `write_progress` calls so that a notification is queued in the same
//! transaction as the step it is about.
//!
//! Claiming is one `UPDATE … WHERE id IN (due ones) AND <due again>
//! RETURNING`: the outer condition repeats the inner one, so on PostgreSQL
//! a second dispatcher that waited for the row lock re-checks it on the new
//! row version and skips a notification the first one leased. SQLite has one
//! writer, so claims there are serial anyway.

use gatehouse_core::notify::{EmailAddress, Notification};
use gatehouse_core::store::{StoreError, StoreResult};
use sqlx::query::Query;
use sqlx::{Database, Encode, Type};
use time::OffsetDateTime;

use crate::engine_sql::{SortableTime, to_json};

pub(crate) const NOTIFICATION_COLUMNS: &str = "id, tenant_id, instance_id, step_id, kind, recipient, subject, detail, created_at, attempts, next_attempt_at, state, last_error, delivered_at";
const NOTIFICATION_WIDTH: usize = 14;

/// Rows per multi-row insert (14 values a row).
pub(crate) const MAX_ROWS: usize = 256;

/// `INSERT … VALUES (…), (…) ON CONFLICT (id) DO NOTHING` for `rows` rows.
pub(crate) fn insert_notifications_sql(rows: usize) -> String {
    let mut values = Vec::with_capacity(rows);
    for row in 0..rows {
        let holes: Vec<String> = (1..=NOTIFICATION_WIDTH)
            .map(|col| format!("${}", row * NOTIFICATION_WIDTH + col))
            .collect();
        values.push(format!("({})", holes.join(", ")));
    }
    format!(
        "INSERT INTO notifications ({NOTIFICATION_COLUMNS}) VALUES {}
         ON CONFLICT (id) DO NOTHING",
        values.join(", ")
    )
}

/// Binds a notification's columns, in [`NOTIFICATION_COLUMNS`] order.
pub(crate) fn bind_notification<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    n: &Notification,
) -> StoreResult<Query<'q, DB, <DB as Database>::Arguments<'q>>>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    SortableTime: Encode<'q, DB> + Type<DB>,
    Option<SortableTime>: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(n.id.to_string())
        .bind(n.tenant_id.map(|t| t.to_string()))
        .bind(n.instance_id.to_string())
        .bind(n.step_id.clone())
        .bind(n.kind.clone())
        .bind(n.recipient.as_ref().map(|r| r.as_str().to_owned()))
        .bind(n.subject.clone())
        .bind(to_json(&n.detail)?)
        .bind(SortableTime(n.created_at))
        .bind(i64::from(n.attempts))
        .bind(n.next_attempt_at.map(SortableTime))
        .bind(n.state.as_str().to_owned())
        .bind(n.last_error.clone())
        .bind(n.delivered_at.map(SortableTime)))
}

/// A notification as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct NotificationRow {
    id: String,
    tenant_id: Option<String>,
    instance_id: String,
    step_id: String,
    kind: String,
    recipient: Option<String>,
    subject: String,
    detail: String,
    created_at: OffsetDateTime,
    attempts: i64,
    next_attempt_at: Option<OffsetDateTime>,
    state: String,
    last_error: Option<String>,
    delivered_at: Option<OffsetDateTime>,
}

fn corrupt(column: &'static str) -> impl FnOnce(gatehouse_core::DomainError) -> StoreError {
    move |e| StoreError::Corrupt(format!("notifications.{column}: {e}"))
}

impl TryFrom<NotificationRow> for Notification {
    type Error = StoreError;

    fn try_from(row: NotificationRow) -> Result<Self, StoreError> {
        Ok(Notification {
            id: row.id.parse().map_err(corrupt("id"))?,
            tenant_id: row
                .tenant_id
                .map(|t| t.parse())
                .transpose()
                .map_err(corrupt("tenant_id"))?,
            instance_id: row.instance_id.parse().map_err(corrupt("instance_id"))?,
            step_id: row.step_id,
            kind: row.kind,
            recipient: row
                .recipient
                .map(|r| EmailAddress::parse(&r))
                .transpose()
                .map_err(corrupt("recipient"))?,
            subject: row.subject,
            detail: serde_json::from_str(&row.detail)
                .map_err(|e| StoreError::Corrupt(format!("notifications.detail: {e}")))?,
            created_at: row.created_at,
            attempts: u32::try_from(row.attempts).map_err(|_| {
                StoreError::Corrupt(format!(
                    "notifications.attempts: {} is out of range",
                    row.attempts
                ))
            })?,
            next_attempt_at: row.next_attempt_at,
            state: row.state.parse().map_err(corrupt("state"))?,
            last_error: row.last_error,
            delivered_at: row.delivered_at,
        })
    }
}

/// A stored attempt count.
pub(crate) fn attempts(n: u32) -> i64 {
    i64::from(n)
}

macro_rules! impl_notification_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Queues the notifications of a batch of progress on `conn`,
            /// inside the caller's transaction (after the instances, which
            /// they reference). One already stored is left as it is.
            async fn write_notifications(
                conn: &mut <$db as sqlx::Database>::Connection,
                batch: &[gatehouse_core::workflow::Progress],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{Violation, violation};
                use gatehouse_core::store::StoreError;
                let mut all = Vec::new();
                for progress in batch {
                    for n in &progress.notifications {
                        if n.instance_id != progress.instance.id {
                            return Err(StoreError::Conflict(format!(
                                "notification {} belongs to workflow instance {}, not {}",
                                n.id, n.instance_id, progress.instance.id
                            )));
                        }
                        all.push(n);
                    }
                }
                for chunk in all.chunks(crate::notify_sql::MAX_ROWS) {
                    let text = <$db as crate::placeholders::Placeholders>::sequential(crate::notify_sql::insert_notifications_sql(chunk.len()));
                    let mut query = sqlx::query(&text);
                    for n in chunk {
                        query = crate::notify_sql::bind_notification(query, n)?;
                    }
                    query.execute(&mut *conn).await.map_err(|err| match violation(&err) {
                        Violation::ForeignKey => StoreError::NotFound("workflow instance or tenant"),
                        _ => crate::db_error("queueing notifications")(err),
                    })?;
                }
                Ok(())
            }

            /// After a mark changed nothing: `Stale` if the notification
            /// exists (it is not pending any more), `NotFound` otherwise.
            async fn notification_not_pending(
                &self,
                id: gatehouse_core::id::NotificationId,
            ) -> gatehouse_core::store::StoreError {
                use gatehouse_core::store::StoreError;
                match sqlx::query("SELECT 1 FROM notifications WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.writer)
                    .await
                {
                    Ok(Some(_)) => StoreError::Stale("notification"),
                    Ok(None) => StoreError::NotFound("notification"),
                    Err(err) => crate::db_error("reading a notification")(err),
                }
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::store::NotificationStore for $store {
            async fn claim_notifications(
                &self,
                now: time::OffsetDateTime,
                lease_until: time::OffsetDateTime,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::notify::Notification>> {
                use crate::engine_sql::SortableTime;
                // The outer conditions repeat the inner ones: see the module
                // documentation.
                let text = format!(
                    "UPDATE notifications SET next_attempt_at = $1
                     WHERE id IN (SELECT id FROM notifications
                                  WHERE state = 'pending' AND next_attempt_at <= $2
                                  ORDER BY next_attempt_at, id LIMIT $3)
                       AND state = 'pending' AND next_attempt_at <= $2
                     RETURNING {}",
                    crate::notify_sql::NOTIFICATION_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::notify_sql::NotificationRow>(&text)
                    .bind(SortableTime(lease_until))
                    .bind(SortableTime(now))
                    .bind(i64::from(limit))
                    .fetch_all(&self.writer)
                    .await
                    .map_err(crate::db_error("claiming due notifications"))?;
                let mut claimed = rows
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect::<Result<Vec<gatehouse_core::notify::Notification>, _>>()?;
                claimed.sort_by_key(|n| n.id);
                Ok(claimed)
            }

            async fn mark_notification_delivered(
                &self,
                id: gatehouse_core::id::NotificationId,
                attempts: u32,
                at: time::OffsetDateTime,
            ) -> gatehouse_core::store::StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE notifications SET state = 'delivered', attempts = $1, delivered_at = $2,
                            next_attempt_at = NULL
                     WHERE id = $3 AND state = 'pending'",
                )
                .bind(crate::notify_sql::attempts(attempts))
                .bind(crate::engine_sql::SortableTime(at))
                .bind(id.to_string())
                .execute(&self.writer)
                .await
                .map_err(crate::db_error("marking a notification delivered"))?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(self.notification_not_pending(id).await)
                }
            }

            async fn mark_notification_retry(
                &self,
                id: gatehouse_core::id::NotificationId,
                attempts: u32,
                next_attempt_at: time::OffsetDateTime,
                error: &str,
            ) -> gatehouse_core::store::StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE notifications SET attempts = $1, next_attempt_at = $2, last_error = $3
                     WHERE id = $4 AND state = 'pending'",
                )
                .bind(crate::notify_sql::attempts(attempts))
                .bind(crate::engine_sql::SortableTime(next_attempt_at))
                .bind(error)
                .bind(id.to_string())
                .execute(&self.writer)
                .await
                .map_err(crate::db_error("recording a failed notification attempt"))?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(self.notification_not_pending(id).await)
                }
            }

            async fn mark_notification_failed(
                &self,
                id: gatehouse_core::id::NotificationId,
                attempts: u32,
                error: &str,
            ) -> gatehouse_core::store::StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE notifications SET state = 'failed', attempts = $1, next_attempt_at = NULL,
                            last_error = $2
                     WHERE id = $3 AND state = 'pending'",
                )
                .bind(crate::notify_sql::attempts(attempts))
                .bind(error)
                .bind(id.to_string())
                .execute(&self.writer)
                .await
                .map_err(crate::db_error("marking a notification failed"))?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(self.notification_not_pending(id).await)
                }
            }

            async fn list_notifications(
                &self,
                query: &gatehouse_core::store::NotificationQuery,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::notify::Notification>> {
                // Each filter is NULL when absent; `$4` is the cursor.
                let text = format!(
                    "SELECT {} FROM notifications
                     WHERE ($1 IS NULL OR tenant_id = $1)
                       AND ($2 IS NULL OR state = $2)
                       AND ($3 IS NULL OR instance_id = $3)
                       AND ($4 IS NULL OR id > $4)
                     ORDER BY id LIMIT $5",
                    crate::notify_sql::NOTIFICATION_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::notify_sql::NotificationRow>(&text)
                    .bind(query.tenant.map(|t| t.to_string()))
                    .bind(query.state.map(|s| s.as_str()))
                    .bind(query.instance.map(|i| i.to_string()))
                    .bind(query.after.map(|id| id.to_string()))
                    .bind(i64::from(query.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing notifications"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }
        }
    };
}

pub(crate) use impl_notification_store;
