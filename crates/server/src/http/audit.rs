//! `/api/v1/audit/…`: the audit log's public surface.

use axum::extract::State;

use super::ApiState;
use crate::app::AuditPublicKey;
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
