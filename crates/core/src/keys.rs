//! The stored form of a tenant's data key: wrapped (encrypted) by a
//! key-encryption key (KEK) that lives outside the database.

use time::OffsetDateTime;

use crate::id::TenantId;

/// A data key wrapped under a KEK. `kek_id` names the provider and the KEK
/// version (`local:1`, `vault-transit:gatehouse:v3`), so rotation can tell
/// which keys still need rewrapping.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey {
    /// Which KEK (and version) wrapped the data key.
    pub kek_id: String,
    /// The wrapped data key, in the provider's format.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedKey")
            .field("kek_id", &self.kek_id)
            .field(
                "ciphertext",
                &format_args!("<{} bytes>", self.ciphertext.len()),
            )
            .finish()
    }
}

/// A tenant's data-key record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKey {
    /// Whose key it is.
    pub tenant_id: TenantId,
    /// The wrapped data key.
    pub wrapped: WrappedKey,
    /// When the data key was created.
    pub created_at: OffsetDateTime,
    /// When it was last rewrapped under a new KEK.
    pub rewrapped_at: Option<OffsetDateTime>,
}
