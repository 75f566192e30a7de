//! The SQL behind `GateStore`, written once for both back ends in the way
//! of [`crate::engine_sql`]: `impl_gate_store!` instantiates it for a store
//! type with a `pool` (reads) and a `writer` (writes and transactions), and
//! adds `write_gates`, which `write_progress` calls so that approvals and
//! human tasks travel with the workflow progress that creates or cancels
//! them.
//!
//! Rules the database keeps, so that a bug above cannot break them:
//! - **Separation of duties.** A decision is inserted with `INSERT … SELECT
//!   … WHERE EXISTS (the approval, and its initiator and preparer are not
//!   this operator)`; no row means a self-approval, refused as `Conflict`.
//!   (A trigger would do the same, but not portably.)
//! - **One decision per person**: the primary key (approval, operator).
//! - **Counted decisions.** `approvals.decision_count` must be the count
//!   the decider saw, and the state they write must follow from that count,
//!   the verdict and `required`. On PostgreSQL a concurrent decider waits
//!   for the row and then sees the new count, so two approvers of a 2-of-2
//!   cannot both believe they were the first and leave it pending forever:
//!   the second gets `Stale` and decides again on a fresh read.
//! - **One escalation.** `escalate_approval` updates only a pending
//!   approval whose `escalated_at` is still empty, in the transaction that
//!   appends the instance's history entry (guarded by its version).
//! - **Progress never decides.** Workflow progress may create an approval
//!   (pending) or task (open), and escalate or cancel a pending one; a
//!   decided approval or a finished task is never changed by it.

use gatehouse_core::approval::{Approval, HumanTask};
use gatehouse_core::store::StoreResult;
use sqlx::query::Query;
use sqlx::{Database, Encode, Type};

use crate::engine_sql::{SortableTime, to_json};

pub(crate) const APPROVAL_COLUMNS: &str = "id, instance_id, step_id, tenant_id, state, plan, required, approver_role, initiated_by, prepared_by, deadline, escalate_to, escalated_at, created_at, decided_at";
pub(crate) const TASK_COLUMNS: &str = "id, instance_id, step_id, tenant_id, state, decision_support, outcome, evidence, completed_by, created_at, completed_at";

pub(crate) const GATE_SETTING_COLUMNS: &str = "tenant_id, area, level, set_by, set_at, reason";

/// A row of `tenant_gate_settings`.
#[derive(sqlx::FromRow)]
pub(crate) struct GateSettingRow {
    tenant_id: String,
    area: String,
    level: Option<String>,
    set_by: String,
    set_at: time::OffsetDateTime,
    reason: String,
}

impl TryFrom<GateSettingRow> for gatehouse_core::gate::GateSetting {
    type Error = gatehouse_core::store::StoreError;

    /// Parses a row back, and checks it again: a level below its area's
    /// floor in the database is corrupt data, never a policy to apply.
    fn try_from(row: GateSettingRow) -> Result<Self, Self::Error> {
        use gatehouse_core::store::StoreError;
        let corrupt = |column: &str, err: gatehouse_core::DomainError| {
            StoreError::Corrupt(format!("tenant_gate_settings.{column}: {err}"))
        };
        let setting = Self {
            tenant_id: row.tenant_id.parse().map_err(|e| corrupt("tenant_id", e))?,
            area: row.area.parse().map_err(|e| corrupt("area", e))?,
            level: row
                .level
                .map(|l| l.parse())
                .transpose()
                .map_err(|e| corrupt("level", e))?,
            set_by: row.set_by,
            set_at: row.set_at,
            reason: row.reason,
        };
        setting.check().map_err(|e| corrupt("level", e))?;
        Ok(setting)
    }
}

/// `$1, …, $n`.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn insert_approval_sql() -> String {
    format!(
        "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ({})
         ON CONFLICT (id) DO NOTHING",
        placeholders(APPROVAL_COLUMNS.split(", ").count())
    )
}

pub(crate) fn insert_task_sql() -> String {
    format!(
        "INSERT INTO human_tasks ({TASK_COLUMNS}) VALUES ({})
         ON CONFLICT (id) DO NOTHING",
        placeholders(TASK_COLUMNS.split(", ").count())
    )
}

