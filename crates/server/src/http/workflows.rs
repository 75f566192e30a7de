//! `/api/v1/events`, `/api/v1/workflows`, `/api/v1/approvals` and
//! `/api/v1/tasks`: feeding the workflow engine and the people in its loop.
//!
//! The engine's types serialize themselves; the wrappers here only give the
//! OpenAPI document a shape (JSON values are documented as objects).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use gatehouse_core::approval::{Approval, ApprovalState, HumanTask, TaskState, Verdict};
use gatehouse_core::id::{ApprovalId, HumanTaskId, WorkflowId};
use gatehouse_core::workflow::{
    DedupKey, EventKind, EventSource, HistoryEntry, InboundEvent, Instance, InstanceState, StepRun,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::app::{EventSubmission, GateFilter, TenantRef, WorkflowFilter};
use crate::error::{AppError, ErrorBody};

const DEFAULT_LIMIT: u32 = 100;

/// An event for the engine.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitEvent {
    /// What happened, such as `psa.opportunity.won`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "psa.opportunity.won")]
    pub kind: EventKind,
    /// Where it came from (default `api`).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "api")]
    pub source: Option<EventSource>,
    /// The sender's deduplication key: the same (source, key) is one event.
    #[schema(value_type = String)]
    pub dedup_key: DedupKey,
    /// The tenant it concerns (`ten_…` or slug), if known.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The event's data.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// What submitting an event did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmittedEvent {
    /// The stored event (the first delivery's, for a duplicate).
    #[schema(value_type = Object)]
    pub event: InboundEvent,
    /// Whether this delivery repeated an earlier one.
    pub duplicate: bool,
    /// The instances the event started (the same for a duplicate).
    pub instances: Vec<WorkflowId>,
}

/// Filtering and paging of workflow instances.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListWorkflows {
    /// Only this tenant's (`ten_…` or slug).
    pub tenant: Option<String>,
    /// Only in this state (`running`, `waiting`, `completed`, …).
    #[param(value_type = Option<String>)]
    pub state: Option<InstanceState>,
    /// Only of this template.
    pub template: Option<String>,
    /// The previous page's `next_cursor`.
    pub after: Option<WorkflowId>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
}

/// A page of workflow instances, without their pinned definitions.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowPage {
    /// In start order.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<WorkflowId>,
}

/// A workflow instance, its step journal and its history.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowDetail {
    /// The instance, with the template it pinned (`definition`).
    #[schema(value_type = Object)]
    pub instance: Instance,
    /// Its steps, in step-id order.
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<StepRun>,
    /// Every transition, in order, with who and why.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<HistoryEntry>,
}

/// A reason, for a cancellation, an approval or a rejection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithReason {
    /// Why (1–2000 characters); recorded in the history.
    pub reason: String,
}

/// An approval with changed parameters.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Modify {
    /// Why (1–2000 characters).
    pub reason: String,
    /// The parameters the step should run with instead.
    #[schema(value_type = Object)]
    pub params: Value,
}

/// What a person did for a human task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteTask {
    /// The outcome; becomes the step's output.
    #[schema(value_type = Object)]
    pub outcome: Value,
    /// Evidence: a note, a ticket, a link.
    #[serde(default)]
    pub evidence: Option<String>,
}

/// The workflow instance cancelled.
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelledWorkflow {
    /// The instance as it is now.
    #[schema(value_type = Object)]
    pub instance: Instance,
}

/// Filtering and paging of approvals.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListApprovals {
    /// Only in this state (`pending`, `approved`, `rejected`, `cancelled`).
    pub state: Option<ApprovalState>,
    /// Only this tenant's (`ten_…` or slug).
    pub tenant: Option<String>,
    /// The previous page's `next_cursor`.
    pub after: Option<ApprovalId>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
}

/// A page of approvals.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalPage {
    /// In creation order, each with its decisions.
    pub items: Vec<Approval>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<ApprovalId>,
}

/// Filtering and paging of human tasks.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTasks {
    /// Only in this state (`open`, `completed`, `cancelled`).
    pub state: Option<TaskState>,
    /// Only this tenant's (`ten_…` or slug).
    pub tenant: Option<String>,
    /// The previous page's `next_cursor`.
    pub after: Option<HumanTaskId>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
}

