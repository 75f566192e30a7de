//! Operators' TOTP secrets under KEK rotation.
//!
//! A TOTP secret is a data key like a tenant's, wrapped by the KEK and
//! bound to a reserved identity ([`TOTP_OWNER`]) that no tenant can have.
//! A KEK rotation rewraps them with the tenants' keys, and a rotation that
//! retires old KEK versions keeps every version a secret still uses, so
//! rotating never locks an operator out of the console.

use std::sync::Arc;

use gatehouse_core::audit::{Provenance, action};
use gatehouse_core::clock::Clock;
use gatehouse_core::id::TenantId;
use gatehouse_core::signin::SignInStore;
use gatehouse_core::store::StoreError;
use serde_json::json;

use crate::keyring::{RotationProgress, RotationReport};
use crate::{KeyProvider, VaultError};

/// The identity TOTP secrets' wrapping is bound to: a tenant id
/// [`TenantId::generate`] never returns (ids are UUIDv7).
pub const TOTP_OWNER: &str = "ten_00000000000000000000000001";

/// [`TOTP_OWNER`] as an id.
pub fn totp_owner() -> Result<TenantId, VaultError> {
    TOTP_OWNER
        .parse()
        .map_err(|_| VaultError::Crypto("the TOTP secrets' owner id does not parse".into()))
}

/// Rewraps every TOTP secret not under `active`; returns the KEK ids the
/// secrets use afterwards (to keep them from being retired).
pub(crate) async fn rewrap_totp_secrets(
    provider: &dyn KeyProvider,
    secrets: &Arc<dyn SignInStore>,
    active: &str,
    clock: &dyn Clock,
    by: &Provenance,
    report: &mut RotationReport,
    state: &mut RotationProgress,
) -> Result<Vec<String>, VaultError> {
    let owner = totp_owner()?;
    for (operator, wrapped) in secrets.totp_secrets().await? {
        if wrapped.kek_id == active {
            continue;
        }
        let new = provider.rewrap(owner, &wrapped).await?;
        let audit = by.at(clock.now()).record(
            None,
            action::TOTP_REWRAPPED,
            operator,
            json!({ "from_kek": wrapped.kek_id, "to_kek": new.kek_id }),
        );
        match secrets
            .rewrap_totp_secret(operator, &wrapped.kek_id, &new, &[audit])
            .await
        {
            Ok(()) => {
                report.totp_secrets_rewrapped += 1;
                state.rewrapped += 1;
            }
            // Re-enrolled or rewrapped by another rotation meanwhile.
            Err(StoreError::Stale(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(secrets
        .totp_secrets()
        .await?
        .into_iter()
        .map(|(_, wrapped)| wrapped.kek_id)
        .collect())
}
