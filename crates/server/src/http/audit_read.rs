//! `/api/v1/audit/entries` and `/api/v1/audit/logs/…`: browsing the audit
//! log, proofs, and verifying a stored log. Every route needs `ReadAudit`;
//! a log is `system`, a tenant id or a tenant slug.

use axum::extract::State;
use axum::http::StatusCode;
use gatehouse_core::store::{ActionFilter, AuditCursor};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::extract::{ApiPath, ApiQuery, Auth};
use crate::app::{
    AuditEntryView, AuditLogView, AuditQuery, AuditVerification, ConsistencyProof, InclusionProof,
    VerifyRequest,
};
use crate::error::{AppError, ErrorBody};

const DEFAULT_LIMIT: u32 = 100;

/// Filtering and paging of audit entries.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEntries {
    /// Only this log: `system`, a tenant id or slug.
    pub tenant: Option<String>,
    /// Only by this actor (an operator id, `system`, a source).
    pub actor: Option<String>,
    /// Only this action (`event.received`), or a prefix (`workflow.*`).
    pub action: Option<String>,
    /// Only at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only before this time (RFC 3339).
    pub until: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A page of audit entries.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryPage {
    /// By time, then log, then index.
    pub entries: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The audit logs.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogList {
    /// By name.
    pub logs: Vec<AuditLogView>,
}

/// Which inclusion proof.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionParams {
    /// The entry's index.
    pub index: u64,
    /// The tree size to prove against (default: the whole log).
    pub tree_size: Option<u64>,
}

/// Which consistency proof.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The older tree size.
    pub old: u64,
    /// The newer tree size.
    pub new: u64,
}

fn bad_query(code: &'static str, message: String) -> AppError {
    AppError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        code,
        message,
    }
}

fn time_param(name: &str, text: Option<&str>) -> Result<Option<OffsetDateTime>, AppError> {
    text.map(|t| {
        OffsetDateTime::parse(t, &Rfc3339).map_err(|e| {
            bad_query(
                "invalid_time",
                format!("`{name}` must be an RFC 3339 time such as 2026-01-31T09:00:00Z: {e}"),
            )
        })
    })
    .transpose()
}

/// Lists audit entries, by time, then log, then index.
#[utoipa::path(get, path = "/api/v1/audit/entries", tag = "audit", params(ListEntries),
    responses((status = 200, body = EntryPage),
        (status = 400, description = "`invalid_time`, `invalid_cursor` or `invalid_action`", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_entries(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiQuery(params): ApiQuery<ListEntries>,
) -> Result<axum::Json<EntryPage>, AppError> {
    let query = AuditQuery {
        log: params.tenant,
        actor: params.actor,
        action: params
            .action
            .as_deref()
            .map(ActionFilter::parse)
            .transpose()
            .map_err(|e| bad_query("invalid_action", e))?,
        since: time_param("since", params.since.as_deref())?,
        until: time_param("until", params.until.as_deref())?,
        cursor: params
            .cursor
            .as_deref()
            .map(AuditCursor::decode)
            .transpose()
            .map_err(|e| bad_query("invalid_cursor", e))?,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT),
    };
    let page = state.app.list_audit(&actor, query).await?;
    Ok(axum::Json(EntryPage {
        entries: page.items,
        next_cursor: page.next,
    }))
}

/// Lists the audit logs (one per tenant, and `system`) with their sizes.
#[utoipa::path(get, path = "/api/v1/audit/logs", tag = "audit",
    responses((status = 200, body = LogList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_logs(
    State(state): State<ApiState>,
    Auth(actor): Auth,
) -> Result<axum::Json<LogList>, AppError> {
    let logs = state.app.list_audit_logs(&actor).await?;
    Ok(axum::Json(LogList { logs }))
}

/// One entry of a log.
#[utoipa::path(get, path = "/api/v1/audit/logs/{log}/entries/{idx}", tag = "audit",
    params(("log" = String, Path, description = "`system`, a tenant id or slug"), ("idx" = u64, Path, description = "the entry's index")),
    responses((status = 200, body = AuditEntryView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found` or `audit_entry_not_found`", body = ErrorBody)))]
pub async fn get_entry(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((log, idx)): ApiPath<(String, u64)>,
) -> Result<axum::Json<AuditEntryView>, AppError> {
    state
        .app
        .get_audit_entry(&actor, &log, idx)
        .await
        .map(axum::Json)
}

/// The inclusion proof (RFC 9162) of an entry in the tree of `tree_size`
/// entries, with that tree's root and its checkpoint if one was issued.
#[utoipa::path(get, path = "/api/v1/audit/logs/{log}/proofs/inclusion", tag = "audit",
    params(("log" = String, Path, description = "`system`, a tenant id or slug"), InclusionParams),
    responses((status = 200, body = InclusionProof), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found` or `audit_log_not_found`", body = ErrorBody),
        (status = 422, description = "the index or the size is outside the log", body = ErrorBody)))]
pub async fn inclusion_proof(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(log): ApiPath<String>,
    ApiQuery(params): ApiQuery<InclusionParams>,
) -> Result<axum::Json<InclusionProof>, AppError> {
    state
        .app
        .inclusion_proof(&actor, &log, params.index, params.tree_size)
        .await
        .map(axum::Json)
}

/// The consistency proof (RFC 9162) from the tree of `old` entries to the
/// tree of `new` entries, with both roots.
#[utoipa::path(get, path = "/api/v1/audit/logs/{log}/proofs/consistency", tag = "audit",
    params(("log" = String, Path, description = "`system`, a tenant id or slug"), ConsistencyParams),
    responses((status = 200, body = ConsistencyProof), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found` or `audit_log_not_found`", body = ErrorBody),
        (status = 422, description = "the sizes are out of order or beyond the log", body = ErrorBody)))]
pub async fn consistency_proof(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(log): ApiPath<String>,
    ApiQuery(params): ApiQuery<ConsistencyParams>,
) -> Result<axum::Json<ConsistencyProof>, AppError> {
    state
        .app
        .consistency_proof(&actor, &log, params.old, params.new)
        .await
        .map(axum::Json)
}

/// Verifies the stored log: recomputes its tree from every entry and checks
/// every stored checkpoint. A mismatch is a 200 with `verified: false`
/// naming the first entry or checkpoint that does not match.
#[utoipa::path(post, path = "/api/v1/audit/logs/{log}/verify", tag = "audit",
    params(("log" = String, Path, description = "`system`, a tenant id or slug")),
    responses((status = 200, body = AuditVerification), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found` or `audit_log_not_found`", body = ErrorBody),
        (status = 503, description = "the signing key is not loaded on this node", body = ErrorBody)))]
pub async fn verify_log(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(log): ApiPath<String>,
) -> Result<axum::Json<AuditVerification>, AppError> {
    state
        .app
        .verify_audit_log(&actor, &log, VerifyRequest::default(), |_| {})
        .await
        .map(axum::Json)
}
