//! `/api/v1/onboardings`: tracking client onboardings and working their
//! documentation checklists.
//!
//! An onboarding's id is its workflow instance's (`wf_…`). Items are
//! addressed through their onboarding, so an item of another onboarding
//! (another tenant's) is 404. Files travel as raw bodies: upload with
//! `PUT …/file?name=…` and the file's `Content-Type`; download with `GET`
//! (`Content-Disposition: attachment`, `X-Content-Type-Options: nosniff`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::id::{ChecklistItemId, WorkflowId};
use gatehouse_core::secret::SecretName;
use gatehouse_core::workflow::InstanceState;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::ApiState;
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::error::{AppError, ErrorBody};
use crate::onboarding::{ItemView, OnboardingDetail, OnboardingFilter, OnboardingSummary, Upload};

const DEFAULT_LIMIT: u32 = 50;

/// Filtering and paging of onboardings.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListOnboardings {
    /// Only in this workflow state (`running`, `waiting`, `completed`, …).
    #[param(value_type = Option<String>)]
    pub state: Option<InstanceState>,
    /// Only those currently in this stage (`intake`, `documentation`, …, or `done`).
    pub stage: Option<String>,
    /// The previous page's `next_cursor`.
    #[param(value_type = Option<String>)]
    pub after: Option<WorkflowId>,
    /// Page size, 1–100 (default 50).
    pub limit: Option<u32>,
}

/// A page of onboardings.
#[derive(Debug, Serialize, ToSchema)]
pub struct OnboardingPage {
    /// In start order.
    pub items: Vec<OnboardingSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub next_cursor: Option<WorkflowId>,
}

/// An onboarding's checklist.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemList {
    /// By key.
    pub items: Vec<ItemView>,
}

/// A confirmation item marked received.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receive {
    /// A note (at most 2000 characters).
    pub note: Option<String>,
}

/// A waiver.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Waive {
    /// Why the item is not needed (1–2000 characters).
    pub reason: String,
}

/// A secret handed over into the tenant's vault.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandOver {
    /// The secret's name in the tenant's vault.
    #[schema(value_type = String)]
    pub name: SecretName,
    /// The value, up to 16 KiB (never stored in the item, never logged).
    pub value: String,
}

impl std::fmt::Debug for HandOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandOver")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The uploaded file's name.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FileName {
    /// The file's name (1–255 characters; a path is cut to its last part).
    pub name: String,
}

