//! Per-tenant encryption with customer-managed keys.
//!
//! Envelope encryption: every tenant has its own 256-bit data key (DEK);
//! tenant data is sealed with it using AES-256-GCM. The DEK is stored only
//! *wrapped* by a key-encryption key (KEK) that a [`KeyProvider`] holds
//! outside the database: a local key file by default ([`LocalKeyFile`]),
//! or HashiCorp Vault's Transit engine ([`VaultTransit`]).
//!
//! - Rotating the KEK rewraps the small DEK records; no tenant data is
//!   re-encrypted ([`Keyring::rotate_kek`]).
//! - Deleting a tenant deletes its wrapped DEK; without it nothing the
//!   tenant ever sealed can be opened again (crypto-shredding).
//! - Every sealed value is bound to its tenant and purpose through AEAD
//!   associated data, so a value copied to another tenant or another field
//!   fails to open instead of leaking.
//!
//! Unwrapped DEKs are cached in memory for a bounded time (the key cache
//! TTL) and zeroed when dropped; the TTL is how long another node may still
//! open a deleted tenant's data.

mod audit_signer;
mod data_key;
mod error;
mod keyring;
mod local;
mod provider;
mod totp_secrets;
mod transit;

pub use audit_signer::{AUDIT_KEY_OWNER, AuditSigner};
pub use data_key::{DataKey, SEALED_OVERHEAD};
pub use error::VaultError;
pub use keyring::{Keyring, RotationProgress, RotationReport, TenantSealer};
pub use local::LocalKeyFile;
pub use provider::KeyProvider;
pub use totp_secrets::{TOTP_OWNER, totp_owner};
pub use transit::{VaultTransit, VaultTransitConfig};
