//! The key-encryption-key provider interface.

use std::collections::BTreeSet;
use std::fmt::Debug;

use async_trait::async_trait;
use gatehouse_core::id::TenantId;
use gatehouse_core::keys::WrappedKey;

use crate::{DataKey, VaultError};

/// Holds the key-encryption keys (KEKs) and wraps and unwraps tenants' data
/// keys with them. Implementations bind each wrapped key to its tenant
/// where the service allows it.
#[async_trait]
pub trait KeyProvider: Send + Sync + Debug {
    /// A short name: `local`, `vault-transit`.
    fn kind(&self) -> &'static str;

    /// A new data key for `tenant`, in the clear and wrapped by the active KEK.
    async fn generate(&self, tenant: TenantId) -> Result<(DataKey, WrappedKey), VaultError>;

    /// Unwraps a data key.
    async fn unwrap(&self, tenant: TenantId, wrapped: &WrappedKey) -> Result<DataKey, VaultError>;

    /// Rewraps a data key under the active KEK (without the caller ever
    /// seeing it, where the provider allows).
    async fn rewrap(
        &self,
        tenant: TenantId,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError>;

    /// Creates a new KEK version and makes it the active one; returns its id.
    async fn rotate(&self) -> Result<String, VaultError>;

    /// The id of the active KEK.
    async fn active_kek(&self) -> Result<String, VaultError>;

    /// Removes KEK versions that are neither active nor in `in_use`;
    /// returns the ids removed. Providers that cannot remove versions
    /// remove none.
    async fn retire(&self, in_use: &BTreeSet<String>) -> Result<Vec<String>, VaultError> {
        let _ = in_use;
        Ok(Vec::new())
    }
}
