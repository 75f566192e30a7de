//! The audit log's checkpoint signing key, kept by the vault.
//!
//! The key is an Ed25519 key whose 32-byte seed is a data key like any
//! tenant's: drawn from the operating system's randomness by the
//! [`KeyProvider`] (or by Vault Transit), stored only wrapped by the KEK,
//! rewrapped by `gatehouse keys rotate`. Wrapping binds it to a reserved
//! identity ([`AUDIT_KEY_OWNER`]) that no tenant can have, so a wrapped
//! tenant key cannot be passed off as the audit key or the reverse (with the
//! local key file; Transit ignores the binding).
//!
//! [`AuditSigner::open`] creates the key on first use and afterwards
//! unwraps it; the unwrapped key lives only inside the signer and is zeroed
//! when it is dropped. `Debug` shows the public half only.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_audit::note::{Ed25519Signer, KeyId, KeyName, SignError, Signer, VerifierKey};
use gatehouse_core::audit::{Provenance, action};
use gatehouse_core::audit_key::{AuditKeyStore, AuditSigningKey};
use gatehouse_core::clock::Clock;
use gatehouse_core::id::TenantId;
use gatehouse_core::store::StoreError;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use crate::keyring::{RotationProgress, RotationReport};
use crate::{KeyProvider, VaultError};

/// The identity the audit key's wrapping is bound to: the all-zero tenant
/// id, which [`TenantId::generate`] never returns (ids are UUIDv7).
pub const AUDIT_KEY_OWNER: &str = "ten_00000000000000000000000000";

fn owner() -> Result<TenantId, VaultError> {
    AUDIT_KEY_OWNER
        .parse()
        .map_err(|_| VaultError::Crypto("the audit key's owner id does not parse".into()))
}

/// Signs the audit log's checkpoints with the key kept by the vault.
pub struct AuditSigner {
    inner: Ed25519Signer,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("verifier_key", &self.inner.verifier_key().to_string())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl AuditSigner {
    /// The active signing key named `name`: unwrapped if it exists, created
    /// (random seed, wrapped by `provider`, stored) if not. When two nodes
    /// create it at once, one wins and both sign with its key.
    ///
    /// An existing key with another name is refused: the name is part of
    /// the key id, so renaming would silently change who auditors trust.
    pub async fn open(
        provider: &dyn KeyProvider,
        keys: &dyn AuditKeyStore,
        name: KeyName,
        clock: &dyn Clock,
    ) -> Result<Self, VaultError> {
        let record = match keys.active_audit_key().await {
            Ok(record) => record,
            Err(StoreError::NotFound(_)) => {
                match Self::create(provider, keys, &name, clock).await {
                    Ok(signer) => return Ok(signer),
                    Err(VaultError::Store(StoreError::Conflict(_))) => {
                        keys.active_audit_key().await?
                    }
                    Err(err) => return Err(err),
                }
            }
            Err(err) => return Err(err.into()),
        };
        if record.name != name.as_str() {
            return Err(VaultError::AuditKeyName {
                stored: record.name,
                configured: name.to_string(),
            });
        }
        Self::unwrap(provider, name, &record).await
    }

    async fn create(
        provider: &dyn KeyProvider,
        keys: &dyn AuditKeyStore,
        name: &KeyName,
        clock: &dyn Clock,
    ) -> Result<Self, VaultError> {
        let (seed, wrapped) = provider.generate(owner()?).await?;
        let inner = Ed25519Signer::from_seed(name.clone(), seed.expose());
        let record = AuditSigningKey {
            name: name.to_string(),
            public_key: inner.verifier_key().public_key(),
            wrapped,
            created_at: clock.now(),
            rewrapped_at: None,
            retired_at: None,
        };
        let verifier = inner.verifier_key();
        let audit = Provenance::system("audit key creation", record.created_at).record(
            None,
            action::AUDIT_KEY_CREATED,
            &record.name,
            json!({
                "verifier_key": verifier.to_string(),
                "kek": record.wrapped.kek_id,
            }),
        );
        keys.insert_audit_key(&record, &[audit]).await?;
        tracing::info!(
            verifier_key = %inner.verifier_key(),
            "created the audit log's signing key"
        );
        Ok(Self { inner })
    }

    async fn unwrap(
        provider: &dyn KeyProvider,
        name: KeyName,
        record: &AuditSigningKey,
    ) -> Result<Self, VaultError> {
        let seed = provider.unwrap(owner()?, &record.wrapped).await?;
        let inner = Ed25519Signer::from_seed(name, seed.expose());
        if inner.verifier_key().public_key() != record.public_key {
            return Err(VaultError::Decrypt(
                "the audit signing key does not match its stored public key",
            ));
        }
        Ok(Self { inner })
    }

    /// The key auditors verify checkpoints with.
    pub fn verifier(&self) -> VerifierKey {
        self.inner.verifier_key()
    }
}

#[async_trait]
impl Signer for AuditSigner {
    fn key_name(&self) -> &KeyName {
        self.inner.key_name()
    }

    fn key_id(&self) -> KeyId {
        self.inner.key_id()
    }

    fn verifier_key(&self) -> VerifierKey {
        self.inner.verifier_key()
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.inner.sign(message).await
    }
}

/// Rewraps every audit signing key not yet under `active` (the KEK a
/// rotation just made active), counting into `report` and `state` like
/// tenants' keys, each with its `audit.key.rewrapped` record by `by`.
/// Returns the KEK ids the keys use afterwards.
pub(crate) async fn rewrap_audit_keys(
    provider: &dyn KeyProvider,
    keys: &Arc<dyn AuditKeyStore>,
    active: &str,
    clock: &dyn Clock,
    by: &Provenance,
    report: &mut RotationReport,
    state: &mut RotationProgress,
) -> Result<Vec<String>, VaultError> {
    let owner = owner()?;
    for record in keys.list_audit_keys().await? {
        if record.wrapped.kek_id == active {
            continue;
        }
        let new = provider.rewrap(owner, &record.wrapped).await?;
        let at = clock.now();
        let audit = by.at(at).record(
            None,
            action::AUDIT_KEY_REWRAPPED,
            &record.name,
            json!({
                "public_key": BASE64.encode(record.public_key),
                "from_kek": record.wrapped.kek_id,
                "to_kek": new.kek_id,
            }),
        );
        match keys
            .rewrap_audit_key(
                &record.public_key,
                &record.wrapped.kek_id,
                &new,
                at,
                &[audit],
            )
            .await
        {
            Ok(()) => {
                report.audit_keys_rewrapped += 1;
                state.rewrapped += 1;
            }
            // Another rotation rewrapped it meanwhile.
            Err(StoreError::Stale(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(keys
        .list_audit_keys()
        .await?
        .into_iter()
        .map(|k| k.wrapped.kek_id)
        .collect())
}