/// Approvals chosen by `inner` (a `FROM approvals …` clause with its own
/// `WHERE`, `ORDER BY` and `LIMIT`), each joined with its decisions, in
/// `order` (columns of `a`) and then decision order: one statement, so an
/// approval and its decisions come from the same snapshot.
pub(crate) fn approvals_with_decisions_sql(inner: &str, order: &str) -> String {
    let outer: Vec<String> = APPROVAL_COLUMNS
        .split(", ")
        .map(|c| format!("a.{c}"))
        .collect();
    format!(
        "SELECT {}, d.operator_id AS d_operator_id, d.verdict AS d_verdict,
                d.reason AS d_reason, d.modified_params AS d_modified_params, d.at AS d_at
         FROM (SELECT {APPROVAL_COLUMNS} {inner}) a
         LEFT JOIN approval_decisions d ON d.approval_id = a.id
         ORDER BY {order}, d.seq",
        outer.join(", ")
    )
}

/// Binds an approval's columns, in [`APPROVAL_COLUMNS`] order.
pub(crate) fn bind_approval<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    approval: &Approval,
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
        .bind(approval.id.to_string())
        .bind(approval.instance_id.to_string())
        .bind(approval.step_id.clone())
        .bind(approval.tenant_id.map(|t| t.to_string()))
        .bind(approval.state.as_str().to_owned())
        .bind(to_json(&approval.plan)?)
        .bind(i64::from(approval.required))
        .bind(approval.approver_role.as_str().to_owned())
        .bind(approval.initiated_by.clone())
        .bind(approval.prepared_by.clone())
        .bind(approval.deadline.map(SortableTime))
        .bind(approval.escalate_to.map(|r| r.as_str().to_owned()))
        .bind(approval.escalated_at.map(SortableTime))
        .bind(SortableTime(approval.created_at))
        .bind(approval.decided_at.map(SortableTime)))
}

/// Binds a human task's columns, in [`TASK_COLUMNS`] order.
pub(crate) fn bind_task<'q, DB>(
    query: Query<'q, DB, <DB as Database>::Arguments<'q>>,
    task: &HumanTask,
) -> StoreResult<Query<'q, DB, <DB as Database>::Arguments<'q>>>
where
    DB: Database,
    String: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    SortableTime: Encode<'q, DB> + Type<DB>,
    Option<SortableTime>: Encode<'q, DB> + Type<DB>,
{
    Ok(query
        .bind(task.id.to_string())
        .bind(task.instance_id.to_string())
        .bind(task.step_id.clone())
        .bind(task.tenant_id.map(|t| t.to_string()))
        .bind(task.state.as_str().to_owned())
        .bind(to_json(&task.decision_support)?)
        .bind(task.outcome.as_ref().map(to_json).transpose()?)
        .bind(task.evidence.clone())
        .bind(task.completed_by.map(|o| o.to_string()))
        .bind(SortableTime(task.created_at))
        .bind(task.completed_at.map(SortableTime)))
}

