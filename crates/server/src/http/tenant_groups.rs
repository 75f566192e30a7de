//! `/api/v1/tenant-groups`: named sets of tenants that operators' scopes
//! may name. The installation's configuration: installation-wide
//! operators only (a scoped operator gets 403).

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use gatehouse_core::tenant::{DisplayName, TenantSlug};
use gatehouse_core::tenant_group::TenantGroup;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::extract::{ApiJson, ApiPath, Auth};
use crate::app::{GroupRef, TenantRef};
use crate::error::{AppError, ErrorBody};

/// A tenant group to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Unique among groups (`a-z`, `0-9`, `-`).
    pub slug: TenantSlug,
    /// What the group is for ("EU clients").
    pub display_name: DisplayName,
    /// Its first members (slugs or ids); more can be added later.
    #[serde(default)]
    pub tenants: Vec<String>,
}

/// Every tenant group.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    /// The groups, by slug, with their members.
    pub items: Vec<TenantGroup>,
}

/// List tenant groups.
#[utoipa::path(get, path = "/api/v1/tenant-groups", tag = "tenant-groups",
    responses((status = 200, body = GroupList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_groups(
    State(state): State<ApiState>,
    Auth(actor): Auth,
) -> Result<axum::Json<GroupList>, AppError> {
    Ok(axum::Json(GroupList {
        items: state.app.list_tenant_groups(&actor).await?,
    }))
}

/// Create a tenant group.
#[utoipa::path(post, path = "/api/v1/tenant-groups", tag = "tenant-groups", request_body = CreateGroup,
    responses((status = 201, body = TenantGroup), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "a member tenant does not exist", body = ErrorBody),
        (status = 409, description = "`tenant_group_slug_taken`, `tenant_deleted`", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_group(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<CreateGroup>,
) -> Result<impl IntoResponse, AppError> {
    let tenants: Vec<TenantRef> = body.tenants.iter().map(|t| TenantRef::parse(t)).collect();
    let group = state
        .app
        .create_tenant_group(&actor, body.slug, body.display_name, &tenants)
        .await?;
    let location = [(
        header::LOCATION,
        format!("/api/v1/tenant-groups/{}", group.id),
    )];
    Ok((StatusCode::CREATED, location, axum::Json(group)))
}

/// Get a tenant group by id (`tgr_…`) or slug.
#[utoipa::path(get, path = "/api/v1/tenant-groups/{group}", tag = "tenant-groups",
    params(("group" = String, Path, description = "group id or slug")),
    responses((status = 200, body = TenantGroup), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_group(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(group): ApiPath<String>,
) -> Result<axum::Json<TenantGroup>, AppError> {
    Ok(axum::Json(
        state
            .app
            .get_tenant_group(&actor, &GroupRef::parse(&group))
            .await?,
    ))
}

/// Delete a tenant group no operator's scope names.
#[utoipa::path(delete, path = "/api/v1/tenant-groups/{group}", tag = "tenant-groups",
    params(("group" = String, Path, description = "group id or slug")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "`tenant_group_in_use`: an operator's scope names it", body = ErrorBody)))]
pub async fn delete_group(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(group): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state
        .app
        .delete_tenant_group(&actor, &GroupRef::parse(&group))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a tenant to a group (idempotent). Operators scoped to the group
/// reach it from their next request.
#[utoipa::path(put, path = "/api/v1/tenant-groups/{group}/tenants/{tenant}", tag = "tenant-groups",
    params(("group" = String, Path, description = "group id or slug"), ("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = TenantGroup), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`tenant_deleted`", body = ErrorBody)))]
pub async fn add_member(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((group, tenant)): ApiPath<(String, String)>,
) -> Result<axum::Json<TenantGroup>, AppError> {
    member(&state, &actor, &group, &tenant, true).await
}

/// Remove a tenant from a group (idempotent). Operators scoped to the
/// group stop reaching it from their next request (unless their scope
/// names it otherwise).
#[utoipa::path(delete, path = "/api/v1/tenant-groups/{group}/tenants/{tenant}", tag = "tenant-groups",
    params(("group" = String, Path, description = "group id or slug"), ("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = TenantGroup), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((group, tenant)): ApiPath<(String, String)>,
) -> Result<axum::Json<TenantGroup>, AppError> {
    member(&state, &actor, &group, &tenant, false).await
}

async fn member(
    state: &ApiState,
    actor: &crate::app::Actor,
    group: &str,
    tenant: &str,
    member: bool,
) -> Result<axum::Json<TenantGroup>, AppError> {
    Ok(axum::Json(
        state
            .app
            .set_tenant_group_member(
                actor,
                &GroupRef::parse(group),
                &TenantRef::parse(tenant),
                member,
            )
            .await?,
    ))
}