/// List onboardings with their stage, progress and how many things block them.
#[utoipa::path(get, path = "/api/v1/onboardings", tag = "onboarding", params(ListOnboardings),
    responses((status = 200, body = OnboardingPage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn list_onboardings(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiQuery(query): ApiQuery<ListOnboardings>,
) -> Result<axum::Json<OnboardingPage>, AppError> {
    let page = state
        .app
        .list_onboardings(
            &actor,
            OnboardingFilter {
                state: query.state,
                stage: query.stage,
            },
            query.after,
            query.limit.unwrap_or(DEFAULT_LIMIT),
        )
        .await?;
    Ok(axum::Json(OnboardingPage {
        items: page.items,
        next_cursor: page.next,
    }))
}

/// One onboarding: client, stage, progress per stage, what blocks it and why, owner, time in stage, checklist.
#[utoipa::path(get, path = "/api/v1/onboardings/{onboarding}", tag = "onboarding",
    params(("onboarding" = String, Path, description = "the onboarding's workflow instance id (`wf_…`)")),
    responses((status = 200, body = OnboardingDetail), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`onboarding_not_found`", body = ErrorBody)))]
pub async fn get_onboarding(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<WorkflowId>,
) -> Result<axum::Json<OnboardingDetail>, AppError> {
    Ok(axum::Json(state.app.get_onboarding(&actor, id).await?))
}

/// An onboarding's documentation checklist.
#[utoipa::path(get, path = "/api/v1/onboardings/{onboarding}/items", tag = "onboarding",
    params(("onboarding" = String, Path, description = "the onboarding's workflow instance id (`wf_…`)")),
    responses((status = 200, body = ItemList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`onboarding_not_found`", body = ErrorBody)))]
pub async fn list_items(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(id): ApiPath<WorkflowId>,
) -> Result<axum::Json<ItemList>, AppError> {
    Ok(axum::Json(ItemList {
        items: state.app.list_checklist(&actor, id).await?,
    }))
}

/// Mark a confirmation item received.
#[utoipa::path(post, path = "/api/v1/onboardings/{onboarding}/items/{item}/receive", tag = "onboarding", request_body = Receive,
    params(("onboarding" = String, Path, description = "`wf_…`"), ("item" = String, Path, description = "`chk_…`")),
    responses((status = 200, body = ItemView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`item_not_found`", body = ErrorBody),
        (status = 409, description = "`item_not_requested`, `item_kind_mismatch`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn receive_item(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((id, item)): ApiPath<(WorkflowId, ChecklistItemId)>,
    ApiJson(body): ApiJson<Receive>,
) -> Result<axum::Json<ItemView>, AppError> {
    Ok(axum::Json(
        state
            .app
            .receive_item(&actor, id, item, body.note.as_deref())
            .await?,
    ))
}

/// Waive an item that is still requested, with a reason.
#[utoipa::path(post, path = "/api/v1/onboardings/{onboarding}/items/{item}/waive", tag = "onboarding", request_body = Waive,
    params(("onboarding" = String, Path, description = "`wf_…`"), ("item" = String, Path, description = "`chk_…`")),
    responses((status = 200, body = ItemView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`item_not_found`", body = ErrorBody),
        (status = 409, description = "`item_not_requested`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn waive_item(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((id, item)): ApiPath<(WorkflowId, ChecklistItemId)>,
    ApiJson(body): ApiJson<Waive>,
) -> Result<axum::Json<ItemView>, AppError> {
    Ok(axum::Json(
        state.app.waive_item(&actor, id, item, &body.reason).await?,
    ))
}

/// Hand over a secret item: the value goes into the tenant's vault (needs `ManageSecrets` too); the item keeps its name.
#[utoipa::path(post, path = "/api/v1/onboardings/{onboarding}/items/{item}/secret", tag = "onboarding", request_body = HandOver,
    params(("onboarding" = String, Path, description = "`wf_…`"), ("item" = String, Path, description = "`chk_…`")),
    responses((status = 200, body = ItemView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`item_not_found`", body = ErrorBody),
        (status = 409, description = "`item_not_requested`, `item_kind_mismatch`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn hand_over_secret(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((id, item)): ApiPath<(WorkflowId, ChecklistItemId)>,
    ApiJson(body): ApiJson<HandOver>,
) -> Result<axum::Json<ItemView>, AppError> {
    Ok(axum::Json(
        state
            .app
            .hand_over_secret(
                &actor,
                id,
                item,
                &body.name,
                Zeroizing::new(body.value).as_bytes(),
            )
            .await?,
    ))
}

/// Upload a file item's file (raw body, its `Content-Type`; at most 8 MiB); stored sealed under the tenant's key.
#[utoipa::path(put, path = "/api/v1/onboardings/{onboarding}/items/{item}/file", tag = "onboarding",
    params(("onboarding" = String, Path, description = "`wf_…`"), ("item" = String, Path, description = "`chk_…`"), FileName),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the file, with its own Content-Type"),
    responses((status = 200, body = ItemView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`item_not_found`", body = ErrorBody),
        (status = 409, description = "`item_not_requested`, `item_kind_mismatch`", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload_file(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((id, item)): ApiPath<(WorkflowId, ChecklistItemId)>,
    ApiQuery(query): ApiQuery<FileName>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::Json<ItemView>, AppError> {
    let bytes = body.map_err(|rejection| AppError::BadRequest {
        status: rejection.status(),
        code: if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "unreadable_body"
        },
        message: rejection.body_text(),
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    Ok(axum::Json(
        state
            .app
            .upload_item_file(
                &actor,
                id,
                item,
                Upload {
                    name: query.name,
                    content_type,
                    bytes: bytes.to_vec(),
                },
            )
            .await?,
    ))
}

/// Download a file item's file (roles admin, lead, technician).
#[utoipa::path(get, path = "/api/v1/onboardings/{onboarding}/items/{item}/file", tag = "onboarding",
    params(("onboarding" = String, Path, description = "`wf_…`"), ("item" = String, Path, description = "`chk_…`")),
    responses((status = 200, description = "the file, with the Content-Type it was uploaded with", content_type = "application/octet-stream"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`item_not_found`, `file_not_found`", body = ErrorBody)))]
pub async fn download_file(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((id, item)): ApiPath<(WorkflowId, ChecklistItemId)>,
) -> Result<Response, AppError> {
    let (name, content_type, content) = state.app.download_item_file(&actor, id, item).await?;
    let content_type = HeaderValue::from_str(&content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    // Only safe characters in the header; the name as uploaded is in the item.
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        content.to_vec(),
    )
        .into_response())
}