macro_rules! impl_gate_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Writes the approvals and human tasks of a batch of progress
            /// on `conn`, inside the caller's transaction (after the
            /// instances, which they reference). Approvals and tasks are
            /// few (one per gated step), so each is its own statement.
            async fn write_gates(
                conn: &mut <$db as sqlx::Database>::Connection,
                batch: &[gatehouse_core::workflow::Progress],
            ) -> gatehouse_core::store::StoreResult<()> {
                use gatehouse_core::store::StoreError;
                for progress in batch {
                    let instance = progress.instance.id;
                    for approval in &progress.approvals {
                        if approval.instance_id != instance {
                            return Err(StoreError::Conflict(format!(
                                "approval {} belongs to workflow instance {}, not {instance}",
                                approval.id, approval.instance_id
                            )));
                        }
                        Self::write_approval(&mut *conn, approval).await?;
                    }
                    for task in &progress.tasks {
                        if task.instance_id != instance {
                            return Err(StoreError::Conflict(format!(
                                "human task {} belongs to workflow instance {}, not {instance}",
                                task.id, task.instance_id
                            )));
                        }
                        Self::write_task(&mut *conn, task).await?;
                    }
                }
                Ok(())
            }

            /// Inserts a new approval, or escalates or cancels a pending one.
            async fn write_approval(
                conn: &mut <$db as sqlx::Database>::Connection,
                approval: &gatehouse_core::approval::Approval,
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::approval::ApprovalState;
                use gatehouse_core::store::StoreError;
                let undecided = matches!(approval.state, ApprovalState::Pending | ApprovalState::Cancelled);
                if undecided && approval.decisions.is_empty() {
                    let text = crate::gate_sql::insert_approval_sql();
                    let done = crate::gate_sql::bind_approval(sqlx::query(&text), approval)?
                        .execute(&mut *conn)
                        .await
                        .map_err(|err| match violation(&err) {
                            Violation::Unique => StoreError::Conflict(format!(
                                "step `{}` of workflow instance {} has an approval already",
                                approval.step_id, approval.instance_id
                            )),
                            Violation::ForeignKey => StoreError::NotFound("workflow instance or tenant"),
                            Violation::Other => crate::db_error("storing an approval")(err),
                        })?;
                    if done.rows_affected() == 1 {
                        return Ok(());
                    }
                }
                if undecided {
                    // Escalation is recorded once and kept.
                    let done = sqlx::query(
                        "UPDATE approvals SET state = $1, escalated_at = COALESCE(escalated_at, $2), decided_at = $3
                         WHERE id = $4 AND state = 'pending'",
                    )
                    .bind(approval.state.as_str())
                    .bind(approval.escalated_at.map(SortableTime))
                    .bind(approval.decided_at.map(SortableTime))
                    .bind(approval.id.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(crate::db_error("updating an approval"))?;
                    if done.rows_affected() == 1 {
                        return Ok(());
                    }
                }
                let stored: Option<(String,)> = sqlx::query_as("SELECT state FROM approvals WHERE id = $1")
                    .bind(approval.id.to_string())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(crate::db_error("reading an approval"))?;
                match stored {
                    None => Err(StoreError::NotFound("approval")),
                    // Decided as the batch says already: nothing to change.
                    Some((state,)) if state == approval.state.as_str() => Ok(()),
                    Some((state,)) if state == "pending" => Err(StoreError::Conflict(format!(
                        "approval {} is {} only by recording decisions, not by workflow progress",
                        approval.id, approval.state
                    ))),
                    Some(_) => Err(StoreError::Stale("approval")),
                }
            }

            /// Inserts a new human task, or cancels an open one.
            async fn write_task(
                conn: &mut <$db as sqlx::Database>::Connection,
                task: &gatehouse_core::approval::HumanTask,
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::approval::TaskState;
                use gatehouse_core::store::StoreError;
                let unfinished = matches!(task.state, TaskState::Open | TaskState::Cancelled);
                if unfinished && task.outcome.is_none() && task.completed_by.is_none() {
                    let text = crate::gate_sql::insert_task_sql();
                    let done = crate::gate_sql::bind_task(sqlx::query(&text), task)?
                        .execute(&mut *conn)
                        .await
                        .map_err(|err| match violation(&err) {
                            Violation::Unique => StoreError::Conflict(format!(
                                "step `{}` of workflow instance {} has a human task already",
                                task.step_id, task.instance_id
                            )),
                            Violation::ForeignKey => StoreError::NotFound("workflow instance or tenant"),
                            Violation::Other => crate::db_error("storing a human task")(err),
                        })?;
                    if done.rows_affected() == 1 {
                        return Ok(());
                    }
                }
                if unfinished {
                    let done = sqlx::query(
                        "UPDATE human_tasks SET state = $1, outcome = $2, evidence = $3, completed_by = $4, completed_at = $5
                         WHERE id = $6 AND state = 'open'",
                    )
                    .bind(task.state.as_str())
                    .bind(task.outcome.as_ref().map(crate::engine_sql::to_json).transpose()?)
                    .bind(task.evidence.as_deref())
                    .bind(task.completed_by.map(|o| o.to_string()))
                    .bind(task.completed_at.map(SortableTime))
                    .bind(task.id.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(|err| match violation(&err) {
                        Violation::ForeignKey => StoreError::NotFound("operator"),
                        _ => crate::db_error("updating a human task")(err),
                    })?;
                    if done.rows_affected() == 1 {
                        return Ok(());
                    }
                }
                let stored: Option<(String,)> = sqlx::query_as("SELECT state FROM human_tasks WHERE id = $1")
                    .bind(task.id.to_string())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(crate::db_error("reading a human task"))?;
                match stored {
                    None => Err(StoreError::NotFound("human task")),
                    Some((state,)) if state == task.state.as_str() => Ok(()),
                    Some((state,)) if state == "open" => Err(StoreError::Conflict(format!(
                        "human task {} is completed with complete_task, not by workflow progress",
                        task.id
                    ))),
                    Some(_) => Err(StoreError::Stale("human task")),
                }
            }

            /// Reads approvals with their decisions (see
            /// [`crate::gate_sql::approvals_with_decisions_sql`]).
            async fn fetch_approvals<'q>(
                &self,
                query: sqlx::query::QueryAs<
                    'q,
                    $db,
                    crate::rows::ApprovalDecisionRow,
                    <$db as sqlx::Database>::Arguments<'q>,
                >,
                context: &'static str,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::approval::Approval>> {
                let rows = query.fetch_all(&self.pool).await.map_err(crate::db_error(context))?;
                crate::rows::approvals_from_rows(rows)
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::store::GateStore for $store {
            async fn get_approval(
                &self,
                id: gatehouse_core::id::ApprovalId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::approval::Approval> {
                let text = crate::gate_sql::approvals_with_decisions_sql("FROM approvals WHERE id = $1", "a.id");
                let query = sqlx::query_as::<_, crate::rows::ApprovalDecisionRow>(&text).bind(id.to_string());
                self.fetch_approvals(query, "reading an approval")
                    .await?
                    .into_iter()
                    .next()
                    .ok_or(gatehouse_core::store::StoreError::NotFound("approval"))
            }

            async fn list_approvals(
                &self,
                query: &gatehouse_core::store::ApprovalQuery,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::approval::Approval>> {
                // Each filter is NULL when absent; `$4` is the cursor.
                let text = crate::gate_sql::approvals_with_decisions_sql(
                    "FROM approvals
                     WHERE ($1 IS NULL OR tenant_id = $1)
                       AND ($2 IS NULL OR state = $2)
                       AND ($3 IS NULL OR instance_id = $3)
                       AND ($4 IS NULL OR id > $4)
                       AND WITHIN
                     ORDER BY id LIMIT $5"
                    .replace("WITHIN", &<$db as crate::placeholders::IdSet>::within("tenant_id", "$6"))
                    .as_str(),
                    "a.id",
                );
                let rows = sqlx::query_as::<_, crate::rows::ApprovalDecisionRow>(&text)
                    .bind(query.tenant.map(|t| t.to_string()))
                    .bind(query.state.map(|s| s.as_str()))
                    .bind(query.instance.map(|i| i.to_string()))
                    .bind(query.after.map(|id| id.to_string()))
                    .bind(i64::from(query.limit))
                    .bind(crate::placeholders::id_set(query.within.as_deref()));
                self.fetch_approvals(rows, "listing approvals").await
            }

            async fn record_decision(
                &self,
                approval: &gatehouse_core::approval::Approval,
                decision: &gatehouse_core::approval::Decision,
                progress: Option<&gatehouse_core::workflow::Progress>,
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                if decision.approval_id != approval.id || approval.decisions.last() != Some(decision) {
                    return Err(StoreError::Conflict(format!(
                        "record_decision takes approval {} as `apply` left it, with this decision as its last",
                        approval.id
                    )));
                }
                if let Some(p) = progress
                    && p.instance.id != approval.instance_id
                {
                    return Err(StoreError::Conflict(format!(
                        "approval {} belongs to workflow instance {}, not {}",
                        approval.id, approval.instance_id, p.instance.id
                    )));
                }
                // The decisions the decider saw before this one.
                let before = i64::try_from(approval.decisions.len().saturating_sub(1))
                    .map_err(|_| StoreError::Conflict("too many decisions".to_owned()))?;
                let id = approval.id.to_string();
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;

                // The new state must follow from the stored count, the
                // verdict and `required` (while pending, every earlier
                // decision approved: a rejection ends it).
                let done = sqlx::query(
                    "UPDATE approvals SET state = $1, decided_at = $2, decision_count = decision_count + 1
                     WHERE id = $3 AND state = 'pending' AND decision_count = $4
                       AND $1 = CASE WHEN $5 = 'reject' THEN 'rejected'
                                     WHEN decision_count + 1 >= required THEN 'approved'
                                     ELSE 'pending' END",
                )
                .bind(approval.state.as_str())
                .bind(approval.decided_at.map(SortableTime))
                .bind(&id)
                .bind(before)
                .bind(decision.verdict.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error("recording a decision"))?;
                if done.rows_affected() != 1 {
                    let stored: Option<(String, i64, i64)> =
                        sqlx::query_as("SELECT state, decision_count, required FROM approvals WHERE id = $1")
                            .bind(&id)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(db_error("reading an approval"))?;
                    return Err(match stored {
                        None => StoreError::NotFound("approval"),
                        Some((state, count, _)) if state != "pending" || count != before => {
                            StoreError::Stale("approval")
                        }
                        Some((_, count, required)) => StoreError::Conflict(format!(
                            "approval {id} cannot become {} by this {} decision: it had {count} approvals of the {required} required",
                            approval.state, decision.verdict
                        )),
                    });
                }

                // Separation of duties, as a database rule: no row is
                // inserted if this operator initiated or prepared it.
                let operator = decision.operator_id.to_string();
                let inserted = sqlx::query(
                    "INSERT INTO approval_decisions (approval_id, operator_id, seq, verdict, reason, modified_params, at)
                     SELECT $1, $2, $3, $4, $5, $6, $7
                     WHERE EXISTS (SELECT 1 FROM approvals WHERE id = $1 AND initiated_by <> $2 AND prepared_by <> $2)",
                )
                .bind(&id)
                .bind(&operator)
                .bind(before + 1)
                .bind(decision.verdict.as_str())
                .bind(decision.reason.as_str())
                .bind(decision.modified_params.as_ref().map(crate::engine_sql::to_json).transpose()?)
                .bind(SortableTime(decision.at))
                .execute(&mut *tx)
                .await
                .map_err(|err| match violation(&err) {
                    Violation::Unique => StoreError::Conflict(format!(
                        "operator {operator} has decided on approval {id} already"
                    )),
                    Violation::ForeignKey => StoreError::NotFound("operator"),
                    Violation::Other => db_error("recording a decision")(err),
                })?;
                if inserted.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!(
                        "separation of duties: operator {operator} initiated the workflow or prepared the plan of approval {id}, so cannot decide on it"
                    )));
                }

                if let Some(progress) = progress {
                    Self::write_progress(&mut tx, std::slice::from_ref(progress)).await?;
                    self.wake_workers(&mut tx).await?;
                }
                tx.commit().await.map_err(db_error("committing a decision"))
            }

            async fn overdue_approvals(
                &self,
                now: time::OffsetDateTime,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::approval::Approval>> {
                // The conditions repeat the partial index's, so both planners use it.
                let text = crate::gate_sql::approvals_with_decisions_sql(
                    "FROM approvals
                     WHERE state = 'pending' AND deadline IS NOT NULL AND escalated_at IS NULL
                       AND deadline <= $1
                     ORDER BY deadline, id LIMIT $2",
                    "a.deadline, a.id",
                );
                let rows = sqlx::query_as::<_, crate::rows::ApprovalDecisionRow>(&text)
                    .bind(crate::engine_sql::SortableTime(now))
                    .bind(i64::from(limit));
                self.fetch_approvals(rows, "finding overdue approvals").await
            }

            async fn escalate_approval(
                &self,
                approval: &gatehouse_core::approval::Approval,
                progress: &gatehouse_core::workflow::Progress,
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                use crate::engine_sql::SortableTime;
                use gatehouse_core::store::StoreError;
                let Some(at) = approval.escalated_at else {
                    return Err(StoreError::Conflict(format!(
                        "escalate_approval takes approval {} as `escalate` left it, with `escalated_at`",
                        approval.id
                    )));
                };
                if progress.instance.id != approval.instance_id {
                    return Err(StoreError::Conflict(format!(
                        "approval {} belongs to workflow instance {}, not {}",
                        approval.id, approval.instance_id, progress.instance.id
                    )));
                }
                let id = approval.id.to_string();
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                // Guarded: only a pending approval not escalated yet.
                let done = sqlx::query(
                    "UPDATE approvals SET escalated_at = $1
                     WHERE id = $2 AND state = 'pending' AND escalated_at IS NULL",
                )
                .bind(SortableTime(at))
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(db_error("escalating an approval"))?;
                if done.rows_affected() != 1 {
                    let exists = sqlx::query("SELECT 1 FROM approvals WHERE id = $1")
                        .bind(&id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_error("reading an approval"))?;
                    return Err(if exists.is_some() {
                        StoreError::Stale("approval")
                    } else {
                        StoreError::NotFound("approval")
                    });
                }
                Self::write_progress(&mut tx, std::slice::from_ref(progress)).await?;
                tx.commit().await.map_err(db_error("committing an escalation"))
            }

            async fn get_task(
                &self,
                id: gatehouse_core::id::HumanTaskId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::approval::HumanTask> {
                let text = format!("SELECT {} FROM human_tasks WHERE id = $1", crate::gate_sql::TASK_COLUMNS);
                sqlx::query_as::<_, crate::rows::HumanTaskRow>(&text)
                    .bind(id.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading a human task"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("human task"))?
                    .try_into()
            }

            async fn list_tasks(
                &self,
                query: &gatehouse_core::store::TaskQuery,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::approval::HumanTask>> {
                let text = format!(
                    "SELECT {} FROM human_tasks
                     WHERE ($1 IS NULL OR tenant_id = $1)
                       AND ($2 IS NULL OR state = $2)
                       AND ($3 IS NULL OR instance_id = $3)
                       AND ($4 IS NULL OR id > $4)
                       AND {}
                     ORDER BY id LIMIT $5",
                    crate::gate_sql::TASK_COLUMNS,
                    <$db as crate::placeholders::IdSet>::within("tenant_id", "$6"),
                );
                let rows = sqlx::query_as::<_, crate::rows::HumanTaskRow>(&text)
                    .bind(query.tenant.map(|t| t.to_string()))
                    .bind(query.state.map(|s| s.as_str()))
                    .bind(query.instance.map(|i| i.to_string()))
                    .bind(query.after.map(|id| id.to_string()))
                    .bind(i64::from(query.limit))
                    .bind(crate::placeholders::id_set(query.within.as_deref()))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing human tasks"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn complete_task(
                &self,
                task: &gatehouse_core::approval::HumanTask,
                progress: &gatehouse_core::workflow::Progress,
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::db_error;
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::approval::TaskState;
                use gatehouse_core::store::StoreError;
                let (Some(outcome), Some(by), Some(at)) = (&task.outcome, task.completed_by, task.completed_at) else {
                    return Err(StoreError::Conflict(format!(
                        "complete_task takes human task {} as `complete` left it, with its outcome",
                        task.id
                    )));
                };
                if task.state != TaskState::Done {
                    return Err(StoreError::Conflict(format!(
                        "complete_task takes human task {} done, not {}",
                        task.id, task.state
                    )));
                }
                if progress.instance.id != task.instance_id {
                    return Err(StoreError::Conflict(format!(
                        "human task {} belongs to workflow instance {}, not {}",
                        task.id, task.instance_id, progress.instance.id
                    )));
                }
                let id = task.id.to_string();
                let mut tx = self.writer.begin().await.map_err(db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE human_tasks SET state = 'done', outcome = $1, evidence = $2, completed_by = $3, completed_at = $4
                     WHERE id = $5 AND state = 'open'",
                )
                .bind(crate::engine_sql::to_json(outcome)?)
                .bind(task.evidence.as_deref())
                .bind(by.to_string())
                .bind(SortableTime(at))
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(|err| match violation(&err) {
                    Violation::ForeignKey => StoreError::NotFound("operator"),
                    _ => db_error("completing a human task")(err),
                })?;
                if done.rows_affected() != 1 {
                    let exists = sqlx::query("SELECT 1 FROM human_tasks WHERE id = $1")
                        .bind(&id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_error("reading a human task"))?;
                    return Err(if exists.is_some() {
                        StoreError::Stale("human task")
                    } else {
                        StoreError::NotFound("human task")
                    });
                }
                Self::write_progress(&mut tx, std::slice::from_ref(progress)).await?;
                self.wake_workers(&mut tx).await?;
                tx.commit().await.map_err(db_error("committing a completed human task"))
            }

            async fn gate_settings(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::gate::GateSetting>> {
                let text = format!(
                    "SELECT {} FROM tenant_gate_settings WHERE tenant_id = $1 ORDER BY area",
                    crate::gate_sql::GATE_SETTING_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::gate_sql::GateSettingRow>(&text)
                    .bind(tenant.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("reading a tenant's gate settings"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn put_gate_setting(
                &self,
                setting: &gatehouse_core::gate::GateSetting,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                // The domain's rule first: a level below the floor never reaches SQL.
                setting.check()?;
                let text = format!(
                    "INSERT INTO tenant_gate_settings ({}) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (tenant_id, area) DO UPDATE SET
                       level = excluded.level, set_by = excluded.set_by,
                       set_at = excluded.set_at, reason = excluded.reason",
                    crate::gate_sql::GATE_SETTING_COLUMNS
                );
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                sqlx::query(&text)
                    .bind(setting.tenant_id.to_string())
                    .bind(setting.area.as_str())
                    .bind(setting.level.map(|l| l.as_str()))
                    .bind(setting.set_by.as_str())
                    .bind(SortableTime(setting.set_at))
                    .bind(setting.reason.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|err| match violation(&err) {
                        // The tenant's key is destroyed (deleted) or never existed.
                        Violation::ForeignKey => StoreError::NotFound("tenant"),
                        _ => crate::db_error("storing a gate setting")(err),
                    })?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a gate setting"))
            }
        }
    };
}

pub(crate) use impl_gate_store;
