//! `/api/v1/tenants/{tenant}/scim/tokens`: a tenant's SCIM bearer tokens,
//! for operators. The secret is in the creation answer only; lists show
//! ids, labels and dates. The SCIM endpoint itself (`/scim/v2/{tenant}/…`)
//! is [`super::scim`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use gatehouse_core::scim::ScimToken;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::ApiState;
use super::extract::{ApiJson, ApiPath, Auth};
use crate::app::TenantRef;
use crate::error::{AppError, ErrorBody};

/// A SCIM token, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScimTokenView {
    /// The token's id (`scimtok_…`).
    pub id: String,
    /// What it is for.
    pub label: String,
    /// Who created it.
    pub created_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was revoked; absent while it is live.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<ScimToken> for ScimTokenView {
    fn from(t: ScimToken) -> Self {
        Self {
            id: t.id,
            label: t.label,
            created_by: t.created_by,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A new SCIM token, with its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedScimTokenView {
    /// The token.
    #[serde(flatten)]
    pub token: ScimTokenView,
    /// The bearer secret for the SCIM client (`gh_scim_…`). Not stored.
    pub secret: String,
}

/// A tenant's SCIM tokens.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScimTokenList {
    /// Oldest first, revoked ones included.
    pub items: Vec<ScimTokenView>,
}

/// A new SCIM token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScimToken {
    /// What it is for, such as `entra-provisioning` (at most 200 characters).
    #[serde(default)]
    pub label: String,
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/scim/tokens", tag = "scim",
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 200, body = ScimTokenList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_scim_tokens(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
) -> Result<axum::Json<ScimTokenList>, AppError> {
    let tokens = state
        .app
        .scim_tokens(&actor, &TenantRef::parse(&tenant))
        .await?;
    Ok(axum::Json(ScimTokenList {
        items: tokens.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/scim/tokens", tag = "scim", request_body = CreateScimToken,
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 201, body = IssuedScimTokenView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_scim_token(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreateScimToken>,
) -> Result<impl IntoResponse, AppError> {
    let issued = state
        .app
        .create_scim_token(&actor, &TenantRef::parse(&tenant), &body.label)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(IssuedScimTokenView {
            secret: issued.secret.as_str().to_owned(),
            token: issued.token.into(),
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/scim/tokens/{token}", tag = "scim",
    params(("tenant" = String, Path, description = "tenant id or slug"), ("token" = String, Path, description = "token id (`scimtok_…`)")),
    responses((status = 204, description = "revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`tenant_not_found` or `scim_token_not_found`", body = ErrorBody)))]
pub async fn revoke_scim_token(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, AppError> {
    state
        .app
        .revoke_scim_token(&actor, &TenantRef::parse(&tenant), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
