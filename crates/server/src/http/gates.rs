//! `/api/v1/tenants/{tenant}/gates`: a tenant's gate level per process area.

use axum::extract::State;
use gatehouse_core::gate::{AreaGate, GateLevel, ProcessArea};
use gatehouse_core::id::TenantId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::extract::{ApiJson, ApiPath, Auth};
use crate::app::TenantRef;
use crate::error::{AppError, ErrorBody};

/// Every process area's gate for one tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantGates {
    /// The tenant.
    pub tenant_id: TenantId,
    /// One entry per process area, in a fixed order.
    pub items: Vec<AreaGate>,
}

/// A new level for one area.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetGate {
    /// `L0` … `L3`; not below the area's floor.
    pub level: GateLevel,
    /// Why (1 to 2000 characters); kept with the setting.
    pub reason: String,
}

/// Returning one area to its default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearGate {
    /// Why (1 to 2000 characters); kept as the area's last change.
    pub reason: String,
}

fn area(text: &str) -> Result<ProcessArea, AppError> {
    text.parse().map_err(AppError::from)
}

/// Every process area's gate for a tenant: default, floor, override, effective level and last change.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/gates", tag = "gates",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = TenantGates), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_gates(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
) -> Result<axum::Json<TenantGates>, AppError> {
    let (tenant_id, items) = state
        .app
        .tenant_gates(&actor, &TenantRef::parse(&tenant))
        .await?;
    Ok(axum::Json(TenantGates { tenant_id, items }))
}

/// Set one area's gate level for a tenant (raise it, or lower it down to the area's floor).
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/gates/{area}", tag = "gates", request_body = SetGate,
    params(("tenant" = String, Path, description = "tenant id or slug"), ("area" = ProcessArea, Path, description = "process area")),
    responses((status = 200, body = AreaGate), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`tenant_deleted`", body = ErrorBody),
        (status = 422, description = "`invalid_input`: a level below the area's floor (the message names it), an unknown area or a missing reason", body = ErrorBody)))]
pub async fn set_gate(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetGate>,
) -> Result<axum::Json<AreaGate>, AppError> {
    let area = area(&name)?;
    Ok(axum::Json(
        state
            .app
            .set_tenant_gate(
                &actor,
                &TenantRef::parse(&tenant),
                area,
                Some(body.level),
                &body.reason,
            )
            .await?,
    ))
}

/// Return one area to its default level for a tenant.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/gates/{area}", tag = "gates", request_body = ClearGate,
    params(("tenant" = String, Path, description = "tenant id or slug"), ("area" = ProcessArea, Path, description = "process area")),
    responses((status = 200, body = AreaGate), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`tenant_deleted`", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn clear_gate(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ClearGate>,
) -> Result<axum::Json<AreaGate>, AppError> {
    let area = area(&name)?;
    Ok(axum::Json(
        state
            .app
            .set_tenant_gate(&actor, &TenantRef::parse(&tenant), area, None, &body.reason)
            .await?,
    ))
}
