//! Errors of the key layer.

use gatehouse_core::id::TenantId;
use gatehouse_core::store::StoreError;

/// What went wrong with keys or encryption.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The tenant's data key no longer exists: the tenant was deleted and its
    /// data crypto-shredded.
    #[error("the data key of tenant {0} has been destroyed")]
    KeyDestroyed(TenantId),
    /// A sealed value or wrapped key failed authentication: it was altered,
    /// belongs to another tenant or purpose, or the key is wrong.
    #[error("decryption failed: {0}")]
    Decrypt(&'static str),
    /// The wrapped key names a KEK this provider does not hold.
    #[error("unknown key-encryption key `{0}`")]
    UnknownKek(String),
    /// The key file is missing, unreadable, malformed or too permissive.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The external key service (Vault) is unreachable or failing; retry later.
    #[error("key service unavailable: {0}")]
    Provider(String),
    /// The external key service refused the request (permissions, a bad or
    /// altered ciphertext, a missing key): retrying will not help.
    #[error("key service refused: {0}")]
    Refused(String),
    /// The operating system could not supply randomness or encryption failed.
    #[error("crypto failure: {0}")]
    Crypto(String),
    /// The stored audit signing key has another name than the configured
    /// one (the name is part of the key id auditors trust).
    #[error("the audit signing key is named `{stored}`, but `{configured}` is configured")]
    AuditKeyName {
        /// The name stored with the key.
        stored: String,
        /// The name asked for.
        configured: String,
    },
    /// Reading or writing wrapped keys failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
