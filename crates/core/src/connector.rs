//! The connector directory: which external systems a tenant's actions reach.
//!
//! A [`ConnectorConfig`] names one system of one tenant: its kind (which
//! vendor), its base URL, non-secret settings (a company id, a client id, a
//! region, a customer's Entra tenant id) and the **names** of the tenant
//! secrets that hold its credentials. The credentials themselves stay in the
//! tenant's vault (sealed under its data key); a connector never holds them.
//!
//! An action that needs, say, an RMM resolves the connector of the client
//! tenant it works for and, failing that, the MSP's own (the tenant whose
//! slug is configured as `msp_tenant`): an MSP usually has one RMM for all
//! its clients, while a client's Microsoft 365 tenant is its own.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::audit::AuditRecord;
use crate::error::DomainError;
use crate::id::{ConnectorId, TenantId};
use crate::secret::SecretName;
use crate::store::StoreResult;

/// The audit actions of the connector directory (the tenant's log).
pub mod action {
    /// A tenant's connector was created or changed (never a credential).
    pub const CONNECTOR_SET: &str = "tenant.connector.set";
    /// A tenant's connector was removed.
    pub const CONNECTOR_DELETED: &str = "tenant.connector.deleted";
}

/// What kind of system a connector reaches, which decides the actions that
/// can use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorCategory {
    /// A PSA (companies, contracts, opportunities).
    Psa,
    /// An RMM (organizations, locations, agents).
    Rmm,
    /// Microsoft 365 through Microsoft Graph.
    Graph,
    /// A documentation platform.
    Docs,
    /// A SCIM 2.0 service provider.
    Scim,
}

impl ConnectorCategory {
    /// The category's name, as actions are prefixed (`psa.…`, `rmm.…`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Psa => "psa",
            Self::Rmm => "rmm",
            Self::Graph => "graph",
            Self::Docs => "docs",
            Self::Scim => "scim",
        }
    }
}

impl fmt::Display for ConnectorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The vendor a connector speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    /// ConnectWise PSA.
    ConnectWise,
    /// Autotask PSA.
    Autotask,
    /// HaloPSA.
    HaloPsa,
    /// NinjaOne RMM.
    NinjaOne,
    /// Datto RMM.
    DattoRmm,
    /// Microsoft Graph.
    Graph,
    /// IT Glue.
    ItGlue,
    /// Hudu.
    Hudu,
    /// A SCIM 2.0 application.
    Scim,
}

impl ConnectorKind {
    /// Every kind.
    pub const ALL: [Self; 9] = [
        Self::ConnectWise,
        Self::Autotask,
        Self::HaloPsa,
        Self::NinjaOne,
        Self::DattoRmm,
        Self::Graph,
        Self::ItGlue,
        Self::Hudu,
        Self::Scim,
    ];

    /// The kind's name as stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectWise => "connectwise",
            Self::Autotask => "autotask",
            Self::HaloPsa => "halopsa",
            Self::NinjaOne => "ninjaone",
            Self::DattoRmm => "dattormm",
            Self::Graph => "graph",
            Self::ItGlue => "itglue",
            Self::Hudu => "hudu",
            Self::Scim => "scim",
        }
    }

    /// What kind of system it is.
    pub fn category(self) -> ConnectorCategory {
        match self {
            Self::ConnectWise | Self::Autotask | Self::HaloPsa => ConnectorCategory::Psa,
            Self::NinjaOne | Self::DattoRmm => ConnectorCategory::Rmm,
            Self::Graph => ConnectorCategory::Graph,
            Self::ItGlue | Self::Hudu => ConnectorCategory::Docs,
            Self::Scim => ConnectorCategory::Scim,
        }
    }
}

impl FromStr for ConnectorKind {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                DomainError::invalid(
                    "kind",
                    format!("`{text}` is not one of {}", names.join(", ")),
                )
            })
    }
}

impl fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A connector's name within its tenant: 1–64 characters of `a-z`, `0-9`,
/// `.`, `_` and `-`, starting with a letter or digit (`ninjaone`, `psa`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", example = "ninjaone")]
pub struct ConnectorName(String);

