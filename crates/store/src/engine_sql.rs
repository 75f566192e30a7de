//! The SQL behind `EngineStore`, written once for both back ends in the way
//! of [`crate::sql`]: `impl_engine_store!` instantiates it for a store type
//! with a `pool` (reads) and a `writer` (writes and transactions).
//!
//! `commit_progress` is the engine's hot path, so a batch is one transaction
//! of few statements: the new instances, the step upserts and the history
//! appends are multi-row statements of at most [`MAX_ROWS`] rows each, and
//! so are the updates: each row is guarded by its own version, and a
//! statement that updates fewer rows than it was given fails the batch.
//!
//! Two choices keep the SQL identical on both back ends:
//! - JSON is stored as text (serde_json), parsed back on read; a value that
//!   does not parse is `Corrupt`, naming the column.
//! - Timestamps are bound as [`SortableTime`]: a plain `TIMESTAMPTZ` on
//!   PostgreSQL, and on SQLite fixed-width UTC text. sqlx's own encoding
//!   (RFC 3339) drops trailing zeros of the fraction, so `…:00Z` sorts after
//!   `…:00.5Z` as text; `next_run_at <= $now` would be wrong for sub-second
//!   times.

use std::collections::HashSet;

use gatehouse_core::store::{StoreError, StoreResult};
use gatehouse_core::workflow::{HistoryEntry, Instance, Progress, StepRun};
use serde_json::Value;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::query::Query;
use sqlx::{Database, Encode, Type};
use time::{OffsetDateTime, UtcOffset};

pub(crate) const EVENT_COLUMNS: &str =
    "id, tenant_id, source, type, dedup_key, payload, received_at, outcome";
pub(crate) const INSTANCE_COLUMNS: &str = "id, tenant_id, template, template_version, definition, state, context, started_by, created_by, created_at, updated_at, next_run_at, version";
const INSTANCE_WIDTH: usize = 13;
pub(crate) const STEP_COLUMNS: &str = "instance_id, step_id, state, attempts, idempotency_key, output, error, next_attempt_at, updated_at";
const STEP_WIDTH: usize = 9;
pub(crate) const HISTORY_COLUMNS: &str = "instance_id, seq, at, kind, step_id, actor, detail";
const HISTORY_WIDTH: usize = 7;

/// Rows per multi-row statement. At most 13 values a row (an instance
/// insert), so a statement binds at most 3,328 values: far below SQLite's
/// limit of 32,766 and PostgreSQL's of 65,535, and big enough that a batch
/// takes few statements. Full chunks reuse one cached prepared statement.
pub(crate) const MAX_ROWS: usize = 256;

/// The columns an instance update writes: what a wave or a person's
/// decision can change, including the tenant (an installation's workflow
/// joins the tenant its step creates, and leaves it when that step is
/// undone). The rest (template, pinned definition, creator) is fixed when
/// the instance is created, so a wave neither serialises nor rewrites the
/// pinned definition.
const UPDATE_COLUMNS: &str = "id, tenant_id, state, context, updated_at, next_run_at, version";
const UPDATE_WIDTH: usize = 7;

/// Updates `rows` instances, each only if its stored version is the one
/// before: every row binds the columns of [`UPDATE_COLUMNS`] (see
/// [`bind_instance_update`]) and then the expected version. Fewer rows
/// updated than given means one is stale or missing. (Both back ends take
/// `WITH … UPDATE … FROM`; sqlx sends each parameter's type, so PostgreSQL
/// types the `VALUES` columns.)
pub(crate) fn update_instances_sql(rows: usize) -> String {
    format!(
        "WITH v ({UPDATE_COLUMNS}, expected) AS (VALUES {})
         UPDATE workflow_instances SET
           tenant_id = v.tenant_id, state = v.state, context = v.context,
           updated_at = v.updated_at, next_run_at = v.next_run_at, version = v.version
         FROM v
         WHERE workflow_instances.id = v.id AND workflow_instances.version = v.expected",
        values_list(rows, UPDATE_WIDTH + 1)
    )
}

