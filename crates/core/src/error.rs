//! Errors of the domain layer: input that breaks a rule. They carry the
//! field and the reason so the HTTP edge can show them to the user as they are.

use crate::tenant::TenantState;

/// A domain rule was broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A value failed validation.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field, as the user named it (`slug`, `display_name`, …).
        field: &'static str,
        /// Why, in words a user can act on.
        reason: String,
    },
    /// A tenant lifecycle transition that the current state does not allow.
    #[error("cannot {action} a tenant that is {from}")]
    InvalidTransition {
        /// The tenant's current state.
        from: TenantState,
        /// What was attempted (`suspend`, `delete`, …).
        action: &'static str,
    },
    /// The operating system could not supply randomness.
    #[error("the system random number generator failed: {0}")]
    Entropy(String),
}

impl DomainError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), DomainError> {
    getrandom::fill(buf).map_err(|e| DomainError::Entropy(e.to_string()))
}