impl ConnectorName {
    /// Validates and wraps a connector name.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let ok_len = (1..=64).contains(&text.len());
        let ok_first = text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_rest = text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if ok_len && ok_first && ok_rest {
            Ok(Self(text.to_owned()))
        } else {
            Err(DomainError::invalid(
                "connector name",
                "must be 1 to 64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter or digit",
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConnectorName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The longest base URL, in bytes.
const MAX_URL: usize = 2048;
/// The most bytes the settings may take as JSON.
pub const MAX_SETTINGS_BYTES: usize = 8 * 1024;
/// The most credentials a connector may name.
const MAX_SECRETS: usize = 16;

/// Checks a base URL: `http` or `https`, a host, no user info, query or
/// fragment (credentials belong in the vault, never in a URL).
fn check_url(url: &str) -> Result<(), DomainError> {
    let bad = |why: &str| DomainError::invalid("base_url", why.to_owned());
    if url.is_empty()
        || url.len() > MAX_URL
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("must be a URL of 1 to 2048 characters without spaces"));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("must start with https:// (or http:// for a local test system)"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad("must name a host"));
    }
    if authority.contains('@') {
        return Err(bad(
            "must not carry user info: put credentials in the tenant's secrets",
        ));
    }
    if url.contains('?') || url.contains('#') {
        return Err(bad(
            "must not carry a query or fragment: put credentials in the tenant's secrets",
        ));
    }
    Ok(())
}

/// Whether a settings key looks like it holds a credential.
fn secret_like(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "api_key",
        "apikey",
        "private",
        "credential",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Checks settings: a JSON object of at most [`MAX_SETTINGS_BYTES`], with
/// no key that names a credential (at any depth).
fn check_settings(settings: &Value) -> Result<(), DomainError> {
    fn walk(value: &Value) -> Option<String> {
        match value {
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                if secret_like(k) {
                    Some(k.clone())
                } else {
                    walk(v)
                }
            }),
            Value::Array(items) => items.iter().find_map(walk),
            _ => None,
        }
    }
    if !settings.is_object() {
        return Err(DomainError::invalid("settings", "must be a JSON object"));
    }
    if serde_json::to_vec(settings).map_or(usize::MAX, |b| b.len()) > MAX_SETTINGS_BYTES {
        return Err(DomainError::invalid(
            "settings",
            format!("must be at most {MAX_SETTINGS_BYTES} bytes of JSON"),
        ));
    }
    if let Some(key) = walk(settings) {
        return Err(DomainError::invalid(
            "settings",
            format!(
                "`{key}` looks like a credential: store it as a tenant secret and name it in `secrets`"
            ),
        ));
    }
    Ok(())
}

/// What a connector is to be, as an operator asks for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSpec {
    /// Its vendor.
    pub kind: ConnectorKind,
    /// Where its API is.
    pub base_url: String,
    /// Non-secret settings (a JSON object).
    pub settings: Value,
    /// Role (`client_secret`, `api_key`, …) → the tenant secret holding it.
    pub secrets: BTreeMap<String, SecretName>,
}

impl ConnectorSpec {
    /// Checks the URL, the settings and the secrets' roles.
    pub fn check(&self) -> Result<(), DomainError> {
        check_url(&self.base_url)?;
        check_settings(&self.settings)?;
        if self.secrets.len() > MAX_SECRETS {
            return Err(DomainError::invalid(
                "secrets",
                format!("at most {MAX_SECRETS} credentials"),
            ));
        }
        for role in self.secrets.keys() {
            let ok = (1..=64).contains(&role.len())
                && role
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(DomainError::invalid(
                    "secrets",
                    format!("`{role}` must be 1 to 64 characters of a-z, 0-9 or '_'"),
                ));
            }
        }
        Ok(())
    }
}

/// One connector of one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConnectorConfig {
    /// Its id.
    pub id: ConnectorId,
    /// The tenant it belongs to.
    pub tenant_id: TenantId,
    /// Its name within the tenant.
    pub name: ConnectorName,
    /// Its vendor.
    pub kind: ConnectorKind,
    /// What kind of system it is (from `kind`).
    pub category: ConnectorCategory,
    /// Where its API is.
    pub base_url: String,
    /// Non-secret settings.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Role → the name of the tenant secret holding that credential.
    #[schema(value_type = BTreeMap<String, String>)]
    pub secrets: BTreeMap<String, SecretName>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// 1 when created, incremented on every change.
    pub version: i64,
}

