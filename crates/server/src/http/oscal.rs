//! `/api/v1/tenants/{tenant}/audit/oscal`: a tenant's audit facts as an
//! OSCAL assessment-results document.

use axum::extract::State;
use gatehouse_oscal::Period;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::IntoParams;

use super::ApiState;
use super::extract::{ApiPath, ApiQuery, Auth};
use crate::app::TenantRef;
use crate::error::{AppError, ErrorBody};

/// The period of an export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Runs started at or after this instant (RFC 3339).
    pub since: Option<String>,
    /// Runs started before this instant (RFC 3339).
    pub until: Option<String>,
}

/// An RFC 3339 instant given as `field` (a query parameter); `Invalid` naming the field and the expected form otherwise.
fn parse_instant(field: &str, text: &str) -> Result<OffsetDateTime, AppError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|err| {
        AppError::Invalid(format!(
            "`{field}` must be an RFC 3339 instant such as 2026-11-01T00:00:00Z, not `{text}`: {err}"
        ))
    })
}

/// The tenant's workflow runs started in the period, with every fact the
/// audit log holds of them and the log's signed checkpoints, as an OSCAL
/// 1.1.3 assessment-results document (valid against the NIST 1.2.3 schema).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/audit/oscal", tag = "audit",
    params(("tenant" = String, Path, description = "tenant id or slug"), ExportQuery),
    responses((status = 200, description = "the OSCAL assessment-results document", body = Object),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn export_oscal(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<axum::Json<gatehouse_oscal::Document>, AppError> {
    let period = Period {
        since: query
            .since
            .as_deref()
            .map(|t| parse_instant("since", t))
            .transpose()?,
        until: query
            .until
            .as_deref()
            .map(|t| parse_instant("until", t))
            .transpose()?,
    };
    let document = state
        .app
        .export_oscal(&actor, &TenantRef::parse(&tenant), period)
        .await?;
    Ok(axum::Json(document))
}
