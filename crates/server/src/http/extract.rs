//! Extractors that turn requests into domain values, and every way that can
//! fail into an [`AppError`] with the one JSON error shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiState;
use crate::app::Actor;
use crate::error::AppError;

/// The authenticated actor. Rejects with 401 before anything else is read.
#[derive(Debug)]
pub struct Auth(pub Actor);

/// The actor a middleware authenticated already (see `gate` in `http`).
#[derive(Debug, Clone)]
pub(crate) struct Authenticated(pub Actor);

impl FromRequestParts<ApiState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, AppError> {
        if let Some(Authenticated(actor)) = parts.extensions.remove::<Authenticated>() {
            return Ok(Auth(actor));
        }
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(AppError::Unauthenticated(
                "this route needs `Authorization: Bearer <token>`",
            ))?;
        let value = header
            .to_str()
            .map_err(|_| AppError::Unauthenticated("the Authorization header is not valid text"))?;
        let token = value
            // The scheme is case-insensitive (RFC 9110, section 11.1).
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(AppError::Unauthenticated(
                "the Authorization header must be `Bearer <token>`",
            ))?;
        state.app.authenticate(token).await.map(Auth)
    }
}

/// A JSON body, with syntax, type, media-type and size errors mapped to the
/// error shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    let detail = rejection.body_text();
    match rejection {
        JsonRejection::JsonDataError(_) => AppError::Invalid(strip_axum_prefix(&detail)),
        JsonRejection::JsonSyntaxError(_) => AppError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code: "malformed_json",
            message: strip_axum_prefix(&detail),
        },
        JsonRejection::MissingJsonContentType(_) => AppError::BadRequest {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message: "send the body as JSON with `Content-Type: application/json`".into(),
        },
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => AppError::BadRequest {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "body_too_large",
            message: "the request body is larger than this server accepts".into(),
        },
        other => AppError::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code: "unreadable_body",
            message: strip_axum_prefix(&other.body_text()),
        },
    }
}

/// axum's messages start with a generic sentence; keep serde's part.
fn strip_axum_prefix(text: &str) -> String {
    match text.split_once(": ") {
        Some((head, tail)) if head.starts_with("Failed to") => tail.to_owned(),
        _ => text.to_owned(),
    }
}

/// Query parameters, with errors mapped to the error shape.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> AppError {
    AppError::Invalid(format!(
        "invalid query: {}",
        strip_axum_prefix(&rejection.body_text())
    ))
}

/// Path parameters, with errors (such as bad percent-encoding) mapped to
/// the error shape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(AppError::BadRequest {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_path",
                message: strip_axum_prefix(&rejection.body_text()),
            }),
        }
    }
}
