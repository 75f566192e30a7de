//! Secrets an MSP stores for a tenant, such as connector credentials.
//! The store only ever sees them sealed under the tenant's data key.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::DomainError;
use crate::id::TenantId;

/// A secret's name within its tenant: 1–128 characters of `a-z`, `0-9`,
/// `.`, `_` and `-`, starting with a letter or digit (e.g. `ninjaone.client-secret`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._-]{0,127}$", example = "ninjaone.client-secret")]
pub struct SecretName(String);

impl SecretName {
    /// Validates and wraps a secret name.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let ok_len = (1..=128).contains(&text.len());
        let ok_first = text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_rest = text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if ok_len && ok_first && ok_rest {
            Ok(Self(text.to_owned()))
        } else {
            Err(DomainError::invalid(
                "secret name",
                "must be 1 to 128 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// What is known about a stored secret without opening it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SecretMeta {
    /// The tenant the secret belongs to.
    pub tenant_id: TenantId,
    /// The secret's name.
    pub name: SecretName,
    /// Incremented on every overwrite.
    pub version: i64,
    /// When it was first stored.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was last overwritten.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A secret as the store holds it: sealed bytes (see the vault crate for the format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The secret's metadata.
    pub meta: SecretMeta,
    /// The AEAD-sealed value.
    pub sealed: Vec<u8>,
}