/// A page of human tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    /// In creation order.
    pub items: Vec<HumanTask>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<HumanTaskId>,
}

fn workflow_id(text: &str) -> Result<WorkflowId, AppError> {
    text.parse()
        .map_err(|_| AppError::not_found("workflow", text))
}

fn approval_id(text: &str) -> Result<ApprovalId, AppError> {
    text.parse()
        .map_err(|_| AppError::not_found("approval", text))
}

fn task_id(text: &str) -> Result<HumanTaskId, AppError> {
    text.parse().map_err(|_| AppError::not_found("task", text))
}

/// An instance for a list: everything but the pinned template.
fn summary(instance: Instance) -> Result<Value, AppError> {
    let mut value =
        serde_json::to_value(instance).map_err(|e| AppError::Internal(e.to_string()))?;
    if let Some(fields) = value.as_object_mut() {
        fields.remove("definition");
    }
    Ok(value)
}

/// Submit an event; it is stored once per (source, dedup key) and starts
/// the workflows whose triggers it matches. 202 when new, 200 for a
/// duplicate (with the first delivery's answer).
#[utoipa::path(post, path = "/api/v1/events", tag = "workflows", request_body = SubmitEvent,
    responses((status = 202, body = SubmittedEvent), (status = 200, description = "a duplicate", body = SubmittedEvent),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn submit_event(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<SubmitEvent>,
) -> Result<impl IntoResponse, AppError> {
    let source = match body.source {
        Some(source) => source,
        None => EventSource::parse("api")?,
    };
    let submitted = state
        .app
        .submit_event(
            &actor,
            EventSubmission {
                kind: body.kind,
                source,
                dedup_key: body.dedup_key,
                tenant: body.tenant.as_deref().map(TenantRef::parse),
                payload: body.payload,
            },
        )
        .await?;
    let status = if submitted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        axum::Json(SubmittedEvent {
            event: submitted.event,
            duplicate: submitted.duplicate,
            instances: submitted.instances,
        }),
    ))
}

