//! `POST /hooks/{source}/{tenant}`: inbound webhooks.
//!
//! Outside the API's bearer-token authentication: the signature (or the
//! sender's configured credential) is the authentication, checked by
//! [`Intake::receive`]. The body is read raw, because signatures are over
//! the exact bytes, up to [`MAX_HOOK_BODY_BYTES`]. The intake is reached
//! through an [`Extension`] that `serve` adds with [`with_intake`]; without
//! it every webhook is 404, as if no tenant had one.

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::hooks::{HookHeaders, Intake};
use crate::error::AppError;

pub use crate::app::hooks::MAX_HOOK_BODY_BYTES;

/// Serves webhooks through `intake`.
pub fn with_intake(router: Router, intake: Arc<Intake>) -> Router {
    router.layer(Extension(intake))
}

/// Receives one delivery: 202 accepted (a new event), 200 for a duplicate
/// or an ignored delivery, 400 malformed, 401 not verified, 404 unknown.
pub(super) async fn receive(
    intake: Option<Extension<Arc<Intake>>>,
    Path((source, tenant)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(Extension(intake)) = intake else {
        return AppError::NotFound {
            code: "hook_not_found",
            message: "no such webhook".into(),
        }
        .into_response();
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return AppError::BadRequest {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: "body_too_large",
                message: format!("a webhook body may be at most {MAX_HOOK_BODY_BYTES} bytes"),
            }
            .into_response();
        }
        Err(_) => {
            return AppError::BadRequest {
                status: StatusCode::BAD_REQUEST,
                code: "unreadable_body",
                message: "the request body could not be read".into(),
            }
            .into_response();
        }
    };
    let mut wanted = HookHeaders::default();
    for (name, value) in &headers {
        if let Ok(value) = value.to_str() {
            wanted.push(name.as_str(), value);
        }
    }
    match intake.receive(&source, &tenant, &wanted, &body).await {
        Ok(reply) => {
            let status = match reply.outcome {
                gatehouse_core::hooks::DeliveryOutcome::Accepted => StatusCode::ACCEPTED,
                _ => StatusCode::OK,
            };
            (status, axum::Json(reply)).into_response()
        }
        Err(err) => err.into_response(),
    }
}