impl ConnectorConfig {
    /// A new connector, checked.
    pub fn new(
        tenant_id: TenantId,
        name: ConnectorName,
        spec: ConnectorSpec,
        now: OffsetDateTime,
    ) -> Result<Self, DomainError> {
        spec.check()?;
        Ok(Self {
            id: ConnectorId::generate(now),
            tenant_id,
            name,
            kind: spec.kind,
            category: spec.kind.category(),
            base_url: spec.base_url,
            settings: spec.settings,
            secrets: spec.secrets,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }

    /// This connector changed to `spec` at `now` (same id, next version).
    pub fn changed(&self, spec: ConnectorSpec, now: OffsetDateTime) -> Result<Self, DomainError> {
        spec.check()?;
        Ok(Self {
            kind: spec.kind,
            category: spec.kind.category(),
            base_url: spec.base_url,
            settings: spec.settings,
            secrets: spec.secrets,
            updated_at: now,
            version: self.version + 1,
            ..self.clone()
        })
    }

    /// A setting as text, if it is set to a string.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings.get(key)?.as_str()
    }
}

/// Storage of the connector directory. Every mutation writes its audit
/// records in the same transaction.
#[async_trait]
pub trait ConnectorStore: Send + Sync {
    /// The tenant's connectors, by name.
    async fn list_connectors(&self, tenant: TenantId) -> StoreResult<Vec<ConnectorConfig>>;
    /// The tenant's connector called `name`.
    async fn get_connector(
        &self,
        tenant: TenantId,
        name: &ConnectorName,
    ) -> StoreResult<ConnectorConfig>;
    /// Stores a connector: inserts version 1 (`Conflict` if the name is
    /// taken), or replaces version `v - 1` with version `v` (`Stale` if it
    /// changed meanwhile).
    async fn put_connector(
        &self,
        connector: &ConnectorConfig,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// Removes the tenant's connector called `name`.
    async fn delete_connector(
        &self,
        tenant: TenantId,
        name: &ConnectorName,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(url: &str, settings: Value) -> ConnectorSpec {
        ConnectorSpec {
            kind: ConnectorKind::NinjaOne,
            base_url: url.into(),
            settings,
            secrets: BTreeMap::new(),
        }
    }

    #[test]
    fn urls_carry_no_credentials() {
        assert!(spec("https://eu.ninjarmm.com", json!({})).check().is_ok());
        assert!(spec("http://127.0.0.1:4010/api", json!({})).check().is_ok());
        for bad in [
            "",
            "ftp://x",
            "https://",
            "https://user:pw@host",
            "https://host/?key=1",
            "https://host/#x",
            "https://ho st",
        ] {
            assert!(spec(bad, json!({})).check().is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_are_an_object_without_credentials() {
        assert!(
            spec("https://h", json!({"client_id": "abc", "region": "eu"}))
                .check()
                .is_ok()
        );
        assert!(spec("https://h", json!([1])).check().is_err());
        let err = spec("https://h", json!({"nested": {"Client_Secret": "x"}}))
            .check()
            .unwrap_err();
        assert!(err.to_string().contains("Client_Secret"), "{err}");
        assert!(spec("https://h", json!({"api_key": "x"})).check().is_err());
    }

    #[test]
    fn kinds_round_trip_and_fall_in_their_category() {
        for kind in ConnectorKind::ALL {
            assert_eq!(kind.as_str().parse::<ConnectorKind>().unwrap(), kind);
        }
        assert_eq!(ConnectorKind::HaloPsa.category(), ConnectorCategory::Psa);
        assert_eq!(ConnectorKind::DattoRmm.category(), ConnectorCategory::Rmm);
        assert_eq!(ConnectorKind::Hudu.category(), ConnectorCategory::Docs);
        assert!("jira".parse::<ConnectorKind>().is_err());
        assert!(ConnectorName::parse("ninja-one.eu").is_ok());
        assert!(ConnectorName::parse("Ninja").is_err());
        assert!(ConnectorName::parse("").is_err());
    }
}
