//! The error type of the application layer and its one mapping to HTTP.
//!
//! Every error reaches clients as
//! `{"error":{"code":"tenant_not_found","message":"…"}}`. Codes are stable
//! (clients may match on them; `docs/errors.md` lists them); messages are
//! for people. Internal details (database errors, key-service failures) are
//! logged with the request id and never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::DomainError;
use gatehouse_core::store::StoreError;
use gatehouse_vault::VaultError;
use serde::Serialize;
use utoipa::ToSchema;

/// What went wrong, in terms a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No usable credentials.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Authenticated, but the role does not allow this; names the roles that would.
    #[error("this needs the {0} role")]
    Forbidden(String),
    /// The actor may not do this at all, whatever its role (for example
    /// Gatehouse itself deciding an approval, which must be a person's).
    #[error("{0}")]
    NotAllowed(String),
    /// The thing does not exist or is not visible to the caller.
    #[error("{message}")]
    NotFound {
        /// Stable code, such as `tenant_not_found`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The request conflicts with the current state.
    #[error("{message}")]
    Conflict {
        /// Stable code, such as `tenant_slug_taken`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The request is well-formed but a value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The request could not be read (syntax, media type, size).
    #[error("{message}")]
    BadRequest {
        /// The HTTP status (400, 413, 415).
        status: StatusCode,
        /// Stable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// A dependency (the key service) is unavailable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an infrastructure failure; details are logged only.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error's code and message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code.
    #[schema(example = "tenant_not_found")]
    pub code: String,
    /// Human-readable explanation.
    #[schema(example = "no tenant `acme`")]
    pub message: String,
}

impl AppError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::NotAllowed(_) => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest { status, .. } => *status,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) | Self::NotAllowed(_) => "forbidden",
            Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::BadRequest { code, .. } => code,
            Self::Invalid(_) => "invalid_input",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// What the client is told.
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable(_) => {
                "a service Gatehouse depends on is unavailable; try again shortly".into()
            }
            Self::Internal(_) => {
                "internal error; the server log has the details under this request's id".into()
            }
            other => other.to_string(),
        }
    }

    /// A not-found error for `entity` named `what`.
    pub fn not_found(entity: &'static str, what: impl std::fmt::Display) -> Self {
        let code = match entity {
            "tenant" => "tenant_not_found",
            "operator" => "operator_not_found",
            "token" => "token_not_found",
            "secret" => "secret_not_found",
            "workflow" => "workflow_not_found",
            "approval" => "approval_not_found",
            "task" => "task_not_found",
            "connector" => "connector_not_found",
            "tenant group" => "tenant_group_not_found",
            _ => "not_found",
        };
        Self::NotFound {
            code,
            message: format!("no {entity} `{what}`"),
        }
    }
}

impl From<DomainError> for AppError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::Invalid { .. } => Self::Invalid(err.to_string()),
            DomainError::InvalidTransition { .. } => Self::Conflict {
                code: "invalid_transition",
                message: err.to_string(),
            },
            DomainError::Entropy(_) => Self::Internal(err.to_string()),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(entity) => Self::NotFound {
                code: match entity {
                    "tenant" => "tenant_not_found",
                    "operator" => "operator_not_found",
                    "token" => "token_not_found",
                    "secret" => "secret_not_found",
                    "tenant group" => "tenant_group_not_found",
                    _ => "not_found",
                },
                message: format!("{entity} not found"),
            },
            StoreError::Conflict(message) => Self::Conflict {
                code: "conflict",
                message,
            },
            StoreError::Invalid(err) => err.into(),
            StoreError::Stale(what) => Self::Conflict {
                code: "edit_conflict",
                message: format!(
                    "the {what} was changed by someone else meanwhile; read it again and retry"
                ),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<VaultError> for AppError {
    fn from(err: VaultError) -> Self {
        match err {
            VaultError::KeyDestroyed(tenant) => Self::Conflict {
                code: "tenant_deleted",
                message: format!("tenant {tenant} is deleted and its data destroyed"),
            },
            VaultError::Provider(_) => Self::Unavailable(err.to_string()),
            VaultError::Refused(_) => Self::Internal(err.to_string()),
            VaultError::Store(store) => store.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(code = self.code(), detail = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), detail = %self, "request refused");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().into(),
                message: self.public_message(),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
