//! `/api/v1/tenants/{tenant}/…`: identity lifecycle for operators — people
//! and their lifecycle events (JSON or CSV import), the access policy and
//! its impact, drift, just-in-time elevation and leavers' revocations.
//! Reference: `docs/identity.md`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::app::TenantRef;
use crate::app::identity::{ImportReport, RevocationView};
use crate::error::{AppError, ErrorBody};
use crate::identity::EventInput;
use crate::identity::service::Ingested;

/// Paging of people.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPeople {
    /// The previous page's `next`.
    pub after: Option<String>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<u32>,
}

/// A page of people.
#[derive(Debug, Serialize, ToSchema)]
pub struct PeoplePage {
    /// People in id order.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    /// Where the next page starts; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A policy to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    /// The policy in TOML (see docs/identity.md).
    pub text: String,
    /// The version it replaces (0 for the first).
    #[serde(default)]
    pub version: u64,
}

/// A policy to preview.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    /// The policy in TOML.
    pub text: String,
}

/// A just-in-time request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ElevationInput {
    /// The person's key or id.
    pub person: String,
    /// The elevation's id in the tenant's policy.
    pub elevation: String,
    /// How long: `30m`, `8h` (at most the elevation's maximum).
    pub duration: String,
    /// Why it is needed (at least 10 characters).
    pub justification: String,
}

