//! `/api/v1/audit/…`: the audit log's public key and its checkpoints.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::ApiState;
use super::extract::{ApiPath, Auth};
use crate::app::{AuditPublicKey, CheckpointView, Issued};
use crate::error::{AppError, ErrorBody};

/// The public key auditors verify the audit log's checkpoints with. Needs
/// no token: it is a public key, and auditors may hold no account.
#[utoipa::path(get, path = "/api/v1/audit/public-key", tag = "audit", security(()),
    responses((status = 200, body = AuditPublicKey),
        (status = 503, description = "the signing key is not loaded on this node", body = ErrorBody)))]
pub async fn public_key(
    State(state): State<ApiState>,
) -> Result<axum::Json<AuditPublicKey>, AppError> {
    state.app.audit_public_key().map(axum::Json)
}

/// Sign a checkpoint of a log at its current size now (201), or get its
/// latest checkpoint if nothing was appended since (200).
#[utoipa::path(post, path = "/api/v1/audit/logs/{log}/checkpoints", tag = "audit",
    params(("log" = String, Path, description = "`system`, a tenant id or a tenant slug")),
    responses((status = 201, description = "a new checkpoint", body = CheckpointView),
        (status = 200, description = "the log has not grown: its latest checkpoint", body = CheckpointView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`audit_log_empty`: nothing to sign yet", body = ErrorBody),
        (status = 503, description = "the signing key is not loaded on this node", body = ErrorBody)))]
pub async fn issue_checkpoint(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(log): ApiPath<String>,
) -> Result<impl IntoResponse, AppError> {
    let issued = state.app.issue_checkpoint(&actor, &log).await?;
    let status = match issued {
        Issued::New(_) => StatusCode::CREATED,
        Issued::Latest(_) => StatusCode::OK,
    };
    Ok((
        status,
        axum::Json(CheckpointView::of(issued.into_checkpoint())?),
    ))
}

/// A log's signed checkpoints, by size.
#[utoipa::path(get, path = "/api/v1/audit/logs/{log}/checkpoints", tag = "audit",
    params(("log" = String, Path, description = "`system`, a tenant id or a tenant slug")),
    responses((status = 200, body = Vec<CheckpointView>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_checkpoints(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(log): ApiPath<String>,
) -> Result<axum::Json<Vec<CheckpointView>>, AppError> {
    let checkpoints = state.app.list_checkpoints(&actor, &log).await?;
    checkpoints
        .into_iter()
        .map(CheckpointView::of)
        .collect::<Result<_, _>>()
        .map(axum::Json)
}

/// A log's latest checkpoint: the signed note as `text/plain`, the file
/// `gatehouse audit verify --checkpoint` takes.
#[utoipa::path(get, path = "/api/v1/audit/logs/{log}/checkpoints/latest", tag = "audit",
    params(("log" = String, Path, description = "`system`, a tenant id or a tenant slug")),
    responses((status = 200, description = "the C2SP signed note", body = String, content_type = "text/plain"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "no such log, or `checkpoint_not_found`: none signed yet", body = ErrorBody)))]
pub async fn latest_checkpoint(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(log): ApiPath<String>,
) -> Result<impl IntoResponse, AppError> {
    let checkpoint = state.app.latest_checkpoint(&actor, &log).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        checkpoint.note,
    ))
}
