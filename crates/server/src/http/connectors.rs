//! `/api/v1/tenants/{tenant}/connectors`: the systems a tenant's actions
//! reach (its connector directory).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use gatehouse_core::connector::{ConnectorConfig, ConnectorKind, ConnectorName, ConnectorSpec};
use gatehouse_core::secret::SecretName;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::ApiState;
use super::extract::{ApiJson, ApiPath, Auth};
use crate::app::TenantRef;
use crate::error::{AppError, ErrorBody};

/// A tenant's connectors.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectorList {
    /// By name.
    pub items: Vec<ConnectorConfig>,
}

/// A connector's configuration, as set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConnector {
    /// The vendor: connectwise, autotask, halopsa, ninjaone, dattormm,
    /// graph, itglue, hudu or scim.
    pub kind: ConnectorKind,
    /// Where its API is (https; no credentials, query or fragment).
    pub base_url: String,
    /// Non-secret settings (company id, client id, region, customer tenant
    /// id…); a key that looks like a credential is refused.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Role (such as `client_secret`) → the name of the tenant secret that
    /// holds it.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub secrets: BTreeMap<String, SecretName>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn connector_name(text: &str) -> Result<ConnectorName, AppError> {
    ConnectorName::parse(text).map_err(AppError::from)
}

/// List a tenant's connectors.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/connectors", tag = "connectors",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = ConnectorList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_connectors(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
) -> Result<axum::Json<ConnectorList>, AppError> {
    let items = state
        .app
        .list_connectors(&actor, &TenantRef::parse(&tenant))
        .await?;
    Ok(axum::Json(ConnectorList { items }))
}

/// Create or replace a tenant's connector.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/connectors/{name}", tag = "connectors", request_body = SetConnector,
    params(("tenant" = String, Path, description = "tenant id or slug"), ("name" = String, Path, description = "connector name")),
    responses((status = 200, description = "replaced", body = ConnectorConfig), (status = 201, description = "created", body = ConnectorConfig),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`tenant_deleted`, or `edit_conflict` when changed meanwhile", body = ErrorBody),
        (status = 422, description = "`invalid_input`: a bad name, URL, kind or credential-like setting", body = ErrorBody)))]
pub async fn put_connector(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetConnector>,
) -> Result<(StatusCode, axum::Json<ConnectorConfig>), AppError> {
    let name = connector_name(&name)?;
    let spec = ConnectorSpec {
        kind: body.kind,
        base_url: body.base_url,
        settings: body.settings,
        secrets: body.secrets,
    };
    let (connector, created) = state
        .app
        .set_connector(&actor, &TenantRef::parse(&tenant), &name, spec)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(connector)))
}

/// Remove a tenant's connector.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/connectors/{name}", tag = "connectors",
    params(("tenant" = String, Path, description = "tenant id or slug"), ("name" = String, Path, description = "connector name")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_connector(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, AppError> {
    let name = ConnectorName::parse(&name).map_err(|_| AppError::not_found("connector", &name))?;
    state
        .app
        .remove_connector(&actor, &TenantRef::parse(&tenant), &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