/// Binds the columns of [`UPDATE_COLUMNS`] of an instance, in that order.
pub(crate) fn bind_instance_update<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    instance: &Instance,
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
        .bind(instance.id.to_string())
        .bind(instance.tenant_id.map(|t| t.to_string()))
        .bind(instance.state.as_str().to_owned())
        .bind(to_json(&instance.context)?)
        .bind(SortableTime(instance.updated_at))
        .bind(instance.next_run_at.map(SortableTime))
        .bind(instance.version))
}

/// Splits `instances` into runs of at most [`MAX_ROWS`] in which no id
/// repeats: one statement updates a row once, and the batch's later version
/// of an instance must see its earlier one.
pub(crate) fn update_chunks<'a>(instances: &[&'a Instance]) -> Vec<Vec<&'a Instance>> {
    let mut chunks: Vec<Vec<&Instance>> = Vec::new();
    let mut ids = HashSet::new();
    for &instance in instances {
        let full = chunks.last().is_none_or(|c| c.len() >= MAX_ROWS);
        if full || !ids.insert(instance.id) {
            chunks.push(Vec::new());
            ids.clear();
            ids.insert(instance.id);
        }
        if let Some(chunk) = chunks.last_mut() {
            chunk.push(instance);
        }
    }
    chunks
}

/// `($1, …, $width), ($width+1, …), …` for `rows` rows.
pub(crate) fn values_list(rows: usize, width: usize) -> String {
    let mut sql = String::with_capacity(rows * width * 6);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for col in 0..width {
            if col > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * width + col + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

pub(crate) fn insert_instances_sql(rows: usize) -> String {
    format!(
        "INSERT INTO workflow_instances ({INSTANCE_COLUMNS}) VALUES {}",
        values_list(rows, INSTANCE_WIDTH)
    )
}

pub(crate) fn upsert_steps_sql(rows: usize) -> String {
    format!(
        "INSERT INTO workflow_steps ({STEP_COLUMNS}) VALUES {}
         ON CONFLICT (instance_id, step_id) DO UPDATE SET
           state = excluded.state, attempts = excluded.attempts,
           idempotency_key = excluded.idempotency_key, output = excluded.output,
           error = excluded.error, next_attempt_at = excluded.next_attempt_at,
           updated_at = excluded.updated_at",
        values_list(rows, STEP_WIDTH)
    )
}

pub(crate) fn insert_history_sql(rows: usize) -> String {
    format!(
        "INSERT INTO workflow_history ({HISTORY_COLUMNS}) VALUES {}",
        values_list(rows, HISTORY_WIDTH)
    )
}

/// A workflow id read back from the database.
pub(crate) fn workflow_id(text: &str) -> StoreResult<gatehouse_core::id::WorkflowId> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("workflow_instances.id: {e}")))
}

/// A JSON value as stored.
pub(crate) fn to_json(value: &Value) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend {
        context: "encoding a JSON value",
        source: Box::new(e),
    })
}

/// Binds an instance's 13 columns, in [`INSTANCE_COLUMNS`] order.
pub(crate) fn bind_instance<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    instance: &Instance,
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
        .bind(instance.id.to_string())
        .bind(instance.tenant_id.map(|t| t.to_string()))
        .bind(instance.template.clone())
        .bind(i64::from(instance.template_version))
        .bind(to_json(&instance.definition)?)
        .bind(instance.state.as_str().to_owned())
        .bind(to_json(&instance.context)?)
        .bind(instance.started_by.map(|e| e.to_string()))
        .bind(instance.created_by.clone())
        .bind(SortableTime(instance.created_at))
        .bind(SortableTime(instance.updated_at))
        .bind(instance.next_run_at.map(SortableTime))
        .bind(instance.version))
}