fn tenant(text: &str) -> TenantRef {
    TenantRef::parse(text)
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/people/events", tag = "identity", request_body = EventInput,
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Ingested), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn post_event(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
    ApiJson(input): ApiJson<EventInput>,
) -> Result<axum::Json<Ingested>, AppError> {
    let event = input
        .into_event(state.app.clock.now())
        .map_err(AppError::Invalid)?;
    Ok(axum::Json(
        state
            .app
            .ingest_lifecycle_event(&actor, &tenant(&t), event)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/people/import", tag = "identity",
    request_body(content = String, content_type = "text/csv", description = "a header line naming `person` and other columns, then one event per line"),
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = ImportReport), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::Json<ImportReport>, AppError> {
    let bytes = body.map_err(|rejection| AppError::BadRequest {
        status: rejection.status(),
        code: "unreadable_body",
        message: rejection.body_text(),
    })?;
    Ok(axum::Json(
        state
            .app
            .import_people(&actor, &tenant(&t), &bytes, "csv", &|_, _| {})
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/people", tag = "identity",
    params(("tenant" = String, Path, description = "tenant id or slug"), ListPeople),
    responses((status = 200, body = PeoplePage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_people(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListPeople>,
) -> Result<axum::Json<PeoplePage>, AppError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let people = state
        .app
        .list_people(&actor, &tenant(&t), query.after.as_deref(), limit)
        .await?;
    let next = (people.len() == limit as usize)
        .then(|| people.last().map(|p| p.id.clone()))
        .flatten();
    Ok(axum::Json(PeoplePage {
        items: people.iter().map(|p| json!(p)).collect(),
        next,
    }))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/people/{person}", tag = "identity",
    params(("tenant" = String, Path, description = "tenant id or slug"), ("person" = String, Path, description = "person id (`per_…`) or key")),
    responses((status = 200, body = Object, description = "the person, their attributes with lineage, and `desired`: what they should hold on each system and why"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_person(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((t, person)): ApiPath<(String, String)>,
) -> Result<axum::Json<Value>, AppError> {
    let (view, desired) = state.app.get_person(&actor, &tenant(&t), &person).await?;
    let mut body = json!(view);
    body["desired"] = json!(desired.systems);
    Ok(axum::Json(body))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/people/{person}/reconcile", tag = "identity",
    params(("tenant" = String, Path, description = "tenant id or slug"), ("person" = String, Path, description = "person id or key")),
    responses((status = 200, body = Object, description = "the operations planned and the workflows started"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reconcile(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((t, person)): ApiPath<(String, String)>,
) -> Result<axum::Json<Value>, AppError> {
    Ok(axum::Json(json!(
        state
            .app
            .reconcile_person(&actor, &tenant(&t), &person)
            .await?
    )))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/access-policy", tag = "identity",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Object, description = "`version` (0 when none is set) and `text`"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_policy(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
) -> Result<axum::Json<Value>, AppError> {
    let (version, text) = state.app.access_policy(&actor, &tenant(&t)).await?;
    Ok(axum::Json(json!({ "version": version, "text": text })))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/access-policy", tag = "identity", request_body = PolicyInput,
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Object, description = "the new `version` and its `impact`: who gains and loses what"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_policy(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
    ApiJson(input): ApiJson<PolicyInput>,
) -> Result<axum::Json<Value>, AppError> {
    let (version, impact) = state
        .app
        .set_access_policy(&actor, &tenant(&t), &input.text, input.version)
        .await?;
    Ok(axum::Json(json!({ "version": version, "impact": impact })))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/access-policy/preview", tag = "identity", request_body = PolicyText,
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Object, description = "`impact`: who would gain and lose what; nothing changes"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn preview_policy(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
    ApiJson(input): ApiJson<PolicyText>,
) -> Result<axum::Json<Value>, AppError> {
    let impact = state
        .app
        .preview_access_policy(&actor, &tenant(&t), &input.text)
        .await?;
    Ok(axum::Json(json!({ "impact": impact })))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/drift", tag = "identity",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Object, description = "`items`: orphans, leavers still active, grants nobody approved"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn drift(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
) -> Result<axum::Json<Value>, AppError> {
    let items = state.app.identity_drift(&actor, &tenant(&t)).await?;
    Ok(axum::Json(json!({ "items": items })))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/drift/remediate", tag = "identity",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Object, description = "the drift found and the workflows started (orphans are reported, never removed)"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn remediate(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
) -> Result<axum::Json<Value>, AppError> {
    let (items, workflows) = state.app.remediate_drift(&actor, &tenant(&t)).await?;
    Ok(axum::Json(
        json!({ "items": items, "workflows": workflows }),
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/elevations", tag = "identity", request_body = ElevationInput,
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 201, body = Object, description = "the elevation's `id` and the workflow that waits for approval"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn request_elevation(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
    ApiJson(input): ApiJson<ElevationInput>,
) -> Result<impl IntoResponse, AppError> {
    let duration =
        gatehouse_identity::policy::parse_duration(&input.duration).ok_or_else(|| {
            AppError::Invalid(format!(
                "duration `{}` is not a duration such as 30m or 8h",
                input.duration
            ))
        })?;
    let (id, workflows) = state
        .app
        .request_elevation(
            &actor,
            &tenant(&t),
            &input.person,
            &input.elevation,
            duration.as_secs(),
            &input.justification,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "id": id, "workflows": workflows })),
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/elevations", tag = "identity",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Object, description = "`items`: every elevation, oldest first"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_elevations(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
) -> Result<axum::Json<Value>, AppError> {
    let items: Vec<Value> = state
        .app
        .list_elevations(&actor, &tenant(&t))
        .await?
        .into_iter()
        .map(|(row, doc)| {
            json!({
                "id": row.id,
                "person_id": row.person_id,
                "person": doc.person,
                "elevation": doc.elevation,
                "system": doc.system,
                "entitlement": doc.entitlement,
                "state": row.state,
                "requested_by": row.requested_by,
                "justification": doc.justification,
                "duration_secs": doc.duration_secs,
                "created_at": row.created_at.unix_timestamp(),
                "expires_at": row.expires_at.map(|t| t.unix_timestamp()),
                "ended_at": row.ended_at.map(|t| t.unix_timestamp()),
                "ended_by": doc.ended_by,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "items": items })))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/elevations/{id}/revoke", tag = "identity",
    params(("tenant" = String, Path, description = "tenant id or slug"), ("id" = String, Path, description = "elevation id (`jit_…`)")),
    responses((status = 200, body = Object, description = "the revocation workflows started"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_elevation(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((t, id)): ApiPath<(String, String)>,
) -> Result<axum::Json<Value>, AppError> {
    let workflows = state.app.end_elevation(&actor, &tenant(&t), &id).await?;
    Ok(axum::Json(json!({ "workflows": workflows })))
}

/// A tenant's revocations.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationList {
    /// Incomplete first.
    pub items: Vec<RevocationView>,
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/revocations", tag = "identity",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = RevocationList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn revocations(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(t): ApiPath<String>,
) -> Result<axum::Json<RevocationList>, AppError> {
    Ok(axum::Json(RevocationList {
        items: state.app.revocations(&actor, &tenant(&t)).await?,
    }))
}
