//! The audit log's public key: what auditors verify checkpoints with.
//!
//! The key is public, so reading it needs no actor: it is served without a
//! token, like `/healthz` (see docs/audit.md, "The signing key").

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gatehouse_audit::note::Signer as _;
use gatehouse_vault::AuditSigner;
use serde::Serialize;
use utoipa::ToSchema;

use super::App;
use crate::error::AppError;

/// The audit log's checkpoint signing key, public half.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditPublicKey {
    /// The signed-note key name (also the checkpoints' origin line).
    #[schema(example = "gatehouse.example/audit")]
    pub name: String,
    /// The signed-note key ID, 8 hex digits.
    #[schema(example = "1f2e3d4c")]
    pub key_id: String,
    /// Always `ed25519`.
    #[schema(example = "ed25519")]
    pub algorithm: String,
    /// The 32-byte Ed25519 public key, standard base64.
    pub public_key: String,
    /// The C2SP verifier key: `<name>+<key ID>+base64(0x01 ‖ public key)`,
    /// as Go's `sumdb/note` and other transparency-log tools read it.
    pub verifier_key: String,
}

impl App {
    /// Uses `signer` for the audit log's checkpoints and publishes its key.
    pub fn with_audit_signer(mut self, signer: Arc<AuditSigner>) -> Self {
        self.audit_signer = Some(signer);
        self
    }

    /// The audit log's public key; `Unavailable` when no signer is wired.
    pub fn audit_public_key(&self) -> Result<AuditPublicKey, AppError> {
        let signer = self.audit_signer.as_ref().ok_or_else(|| {
            AppError::Unavailable("the audit log's signing key is not loaded on this node".into())
        })?;
        let verifier = signer.verifier_key();
        Ok(AuditPublicKey {
            name: verifier.name().to_string(),
            key_id: verifier.key_id().to_string(),
            algorithm: "ed25519".into(),
            public_key: BASE64.encode(verifier.public_key()),
            verifier_key: verifier.to_string(),
        })
    }
}
