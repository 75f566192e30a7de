//! The one error every connector returns.

use std::time::Duration;

/// Why a call to an external system failed, and whether retrying can help.
///
/// Messages never carry secrets: no header values, no query strings, no
/// request bodies (a body may hold a password).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectorError {
    /// May pass: a timeout, no connection, 429, 502/503/504. Retry, waiting
    /// at least `retry_after` when the system said so.
    #[error("{system}: {message}")]
    Retryable {
        /// The system (`connectwise`, `graph`, …).
        system: &'static str,
        /// What happened.
        message: String,
        /// The system's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The credentials were refused (401, 403, a token request refused).
    /// Retrying will not help until someone fixes the credentials.
    #[error("{system}: authentication failed: {message}")]
    Auth {
        /// The system.
        system: &'static str,
        /// The HTTP status: 401 (the credentials or token were not accepted:
        /// a fresh token may help), 403 (not allowed: it will not), or the
        /// token endpoint's refusal. `None` when no status applies.
        status: Option<u16>,
        /// What the system said.
        message: String,
    },
    /// The system answered, and retrying will not change its answer
    /// (400, 404 on an update, 409, 422, or an answer we cannot read).
    #[error("{system}: {message}")]
    Rejected {
        /// The system.
        system: &'static str,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// What happened, with an excerpt of the system's answer.
        message: String,
    },
    /// The connector is configured wrongly (a bad URL, a missing setting).
    #[error("{system}: configuration: {message}")]
    Config {
        /// The system.
        system: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl ConnectorError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable { .. })
    }

    /// The wait the system asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Retryable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status the system answered with, when the error is a
    /// rejection or a refusal with a status.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Rejected { status, .. } | Self::Auth { status, .. } => *status,
            _ => None,
        }
    }

    /// Whether the system answered 401: the token (or the credentials) was
    /// not accepted, so fetching a new token and trying once more may help.
    /// A 403 is not this: the caller is known and not allowed.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            Self::Auth {
                status: Some(401),
                ..
            }
        )
    }
}