/// Binds a step run's 9 columns, in [`STEP_COLUMNS`] order.
pub(crate) fn bind_step<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    step: &StepRun,
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
        .bind(step.instance_id.to_string())
        .bind(step.step_id.clone())
        .bind(step.state.as_str().to_owned())
        .bind(i64::from(step.attempts))
        .bind(step.idempotency_key.clone())
        .bind(step.output.as_ref().map(to_json).transpose()?)
        .bind(step.error.clone())
        .bind(step.next_attempt_at.map(SortableTime))
        .bind(SortableTime(step.updated_at)))
}

/// Binds a history entry's 7 columns, in [`HISTORY_COLUMNS`] order.
pub(crate) fn bind_history<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    entry: &HistoryEntry,
) -> StoreResult<Query<'q, DB, <DB as Database>::Arguments<'q>>>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    SortableTime: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(entry.instance_id.to_string())
        .bind(entry.seq)
        .bind(SortableTime(entry.at))
        .bind(entry.kind.clone())
        .bind(entry.step_id.clone())
        .bind(entry.actor.clone())
        .bind(to_json(&entry.detail)?))
}

/// The batch's step runs, the last one of each (instance, step) only: a
/// multi-row upsert may not touch a row twice on PostgreSQL, and the last
/// write is the one that counts.
pub(crate) fn latest_steps(batch: &[Progress]) -> Vec<&StepRun> {
    let mut seen = HashSet::new();
    let mut steps: Vec<&StepRun> = batch
        .iter()
        .rev()
        .flat_map(|p| p.steps.iter().rev())
        .filter(|s| seen.insert((s.instance_id, s.step_id.as_str())))
        .collect();
    steps.reverse();
    steps
}

/// Which integrity rule a failed statement broke, if any.
pub(crate) enum Violation {
    Unique,
    ForeignKey,
    Other,
}

pub(crate) fn violation(err: &sqlx::Error) -> Violation {
    match err.as_database_error() {
        Some(d) if d.is_unique_violation() => Violation::Unique,
        Some(d) if d.is_foreign_key_violation() => Violation::ForeignKey,
        _ => Violation::Other,
    }
}

/// A timestamp as the engine's tables store it: `TIMESTAMPTZ` on
/// PostgreSQL; on SQLite UTC text with exactly six fractional digits
/// (`2026-01-01T00:00:00.500000Z`), which sorts as the instants do and which
/// sqlx reads back as RFC 3339. Microseconds, like PostgreSQL: finer
/// precision is truncated on both.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SortableTime(pub(crate) OffsetDateTime);

impl SortableTime {
    fn to_text(self) -> Result<String, BoxDynError> {
        let utc = self
            .0
            .checked_to_offset(UtcOffset::UTC)
            .filter(|t| (0..=9999).contains(&t.year()))
            .ok_or_else(|| format!("timestamp {} is out of range", self.0))?;
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        Ok(utc.format(&format)?)
    }
}

impl Type<sqlx::Sqlite> for SortableTime {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as Type<sqlx::Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, sqlx::Sqlite> for SortableTime {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Sqlite as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        Encode::<'q, sqlx::Sqlite>::encode(self.to_text()?, buf)
    }
}

impl Type<sqlx::Postgres> for SortableTime {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <OffsetDateTime as Type<sqlx::Postgres>>::type_info()
    }
}

impl<'q> Encode<'q, sqlx::Postgres> for SortableTime {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Postgres as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        Encode::<'q, sqlx::Postgres>::encode_by_ref(&self.0, buf)
    }

    fn size_hint(&self) -> usize {
        Encode::<'q, sqlx::Postgres>::size_hint(&self.0)
    }
}