/// List workflow instances, in start order.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", params(ListWorkflows),
    responses((status = 200, body = WorkflowPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_workflows(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiQuery(query): ApiQuery<ListWorkflows>,
) -> Result<axum::Json<WorkflowPage>, AppError> {
    let page = state
        .app
        .list_workflows(
            &actor,
            WorkflowFilter {
                tenant: query.tenant.as_deref().map(TenantRef::parse),
                state: query.state,
                template: query.template,
            },
            query.after,
            query.limit.unwrap_or(DEFAULT_LIMIT),
        )
        .await?;
    Ok(axum::Json(WorkflowPage {
        items: page
            .items
            .into_iter()
            .map(summary)
            .collect::<Result<_, _>>()?,
        next_cursor: page.next,
    }))
}

/// A workflow instance with its steps and full history.
#[utoipa::path(get, path = "/api/v1/workflows/{workflow}", tag = "workflows",
    params(("workflow" = String, Path, description = "workflow instance id (`wf_…`)")),
    responses((status = 200, body = WorkflowDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`workflow_not_found`", body = ErrorBody)))]
pub async fn get_workflow(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(workflow): ApiPath<String>,
) -> Result<axum::Json<WorkflowDetail>, AppError> {
    let detail = state
        .app
        .get_workflow(&actor, workflow_id(&workflow)?)
        .await?;
    Ok(axum::Json(WorkflowDetail {
        instance: detail.instance,
        steps: detail.steps,
        history: detail.history,
    }))
}

/// Cancel an unfinished workflow instance: pending steps are skipped,
/// pending approvals and open tasks cancelled; completed steps stay done.
#[utoipa::path(post, path = "/api/v1/workflows/{workflow}/cancel", tag = "workflows", request_body = WithReason,
    params(("workflow" = String, Path, description = "workflow instance id (`wf_…`)")),
    responses((status = 200, body = CancelledWorkflow), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`workflow_not_found`", body = ErrorBody),
        (status = 409, description = "`workflow_refused`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn cancel_workflow(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(workflow): ApiPath<String>,
    ApiJson(body): ApiJson<WithReason>,
) -> Result<axum::Json<CancelledWorkflow>, AppError> {
    let instance = state
        .app
        .cancel_workflow(&actor, workflow_id(&workflow)?, &body.reason)
        .await?;
    Ok(axum::Json(CancelledWorkflow { instance }))
}

/// Compensate a workflow: undo every completed step that has a
/// compensation, in reverse order (each with its own idempotency key),
/// after a rejection or a failure stopped it, or instead of letting it go
/// on. Open approvals and tasks are cancelled and steps not yet run are
/// skipped in the same commit; the engine then runs the compensations and
/// the workflow ends `compensated` (or parked if one fails for good).
/// Refused for a completed workflow, one compensating or compensated
/// already, and one with nothing to undo.
#[utoipa::path(post, path = "/api/v1/workflows/{workflow}/compensate", tag = "workflows", request_body = WithReason,
    params(("workflow" = String, Path, description = "workflow instance id (`wf_…`)")),
    responses((status = 200, body = CancelledWorkflow), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`workflow_not_found`", body = ErrorBody),
        (status = 409, description = "`workflow_refused`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn compensate_workflow(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(workflow): ApiPath<String>,
    ApiJson(body): ApiJson<WithReason>,
) -> Result<axum::Json<CancelledWorkflow>, AppError> {
    let instance = state
        .app
        .compensate_workflow(&actor, workflow_id(&workflow)?, &body.reason)
        .await?;
    Ok(axum::Json(CancelledWorkflow { instance }))
}

/// The step whose rollback was asked for, and its workflow instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct RolledBackStep {
    /// The instance as it is now (running until the compensation has run).
    #[schema(value_type = Object)]
    pub instance: Instance,
    /// The step's journal entry: `compensating`, due now.
    #[schema(value_type = Object)]
    pub step: StepRun,
}

/// Roll back a completed step that has a compensation (the reviewer of an
/// L1 step asking to undo it). The engine runs the step's compensation
/// next, with its own idempotency key, and leaves the rest of the workflow
/// as it is: a completed workflow stays completed, a running one goes on.
/// Refused for a step without a compensation or not succeeded, and for a
/// workflow that is cancelled, parked or compensating already.
#[utoipa::path(post, path = "/api/v1/workflows/{workflow}/steps/{step}/rollback", tag = "workflows", request_body = WithReason,
    params(("workflow" = String, Path, description = "workflow instance id (`wf_…`)"),
        ("step" = String, Path, description = "the step's id in the workflow's template")),
    responses((status = 202, body = RolledBackStep), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`workflow_not_found`", body = ErrorBody),
        (status = 409, description = "`workflow_refused`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn rollback_step(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((workflow, step)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<WithReason>,
) -> Result<impl IntoResponse, AppError> {
    let (instance, step) = state
        .app
        .rollback_step(&actor, workflow_id(&workflow)?, &step, &body.reason)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(RolledBackStep { instance, step }),
    ))
}

/// List approvals, in creation order.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "workflows", params(ListApprovals),
    responses((status = 200, body = ApprovalPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_approvals(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiQuery(query): ApiQuery<ListApprovals>,
) -> Result<axum::Json<ApprovalPage>, AppError> {
    let page = state
        .app
        .list_approvals(
            &actor,
            GateFilter {
                tenant: query.tenant.as_deref().map(TenantRef::parse),
                state: query.state,
            },
            query.after,
            query.limit.unwrap_or(DEFAULT_LIMIT),
        )
        .await?;
    Ok(axum::Json(ApprovalPage {
        items: page.items,
        next_cursor: page.next,
    }))
}

/// An approval with its plan and decisions.
#[utoipa::path(get, path = "/api/v1/approvals/{approval}", tag = "workflows",
    params(("approval" = String, Path, description = "approval id (`apr_…`)")),
    responses((status = 200, body = Approval), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`approval_not_found`", body = ErrorBody)))]
pub async fn get_approval(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(approval): ApiPath<String>,
) -> Result<axum::Json<Approval>, AppError> {
    Ok(axum::Json(
        state
            .app
            .get_approval(&actor, approval_id(&approval)?)
            .await?,
    ))
}

async fn decide(
    state: &ApiState,
    actor: &crate::app::Actor,
    approval: &str,
    verdict: Verdict,
    reason: &str,
    params: Option<Value>,
) -> Result<axum::Json<Approval>, AppError> {
    Ok(axum::Json(
        state
            .app
            .decide_approval(actor, approval_id(approval)?, verdict, reason, params)
            .await?,
    ))
}

/// Approve a gated step, with a reason. The engine checks the approver's
/// role and that they neither started the workflow nor prepared the plan.
#[utoipa::path(post, path = "/api/v1/approvals/{approval}/approve", tag = "workflows", request_body = WithReason,
    params(("approval" = String, Path, description = "approval id (`apr_…`)")),
    responses((status = 200, body = Approval), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`approval_not_found`", body = ErrorBody),
        (status = 409, description = "`approval_refused`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn approve(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(approval): ApiPath<String>,
    ApiJson(body): ApiJson<WithReason>,
) -> Result<axum::Json<Approval>, AppError> {
    decide(
        &state,
        &actor,
        &approval,
        Verdict::Approve,
        &body.reason,
        None,
    )
    .await
}

/// Reject a gated step, with a reason: the workflow compensates or stops,
/// as its template says.
#[utoipa::path(post, path = "/api/v1/approvals/{approval}/reject", tag = "workflows", request_body = WithReason,
    params(("approval" = String, Path, description = "approval id (`apr_…`)")),
    responses((status = 200, body = Approval), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`approval_not_found`", body = ErrorBody),
        (status = 409, description = "`approval_refused`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reject(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(approval): ApiPath<String>,
    ApiJson(body): ApiJson<WithReason>,
) -> Result<axum::Json<Approval>, AppError> {
    decide(
        &state,
        &actor,
        &approval,
        Verdict::Reject,
        &body.reason,
        None,
    )
    .await
}

/// Approve a gated step with changed parameters, with a reason.
#[utoipa::path(post, path = "/api/v1/approvals/{approval}/modify", tag = "workflows", request_body = Modify,
    params(("approval" = String, Path, description = "approval id (`apr_…`)")),
    responses((status = 200, body = Approval), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`approval_not_found`", body = ErrorBody),
        (status = 409, description = "`approval_refused`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn modify(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(approval): ApiPath<String>,
    ApiJson(body): ApiJson<Modify>,
) -> Result<axum::Json<Approval>, AppError> {
    decide(
        &state,
        &actor,
        &approval,
        Verdict::Modify,
        &body.reason,
        Some(body.params),
    )
    .await
}

/// List human tasks, in creation order.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "workflows", params(ListTasks),
    responses((status = 200, body = TaskPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_tasks(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiQuery(query): ApiQuery<ListTasks>,
) -> Result<axum::Json<TaskPage>, AppError> {
    let page = state
        .app
        .list_tasks(
            &actor,
            GateFilter {
                tenant: query.tenant.as_deref().map(TenantRef::parse),
                state: query.state,
            },
            query.after,
            query.limit.unwrap_or(DEFAULT_LIMIT),
        )
        .await?;
    Ok(axum::Json(TaskPage {
        items: page.items,
        next_cursor: page.next,
    }))
}

/// A human task with its decision support.
#[utoipa::path(get, path = "/api/v1/tasks/{task}", tag = "workflows",
    params(("task" = String, Path, description = "human task id (`tsk_…`)")),
    responses((status = 200, body = HumanTask), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`task_not_found`", body = ErrorBody)))]
pub async fn get_task(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(task): ApiPath<String>,
) -> Result<axum::Json<HumanTask>, AppError> {
    Ok(axum::Json(
        state.app.get_task(&actor, task_id(&task)?).await?,
    ))
}

/// Record that you did a human task, with its outcome and evidence; the
/// workflow moves on.
#[utoipa::path(post, path = "/api/v1/tasks/{task}/complete", tag = "workflows", request_body = CompleteTask,
    params(("task" = String, Path, description = "human task id (`tsk_…`)")),
    responses((status = 200, body = HumanTask), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`task_not_found`", body = ErrorBody),
        (status = 409, description = "`task_refused`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn complete_task(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(task): ApiPath<String>,
    ApiJson(body): ApiJson<CompleteTask>,
) -> Result<axum::Json<HumanTask>, AppError> {
    Ok(axum::Json(
        state
            .app
            .complete_task(
                &actor,
                task_id(&task)?,
                body.outcome,
                body.evidence.as_deref(),
            )
            .await?,
    ))
}
