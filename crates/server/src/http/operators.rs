//! `/api/v1/operators`, `/api/v1/tokens` and `/api/v1/me`: MSP staff and
//! their API tokens.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use gatehouse_core::id::{OperatorId, TokenId};
use gatehouse_core::operator::{ApiToken, Operator, OperatorName, Role};
use gatehouse_core::tenant::DisplayName;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::ApiState;
use super::extract::{ApiJson, ApiPath, Auth};
use crate::app::{Actor, GroupRef, TenantRef};
use crate::error::{AppError, ErrorBody};

/// An operator to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperator {
    /// Sign-in handle.
    pub name: OperatorName,
    /// Full name.
    pub display_name: DisplayName,
    /// Role.
    pub role: Role,
}

/// Where an operator's role applies.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetScope {
    /// The tenants (slugs or ids) the role applies to; `null` for the whole
    /// installation (every tenant, operators, keys, new tenants). Required,
    /// so that an empty body never widens a scope.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    pub tenants: Option<Vec<String>>,
    /// Tenant groups (slugs or ids) whose members the role applies to, as
    /// the groups change. Only with `tenants` (which may then be `[]`).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A token to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// What the token is for.
    pub name: String,
    /// When it stops working (RFC 3339); never, if absent.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// A newly issued token. `token` is shown this once and never again.
#[derive(Serialize, ToSchema)]
pub struct IssuedToken {
    /// The token's record.
    #[serde(flatten)]
    pub record: ApiToken,
    /// The bearer token. Store it now: it cannot be shown again.
    pub token: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

/// A new operator and their first token.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedOperator {
    /// The operator.
    pub operator: Operator,
    /// Their first token (shown once).
    pub token: IssuedToken,
}

/// The operators.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorList {
    /// By name.
    pub items: Vec<Operator>,
}

/// Tokens (never their secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    /// Newest first.
    pub items: Vec<ApiToken>,
}

fn operator_id(text: &str) -> Result<OperatorId, AppError> {
    text.parse()
        .map_err(|_| AppError::not_found("operator", text))
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "operators",
    responses((status = 200, body = Operator), (status = 401, body = ErrorBody)))]
pub async fn whoami(Auth(actor): Auth) -> Result<axum::Json<Operator>, AppError> {
    match actor {
        Actor::Operator { operator, .. } => Ok(axum::Json(operator)),
        Actor::System(_) => Err(AppError::Unauthenticated("not an operator")),
    }
}

/// List operators.
#[utoipa::path(get, path = "/api/v1/operators", tag = "operators",
    responses((status = 200, body = OperatorList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_operators(
    State(state): State<ApiState>,
    Auth(actor): Auth,
) -> Result<axum::Json<OperatorList>, AppError> {
    Ok(axum::Json(OperatorList {
        items: state.app.list_operators(&actor).await?,
    }))
}

/// Create an operator; the response holds their first token, shown once.
#[utoipa::path(post, path = "/api/v1/operators", tag = "operators", request_body = CreateOperator,
    responses((status = 201, body = CreatedOperator), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "`operator_name_taken`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_operator(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiJson(body): ApiJson<CreateOperator>,
) -> Result<impl IntoResponse, AppError> {
    let (operator, record, secret) = state
        .app
        .create_operator(&actor, body.name, body.display_name, body.role)
        .await?;
    let token = IssuedToken {
        record,
        token: secret.expose().to_owned(),
    };
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedOperator { operator, token }),
    ))
}

/// Disable an operator: their tokens stop working at once.
#[utoipa::path(post, path = "/api/v1/operators/{operator}/disable", tag = "operators",
    params(("operator" = String, Path, description = "operator id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn disable_operator(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(operator): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state
        .app
        .set_operator_disabled(&actor, operator_id(&operator)?, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable a disabled operator.
#[utoipa::path(post, path = "/api/v1/operators/{operator}/enable", tag = "operators",
    params(("operator" = String, Path, description = "operator id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn enable_operator(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(operator): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state
        .app
        .set_operator_disabled(&actor, operator_id(&operator)?, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Scope an operator's role to some tenants and tenant groups, or to the
/// whole installation again. To a scoped operator every other tenant and what it owns answer
/// 404; installation settings answer 403. Takes effect on their next
/// request.
#[utoipa::path(put, path = "/api/v1/operators/{operator}/scope", tag = "operators", request_body = SetScope,
    params(("operator" = String, Path, description = "operator id")),
    responses((status = 200, body = Operator), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "no such operator or tenant", body = ErrorBody),
        (status = 409, description = "`cannot_scope_self`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_scope(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(operator): ApiPath<String>,
    ApiJson(body): ApiJson<SetScope>,
) -> Result<axum::Json<Operator>, AppError> {
    let groups: Vec<GroupRef> = body.groups.iter().map(|g| GroupRef::parse(g)).collect();
    let tenants: Option<Vec<TenantRef>> = match body.tenants {
        None if !groups.is_empty() => {
            return Err(AppError::Invalid(
                "`groups` narrows a scope: give `tenants` too (`[]` for groups only)".into(),
            ));
        }
        None => None,
        Some(names) => Some(names.iter().map(|t| TenantRef::parse(t)).collect()),
    };
    Ok(axum::Json(
        state
            .app
            .set_operator_scope(
                &actor,
                operator_id(&operator)?,
                tenants
                    .as_deref()
                    .map(|tenants| (tenants, groups.as_slice())),
            )
            .await?,
    ))
}

/// List an operator's tokens (your own, or anyone's as admin).
#[utoipa::path(get, path = "/api/v1/operators/{operator}/tokens", tag = "operators",
    params(("operator" = String, Path, description = "operator id")),
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_tokens(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(operator): ApiPath<String>,
) -> Result<axum::Json<TokenList>, AppError> {
    Ok(axum::Json(TokenList {
        items: state
            .app
            .list_tokens(&actor, operator_id(&operator)?)
            .await?,
    }))
}

/// Issue a token (for yourself, or for anyone as admin); shown once.
#[utoipa::path(post, path = "/api/v1/operators/{operator}/tokens", tag = "operators", request_body = IssueToken,
    params(("operator" = String, Path, description = "operator id")),
    responses((status = 201, body = IssuedToken), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn issue_token(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(operator): ApiPath<String>,
    ApiJson(body): ApiJson<IssueToken>,
) -> Result<impl IntoResponse, AppError> {
    let (record, secret) = state
        .app
        .issue_token(&actor, operator_id(&operator)?, &body.name, body.expires_at)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(IssuedToken {
            record,
            token: secret.expose().to_owned(),
        }),
    ))
}

/// Revoke a token at once (your own, or anyone's as admin).
#[utoipa::path(delete, path = "/api/v1/tokens/{token}", tag = "operators",
    params(("token" = String, Path, description = "token id (`tok_…`)")),
    responses((status = 200, body = ApiToken), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(token): ApiPath<String>,
) -> Result<axum::Json<ApiToken>, AppError> {
    let id: TokenId = token
        .parse()
        .map_err(|_| AppError::not_found("token", &token))?;
    Ok(axum::Json(state.app.revoke_token(&actor, id).await?))
}