macro_rules! impl_engine_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Inserts `event` on `conn` unless one with the same (source,
            /// dedup key) exists; returns whether it was inserted. Shared by
            /// `record_event` and `submit_event`.
            async fn insert_event(
                conn: &mut <$db as sqlx::Database>::Connection,
                event: &gatehouse_core::workflow::InboundEvent,
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::engine_sql::{self as sql, SortableTime, Violation};
                use gatehouse_core::store::StoreError;
                let text = format!(
                    "INSERT INTO inbox_events ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (source, dedup_key) DO NOTHING",
                    sql::EVENT_COLUMNS
                );
                let done = sqlx::query(&text)
                    .bind(event.id.to_string())
                    .bind(event.tenant_id.map(|t| t.to_string()))
                    .bind(event.source.as_str())
                    .bind(event.kind.as_str())
                    .bind(event.dedup_key.as_str())
                    .bind(sql::to_json(&event.payload)?)
                    .bind(SortableTime(event.received_at))
                    .bind(event.outcome.as_ref().map(sql::to_json).transpose()?)
                    .execute(&mut *conn)
                    .await
                    .map_err(|err| match sql::violation(&err) {
                        Violation::Unique => {
                            StoreError::Conflict(format!("an event with id `{}` already exists", event.id))
                        }
                        Violation::ForeignKey => StoreError::NotFound("tenant"),
                        Violation::Other => crate::db_error("recording an event")(err),
                    })?;
                Ok(done.rows_affected() == 1)
            }

            /// The event stored under (source, dedup key), read on `conn`
            /// (inside the caller's transaction).
            async fn event_by_key_on(
                conn: &mut <$db as sqlx::Database>::Connection,
                event: &gatehouse_core::workflow::InboundEvent,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::workflow::InboundEvent> {
                let text = format!(
                    "SELECT {} FROM inbox_events WHERE source = $1 AND dedup_key = $2",
                    crate::engine_sql::EVENT_COLUMNS
                );
                sqlx::query_as::<_, crate::rows::InboundEventRow>(&text)
                    .bind(event.source.as_str())
                    .bind(event.dedup_key.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(crate::db_error("reading an event"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("event"))?
                    .try_into()
            }

            /// The event stored under (source, dedup key), for a duplicate.
            async fn event_by_key(
                &self,
                event: &gatehouse_core::workflow::InboundEvent,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::workflow::InboundEvent> {
                let mut conn = self
                    .writer
                    .acquire()
                    .await
                    .map_err(crate::db_error("acquiring a connection"))?;
                Self::event_by_key_on(&mut conn, event).await
            }

            /// Writes a batch of progress on `conn`, inside the caller's
            /// transaction: new instances, version-checked updates, step
            /// upserts, history appends, then approvals and human tasks.
            /// Shared by `commit_progress`, `route_event` and the gate
            /// store's `record_decision` and `complete_task`. On an error
            /// the caller drops the transaction.
            async fn write_progress(
                conn: &mut <$db as sqlx::Database>::Connection,
                batch: &[gatehouse_core::workflow::Progress],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{self as sql, MAX_ROWS, Violation};
                use gatehouse_core::store::StoreError;

                let fresh: Vec<&gatehouse_core::workflow::Instance> = batch
                    .iter()
                    .map(|p| &p.instance)
                    .filter(|i| i.version == 1)
                    .collect();
                for chunk in fresh.chunks(MAX_ROWS) {
                    let text = <$db as crate::placeholders::Placeholders>::sequential(sql::insert_instances_sql(chunk.len()));
                    let mut query = sqlx::query(&text);
                    for instance in chunk {
                        query = sql::bind_instance(query, instance)?;
                    }
                    query.execute(&mut *conn).await.map_err(|err| match sql::violation(&err) {
                        // Someone else created it first: the caller's view is stale.
                        Violation::Unique => StoreError::Stale("workflow instance"),
                        Violation::ForeignKey => StoreError::NotFound("tenant or event"),
                        Violation::Other => crate::db_error("inserting workflow instances")(err),
                    })?;
                }

                let updated: Vec<&gatehouse_core::workflow::Instance> = batch
                    .iter()
                    .map(|p| &p.instance)
                    .filter(|i| i.version != 1)
                    .collect();
                for chunk in sql::update_chunks(&updated) {
                    let text = <$db as crate::placeholders::Placeholders>::sequential(sql::update_instances_sql(chunk.len()));
                    let mut query = sqlx::query(&text);
                    for instance in &chunk {
                        query = sql::bind_instance_update(query, instance)?.bind(instance.version - 1);
                    }
                    let done = query.execute(&mut *conn).await.map_err(|err| match sql::violation(&err) {
                        Violation::ForeignKey => StoreError::NotFound("tenant or event"),
                        _ => crate::db_error("updating workflow instances")(err),
                    })?;
                    if usize::try_from(done.rows_affected()).ok() != Some(chunk.len()) {
                        // One is gone or was changed meanwhile: tell which
                        // (rows updated just now carry their new version).
                        for instance in &chunk {
                            let stored: Option<(i64,)> =
                                sqlx::query_as("SELECT version FROM workflow_instances WHERE id = $1")
                                    .bind(instance.id.to_string())
                                    .fetch_optional(&mut *conn)
                                    .await
                                    .map_err(crate::db_error("reading a workflow instance"))?;
                            match stored {
                                None => return Err(StoreError::NotFound("workflow instance")),
                                Some((version,)) if version != instance.version => {
                                    return Err(StoreError::Stale("workflow instance"));
                                }
                                Some(_) => {}
                            }
                        }
                        // Every row shows its new version, but one of them
                        // had it already (the same change committed twice).
                        return Err(StoreError::Stale("workflow instance"));
                    }
                }

                for chunk in sql::latest_steps(batch).chunks(MAX_ROWS) {
                    let text = <$db as crate::placeholders::Placeholders>::sequential(sql::upsert_steps_sql(chunk.len()));
                    let mut query = sqlx::query(&text);
                    for step in chunk {
                        query = sql::bind_step(query, step)?;
                    }
                    query.execute(&mut *conn).await.map_err(|err| match sql::violation(&err) {
                        Violation::ForeignKey => StoreError::NotFound("workflow instance"),
                        _ => crate::db_error("storing workflow steps")(err),
                    })?;
                }

                let history: Vec<&gatehouse_core::workflow::HistoryEntry> =
                    batch.iter().flat_map(|p| &p.history).collect();
                for chunk in history.chunks(MAX_ROWS) {
                    let text = <$db as crate::placeholders::Placeholders>::sequential(sql::insert_history_sql(chunk.len()));
                    let mut query = sqlx::query(&text);
                    for entry in chunk {
                        query = sql::bind_history(query, entry)?;
                    }
                    query.execute(&mut *conn).await.map_err(|err| match sql::violation(&err) {
                        Violation::Unique => StoreError::Conflict(
                            "workflow history is append-only: an entry with this sequence number already exists"
                                .to_owned(),
                        ),
                        Violation::ForeignKey => StoreError::NotFound("workflow instance"),
                        Violation::Other => crate::db_error("appending workflow history")(err),
                    })?;
                }

                // One audit record per history entry (see `crate::audit_sql`).
                Self::write_audit_history(conn, batch).await?;
                // Approvals and human tasks created, escalated or cancelled
                // by this progress (see `crate::gate_sql`).
                Self::write_gates(conn, batch).await?;
                // Notifications it queues (see `crate::notify_sql`).
                Self::write_notifications(conn, batch).await
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::store::EngineStore for $store {
            async fn record_event(
                &self,
                event: &gatehouse_core::workflow::InboundEvent,
            ) -> gatehouse_core::store::StoreResult<(gatehouse_core::workflow::InboundEvent, bool)> {
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                if Self::insert_event(&mut tx, event).await? {
                    let record = gatehouse_core::audit::AuditRecord::of_event(event);
                    Self::write_audit_records(&mut tx, &[record]).await?;
                    tx.commit().await.map_err(crate::db_error("committing an event"))?;
                    return Ok((event.clone(), true));
                }
                drop(tx);
                // A duplicate: answer with the event stored first.
                Ok((self.event_by_key(event).await?, false))
            }

            async fn submit_event(
                &self,
                event: &gatehouse_core::workflow::InboundEvent,
                started: &[gatehouse_core::workflow::Progress],
            ) -> gatehouse_core::store::StoreResult<(gatehouse_core::workflow::InboundEvent, bool)> {
                use crate::db_error;
                use gatehouse_core::store::StoreError;
                if let Some(p) = started.iter().find(|p| p.instance.version != 1) {
                    return Err(StoreError::Conflict(format!(
                        "workflow instance {} is started by an event, so its version must be 1, not {}",
                        p.instance.id, p.instance.version
                    )));
                }
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                if Self::insert_event(&mut tx, event).await? {
                    let record = gatehouse_core::audit::AuditRecord::of_event(event);
                    Self::write_audit_records(&mut tx, &[record]).await?;
                    Self::write_progress(&mut tx, started).await?;
                    if !started.is_empty() {
                        self.wake_workers(&mut tx).await?;
                    }
                    tx.commit().await.map_err(db_error("committing a submitted event"))?;
                    return Ok((event.clone(), true));
                }
                drop(tx);
                Ok((self.event_by_key(event).await?, false))
            }

            async fn submit_events(
                &self,
                batch: &[(gatehouse_core::workflow::InboundEvent, Vec<gatehouse_core::workflow::Progress>)],
            ) -> gatehouse_core::store::StoreResult<Vec<(gatehouse_core::workflow::InboundEvent, bool)>> {
                use crate::db_error;
                use gatehouse_core::store::StoreError;
                if let Some(p) = batch.iter().flat_map(|(_, s)| s).find(|p| p.instance.version != 1) {
                    return Err(StoreError::Conflict(format!(
                        "workflow instance {} is started by an event, so its version must be 1, not {}",
                        p.instance.id, p.instance.version
                    )));
                }
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let mut answers = Vec::with_capacity(batch.len());
                let mut started = Vec::new();
                let mut records = Vec::new();
                for (event, progress) in batch {
                    if Self::insert_event(&mut tx, event).await? {
                        records.push(gatehouse_core::audit::AuditRecord::of_event(event));
                        started.extend(progress.iter().cloned());
                        answers.push((event.clone(), true));
                    } else {
                        // A duplicate, maybe of an earlier item of this batch:
                        // read it inside the transaction.
                        answers.push((Self::event_by_key_on(&mut tx, event).await?, false));
                    }
                }
                Self::write_audit_records(&mut tx, &records).await?;
                Self::write_progress(&mut tx, &started).await?;
                if !started.is_empty() {
                    self.wake_workers(&mut tx).await?;
                }
                tx.commit().await.map_err(db_error("committing submitted events"))?;
                Ok(answers)
            }

            async fn route_event(
                &self,
                event: gatehouse_core::id::EventId,
                outcome: &serde_json::Value,
                started: &[gatehouse_core::workflow::Progress],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                use gatehouse_core::store::StoreError;
                if let Some(p) = started.iter().find(|p| p.instance.version != 1) {
                    return Err(StoreError::Conflict(format!(
                        "workflow instance {} is started by an event, so its version must be 1, not {}",
                        p.instance.id, p.instance.version
                    )));
                }
                let outcome = crate::engine_sql::to_json(outcome)?;
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query("UPDATE inbox_events SET outcome = $1 WHERE id = $2 AND outcome IS NULL")
                    .bind(outcome)
                    .bind(event.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error("routing an event"))?;
                if done.rows_affected() != 1 {
                    let exists = sqlx::query("SELECT 1 FROM inbox_events WHERE id = $1")
                        .bind(event.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_error("reading an event"))?;
                    return Err(if exists.is_some() {
                        StoreError::Stale("event")
                    } else {
                        StoreError::NotFound("event")
                    });
                }
                Self::write_progress(&mut tx, started).await?;
                if !started.is_empty() {
                    self.wake_workers(&mut tx).await?;
                }
                tx.commit().await.map_err(db_error("committing a routed event"))
            }

            async fn unrouted_events(
                &self,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::workflow::InboundEvent>> {
                let text = format!(
                    "SELECT {} FROM inbox_events WHERE outcome IS NULL ORDER BY id LIMIT $1",
                    crate::engine_sql::EVENT_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::rows::InboundEventRow>(&text)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing unrouted events"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn get_event(
                &self,
                id: gatehouse_core::id::EventId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::workflow::InboundEvent> {
                let text = format!(
                    "SELECT {} FROM inbox_events WHERE id = $1",
                    crate::engine_sql::EVENT_COLUMNS
                );
                sqlx::query_as::<_, crate::rows::InboundEventRow>(&text)
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading an event"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("event"))?
                    .try_into()
            }

            async fn get_instance(
                &self,
                id: gatehouse_core::id::WorkflowId,
            ) -> gatehouse_core::store::StoreResult<(
                gatehouse_core::workflow::Instance,
                Vec<gatehouse_core::workflow::StepRun>,
            )> {
                // Two statements, instance first: the steps read are then at
                // least as new as the instance, and a decision taken on a
                // newer step than its instance fails the version check when
                // it is committed.
                let text = format!(
                    "SELECT {} FROM workflow_instances WHERE id = $1",
                    crate::engine_sql::INSTANCE_COLUMNS
                );
                let instance: gatehouse_core::workflow::Instance =
                    sqlx::query_as::<_, crate::rows::InstanceRow>(&text)
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(crate::db_error("reading a workflow instance"))?
                        .ok_or(gatehouse_core::store::StoreError::NotFound("workflow instance"))?
                        .try_into()?;
                let text = format!(
                    "SELECT {} FROM workflow_steps WHERE instance_id = $1 ORDER BY step_id",
                    crate::engine_sql::STEP_COLUMNS
                );
                let steps = sqlx::query_as::<_, crate::rows::StepRunRow>(&text)
                    .bind(id.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("reading workflow steps"))?
                    .into_iter()
                    .map(TryInto::try_into)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((instance, steps))
            }

            async fn list_instances(
                &self,
                query: &gatehouse_core::store::InstanceQuery,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::workflow::Instance>> {
                // Each filter is NULL when absent; `$4` is the cursor.
                let text = format!(
                    "SELECT {} FROM workflow_instances
                     WHERE ($1 IS NULL OR tenant_id = $1)
                       AND ($2 IS NULL OR state = $2)
                       AND ($3 IS NULL OR template = $3)
                       AND ($4 IS NULL OR id > $4)
                       AND {}
                     ORDER BY id LIMIT $5",
                    crate::engine_sql::INSTANCE_COLUMNS,
                    <$db as crate::placeholders::IdSet>::within("tenant_id", "$6"),
                );
                let rows = sqlx::query_as::<_, crate::rows::InstanceRow>(&text)
                    .bind(query.tenant.map(|t| t.to_string()))
                    .bind(query.state.map(|s| s.as_str()))
                    .bind(query.template.as_deref())
                    .bind(query.after.map(|id| id.to_string()))
                    .bind(i64::from(query.limit))
                    .bind(crate::placeholders::id_set(query.within.as_deref()))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing workflow instances"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn instance_history(
                &self,
                id: gatehouse_core::id::WorkflowId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::workflow::HistoryEntry>> {
                let text = format!(
                    "SELECT {} FROM workflow_history WHERE instance_id = $1 ORDER BY seq",
                    crate::engine_sql::HISTORY_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::rows::HistoryRow>(&text)
                    .bind(id.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("reading workflow history"))?;
                if rows.is_empty() {
                    // No history: tell an unknown instance from a bare one.
                    let exists = sqlx::query("SELECT 1 FROM workflow_instances WHERE id = $1")
                        .bind(id.to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(crate::db_error("reading a workflow instance"))?;
                    if exists.is_none() {
                        return Err(gatehouse_core::store::StoreError::NotFound("workflow instance"));
                    }
                }
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn due_instances(
                &self,
                now: time::OffsetDateTime,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::id::WorkflowId>> {
                // The first two conditions repeat the partial index's, so
                // both planners use it.
                let rows: Vec<(String,)> = sqlx::query_as(
                    "SELECT id FROM workflow_instances
                     WHERE state IN ('running', 'compensating') AND next_run_at IS NOT NULL
                       AND next_run_at <= $1
                     ORDER BY next_run_at, id LIMIT $2",
                )
                .bind(crate::engine_sql::SortableTime(now))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("finding due workflow instances"))?;
                rows.into_iter()
                    .map(|(id,)| crate::engine_sql::workflow_id(&id))
                    .collect()
            }

            async fn claim_due(
                &self,
                node: &str,
                now: time::OffsetDateTime,
                lease_until: time::OffsetDateTime,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<(gatehouse_core::id::WorkflowId, i64)>> {
                use crate::engine_sql::SortableTime;
                // The inner query repeats the partial index's conditions;
                // `CLAIM_LOCK` makes concurrent claims skip each other's rows.
                let text = format!(
                    "UPDATE workflow_instances SET lease_owner = $1, lease_until = $2
                     WHERE id IN (
                       SELECT id FROM workflow_instances
                       WHERE state IN ('running', 'compensating') AND next_run_at IS NOT NULL
                         AND next_run_at <= $3
                         AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until <= $3)
                       ORDER BY next_run_at, id LIMIT $4{}
                     )
                     RETURNING id, version, next_run_at",
                    Self::CLAIM_LOCK
                );
                // A lease need not survive a crash of the database: one
                // lost makes another node take the instance sooner, and the
                // version check on commit still refuses a second writer. So
                // the claim does not wait for its commit to be flushed: it
                // runs, in one statement, on connections set up for that
                // (`claimer`).
                let mut rows: Vec<(String, i64, Option<time::OffsetDateTime>)> = sqlx::query_as(&text)
                    .bind(node)
                    .bind(SortableTime(lease_until))
                    .bind(SortableTime(now))
                    .bind(i64::from(limit))
                    .fetch_all(&self.claimer)
                    .await
                    .map_err(crate::db_error("claiming due workflow instances"))?;
                // RETURNING does not keep the subquery's order.
                rows.sort_by(|a, b| (a.2, &a.0).cmp(&(b.2, &b.0)));
                rows.into_iter()
                    .map(|(id, version, _)| Ok((crate::engine_sql::workflow_id(&id)?, version)))
                    .collect()
            }

            async fn runnable_versions(
                &self,
                ids: &[gatehouse_core::id::WorkflowId],
            ) -> gatehouse_core::store::StoreResult<Vec<(gatehouse_core::id::WorkflowId, i64)>> {
                let mut found = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(crate::engine_sql::MAX_ROWS) {
                    let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
                    let text = <$db as crate::placeholders::Placeholders>::sequential(format!(
                        "SELECT id, version FROM workflow_instances
                         WHERE state IN ('running', 'compensating') AND id IN ({})",
                        placeholders.join(", ")
                    ));
                    let mut query = sqlx::query_as::<_, (String, i64)>(&text);
                    for id in chunk {
                        query = query.bind(id.to_string());
                    }
                    let rows = query
                        .fetch_all(&self.pool)
                        .await
                        .map_err(crate::db_error("reading workflow versions"))?;
                    for (id, version) in rows {
                        found.push((crate::engine_sql::workflow_id(&id)?, version));
                    }
                }
                Ok(found)
            }

            async fn release_leases(&self, node: &str) -> gatehouse_core::store::StoreResult<u64> {
                let done = sqlx::query(
                    "UPDATE workflow_instances SET lease_owner = NULL, lease_until = NULL
                     WHERE lease_owner = $1",
                )
                .bind(node)
                .execute(&self.writer)
                .await
                .map_err(crate::db_error("releasing leases"))?;
                Ok(done.rows_affected())
            }

            async fn listen_for_work(
                &self,
            ) -> gatehouse_core::store::StoreResult<Option<Box<dyn gatehouse_core::store::WorkListener>>> {
                self.work_listener().await
            }

            async fn commit_progress(
                &self,
                batch: &[gatehouse_core::workflow::Progress],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                if batch.is_empty() {
                    return Ok(());
                }
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                Self::write_progress(&mut tx, batch).await?;
                tx.commit().await.map_err(db_error("committing workflow progress"))
            }
        }
    };
}

pub(crate) use impl_engine_store;
