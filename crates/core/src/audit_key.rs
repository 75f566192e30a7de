//! The stored form of the audit log's checkpoint signing key.
//!
//! The key is an Ed25519 key. Its public half is stored in the clear (it is
//! published at `/api/v1/audit/public-key`); its private half, the 32-byte
//! seed, is stored only wrapped by the key-encryption key (KEK), exactly as
//! tenants' data keys are (see [`crate::keys`]). At most one key is active
//! (not retired) at a time.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::keys::WrappedKey;
use crate::store::StoreResult;

/// One signing key of the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSigningKey {
    /// The C2SP signed-note key name, e.g. `gatehouse.example/audit`.
    pub name: String,
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
    /// The 32-byte Ed25519 seed, wrapped by the KEK (never in the clear).
    pub wrapped: WrappedKey,
    /// When the key was created.
    pub created_at: OffsetDateTime,
    /// When it was last rewrapped under a new KEK.
    pub rewrapped_at: Option<OffsetDateTime>,
    /// When it stopped signing; `None` for the active key.
    pub retired_at: Option<OffsetDateTime>,
}

/// The audit log's wrapped signing keys.
#[async_trait]
pub trait AuditKeyStore: Send + Sync {
    /// Stores a new active key; `Conflict` if an active key already exists
    /// (another node created one first: read it with
    /// [`AuditKeyStore::active_audit_key`]).
    /// `audit` (the record of the creation) is queued in the same transaction.
    async fn insert_audit_key(
        &self,
        key: &AuditSigningKey,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// The active key; `NotFound` if none was created yet.
    async fn active_audit_key(&self) -> StoreResult<AuditSigningKey>;
    /// Every key, active and retired, oldest first.
    async fn list_audit_keys(&self) -> StoreResult<Vec<AuditSigningKey>>;
    /// Replaces the wrapped seed of the key with `public_key` if it is still
    /// wrapped by `expected_kek` (so two rotations racing never lose it);
    /// `Stale` otherwise, `NotFound` if there is no such key.
    async fn rewrap_audit_key(
        &self,
        public_key: &[u8; 32],
        expected_kek: &str,
        wrapped: &WrappedKey,
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
}
