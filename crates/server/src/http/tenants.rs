//! `/api/v1/tenants`: client tenants and their secrets.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use gatehouse_core::id::TenantId;
use gatehouse_core::secret::{SecretMeta, SecretName};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantAction, TenantSlug, TenantState};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use super::ApiState;
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::app::{NewTenant, TenantChanges, TenantRef};
use crate::error::{AppError, ErrorBody};

/// The state a new tenant starts in.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum InitialState {
    /// Being set up; activate it when ready.
    Provisioning,
    /// Served at once.
    #[default]
    Active,
}

/// A tenant to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique slug (a DNS label: `a-z`, `0-9`, `-`).
    pub slug: TenantSlug,
    /// The client's name.
    pub display_name: DisplayName,
    /// The data-residency region.
    pub region: Region,
    /// `active` (default) or `provisioning`.
    #[serde(default)]
    pub state: InitialState,
}

/// Changes to a tenant. Absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// A new name.
    pub display_name: Option<DisplayName>,
    /// A new region; only while the tenant is provisioning.
    pub region: Option<Region>,
}

/// A page of tenants.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantPage {
    /// The tenants, in creation order.
    pub items: Vec<Tenant>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<TenantId>,
}

/// Paging and filtering.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTenants {
    /// Only tenants in this state (default: every state but `deleted`).
    pub state: Option<TenantState>,
    /// The previous page's `next_cursor`.
    pub after: Option<TenantId>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
}

/// A secret's value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value, up to 16 KiB. Stored encrypted; never returned.
    pub value: String,
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PutSecret(<redacted>)")
    }
}

/// The tenant's secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretList {
    /// Names and versions; never values.
    pub items: Vec<SecretMeta>,
}

fn location(tenant: &Tenant) -> [(header::HeaderName, String); 1] {
    [(header::LOCATION, format!("/api/v1/tenants/{}", tenant.id))]
}

/// List tenants.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(ListTenants),
    responses((status = 200, body = TenantPage), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_tenants(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiQuery(query): ApiQuery<ListTenants>,
) -> Result<axum::Json<TenantPage>, AppError> {
    let page = state
        .app
        .list_tenants(&actor, query.state, query.after, query.limit.unwrap_or(100))
        .await?;
    Ok(axum::Json(TenantPage {
        items: page.items,
        next_cursor: page.next,
    }))
}

/// Create a tenant, with its own data key.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`tenant_slug_taken`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_tenant(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<impl IntoResponse, AppError> {
    let new = NewTenant {
        slug: body.slug,
        display_name: body.display_name,
        region: body.region,
        state: match body.state {
            InitialState::Provisioning => TenantState::Provisioning,
            InitialState::Active => TenantState::Active,
        },
    };
    let tenant = state.app.create_tenant(&actor, new).await?;
    Ok((StatusCode::CREATED, location(&tenant), axum::Json(tenant)))
}

/// Get a tenant by id (`ten_…`, deleted ones too) or slug.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Tenant), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_tenant(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
) -> Result<axum::Json<Tenant>, AppError> {
    Ok(axum::Json(
        state
            .app
            .get_tenant(&actor, &TenantRef::parse(&tenant))
            .await?,
    ))
}

/// Change a tenant's display name or (while provisioning) region.
#[utoipa::path(patch, path = "/api/v1/tenants/{tenant}", tag = "tenants", request_body = UpdateTenant,
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Tenant), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_tenant(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateTenant>,
) -> Result<axum::Json<Tenant>, AppError> {
    let changes = TenantChanges {
        display_name: body.display_name,
        region: body.region,
    };
    Ok(axum::Json(
        state
            .app
            .update_tenant(&actor, &TenantRef::parse(&tenant), changes)
            .await?,
    ))
}

/// Delete a suspended, offboarding or provisioning tenant: its data key and
/// secrets are destroyed (crypto-shredding); a tombstone remains.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Tenant), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`invalid_transition`: suspend or offboard first", body = ErrorBody)))]
pub async fn delete_tenant(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
) -> Result<axum::Json<Tenant>, AppError> {
    transition(&state, &actor, &tenant, TenantAction::Delete).await
}

async fn transition(
    state: &ApiState,
    actor: &crate::app::Actor,
    tenant: &str,
    action: TenantAction,
) -> Result<axum::Json<Tenant>, AppError> {
    Ok(axum::Json(
        state
            .app
            .transition_tenant(actor, &TenantRef::parse(tenant), action)
            .await?,
    ))
}

/// Activate a provisioning or suspended tenant.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/activate", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Tenant), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn activate_tenant(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
) -> Result<axum::Json<Tenant>, AppError> {
    transition(&state, &actor, &tenant, TenantAction::Activate).await
}

/// Suspend an active tenant.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/suspend", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Tenant), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn suspend_tenant(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
) -> Result<axum::Json<Tenant>, AppError> {
    transition(&state, &actor, &tenant, TenantAction::Suspend).await
}

/// Start offboarding an active or suspended tenant.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/offboard", tag = "tenants",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = Tenant), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn offboard_tenant(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
) -> Result<axum::Json<Tenant>, AppError> {
    transition(&state, &actor, &tenant, TenantAction::Offboard).await
}

/// List a tenant's secrets (names and versions only).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/secrets", tag = "secrets",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = SecretList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_secrets(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
) -> Result<axum::Json<SecretList>, AppError> {
    let items = state
        .app
        .list_secrets(&actor, &TenantRef::parse(&tenant))
        .await?;
    Ok(axum::Json(SecretList { items }))
}

fn secret_name(text: &str) -> Result<SecretName, AppError> {
    SecretName::parse(text).map_err(AppError::from)
}

/// Store or overwrite a secret, encrypted under the tenant's data key.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/secrets/{name}", tag = "secrets", request_body = PutSecret,
    params(("tenant" = String, Path, description = "tenant id or slug"), ("name" = String, Path, description = "secret name")),
    responses((status = 200, body = SecretMeta), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn put_secret(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PutSecret>,
) -> Result<axum::Json<SecretMeta>, AppError> {
    let name = secret_name(&name)?;
    let value = Zeroizing::new(body.value);
    Ok(axum::Json(
        state
            .app
            .put_secret(&actor, &TenantRef::parse(&tenant), &name, value.as_bytes())
            .await?,
    ))
}

/// Remove a secret.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/secrets/{name}", tag = "secrets",
    params(("tenant" = String, Path, description = "tenant id or slug"), ("name" = String, Path, description = "secret name")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_secret(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, AppError> {
    let name = SecretName::parse(&name).map_err(|_| AppError::not_found("secret", &name))?;
    state
        .app
        .delete_secret(&actor, &TenantRef::parse(&tenant), &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
