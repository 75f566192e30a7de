//! Identity lifecycle in the server (issue 6): people's lifecycle events
//! in, the desired grants of the tenant's policy against what the target
//! systems hold, and the difference executed through the engine.
//!
//! - [`IdentityCore`] holds what both the API and the engine's actions
//!   need: sealing (people, events, policies, elevations and revocations
//!   are tenant data, sealed under the tenant's key), the target systems
//!   (a tenant's SCIM and Graph connectors) and applying operations.
//! - [`service`]: lifecycle events in, reconciliation, the policy, drift,
//!   just-in-time elevation (needs the engine, so it lives on the `App`).
//! - [`actions`]: `identity.apply`, `identity.elevation_grant`,
//!   `identity.elevation_end`, run by the engine.

pub mod actions;
pub mod scim_push;
pub mod service;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::directory::{AccountChange as Change, AccountRef, Holdings};
use gatehouse_core::clock::Clock;
use gatehouse_core::id::TenantId;
use gatehouse_core::identity::{StoredElevation, StoredPerson, StoredRevocation};
use gatehouse_core::store::Store;
use std::collections::BTreeSet;

use gatehouse_identity::{
    AccountChange, Elevation, Entitlement, EventKind, Held, LifecycleEvent, Person, PersonKind,
    Policy,
};
use gatehouse_vault::{Keyring, TenantSealer};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::actions::{AccountSystem, Directory};

/// The purpose of the key that derives people's ids from their keys.
const PERSON_ID_PURPOSE: &str = "identity-person-id";

/// Why identity work failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The input is not acceptable; the message says why.
    #[error("{0}")]
    Invalid(String),
    /// No such thing.
    #[error("{0} not found")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] gatehouse_core::store::StoreError),
    /// A key could not be used.
    #[error("{0}")]
    Keys(String),
    /// A target system could not be read or changed.
    #[error("{system}: {error}")]
    System {
        /// The system.
        system: String,
        /// What it said.
        error: ConnectorError,
    },
    /// The systems could not be listed (the message says why).
    #[error("{0}")]
    Systems(String),
}

/// A lifecycle event as the API takes it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// Unique per tenant: sending the same id again changes nothing.
    pub id: String,
    /// The person's key (an HR employee number, an e-mail).
    pub person: String,
    /// `hire`, `update` (transfer, role change), `leave_of_absence`,
    /// `return`, `terminate`, `contract_end`.
    pub kind: String,
    /// Who says so (default `api`).
    #[serde(default)]
    pub source: Option<String>,
    /// When it happened, RFC 3339 (default: now).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub occurred_at: Option<OffsetDateTime>,
    /// Canonical attributes to set (`null` clears one).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub attributes: BTreeMap<String, Option<String>>,
    /// `client_user`, `msp_staff` or `contractor`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub person_kind: Option<PersonKind>,
    /// Role templates assigned by name (replaces the earlier set).
    #[serde(default)]
    pub roles: Option<BTreeSet<String>>,
}

impl EventInput {
    /// The lifecycle event, or why not (an unknown kind).
    pub fn into_event(self, now: OffsetDateTime) -> Result<LifecycleEvent, String> {
        let kind = EventKind::parse(&self.kind).ok_or_else(|| {
            format!(
                "kind `{}` is not one of hire, update, leave_of_absence, return, terminate, contract_end",
                self.kind
            )
        })?;
        Ok(LifecycleEvent {
            id: self.id,
            person: self.person,
            kind,
            source: self.source.unwrap_or_else(|| "api".into()),
            occurred_at: self.occurred_at.unwrap_or(now),
            attributes: self.attributes,
            person_kind: self.person_kind,
            roles: self.roles,
        })
    }
}

/// Tuning.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// How long a leaver's revocation may take before a human is told
    /// exactly what remains (it keeps being retried).
    pub revocation_deadline: Duration,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            revocation_deadline: Duration::from_secs(15 * 60),
        }
    }
}

/// What a live or past elevation holds, sealed in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElevationDoc {
    /// The person's key.
    pub person: String,
    /// The elevation (policy id).
    pub elevation: String,
    /// The system.
    pub system: String,
    /// What it grants.
    pub entitlement: Entitlement,
    /// How long, in seconds.
    pub duration_secs: u64,
    /// Why it is needed.
    pub justification: String,
    /// The workflow instance that grants and ends it.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Why it ended early, and who ended it.
    #[serde(default)]
    pub ended_by: Option<String>,
}

/// What remains of a revocation, sealed in its record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationDoc {
    /// The person's key.
    pub person: String,
    /// What is still to do, as `system: change`, with the last error.
    pub remaining: Vec<Remaining>,
    /// Attempts made so far.
    pub attempts: u32,
}

/// One operation a revocation still has to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remaining {
    /// The system.
    pub system: String,
    /// The change.
    pub change: AccountChange,
    /// The last error.
    pub error: String,
}

/// What the API and the engine's identity actions share.
pub struct IdentityCore {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keyring: Arc<Keyring>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) directory: Arc<Directory>,
    pub(crate) config: IdentityConfig,
}

impl std::fmt::Debug for IdentityCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityCore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The sealing context of a person, an event, …
pub(crate) fn context(kind: &str, id: &str) -> String {
    format!("identity:{kind}:{id}")
}

/// SHA-256 of an event id (how the store deduplicates events).
pub(crate) fn event_digest(id: &str) -> Vec<u8> {
    Sha256::digest(id.as_bytes()).to_vec()
}

impl IdentityCore {
    /// The core over `store`, sealing with `keyring`, reaching systems
    /// through `directory`.
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        directory: Arc<Directory>,
        config: IdentityConfig,
    ) -> Self {
        Self {
            store,
            keyring,
            clock,
            directory,
            config,
        }
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The tenant's sealer (its data key).
    pub async fn sealer(&self, tenant: TenantId) -> Result<TenantSealer, IdentityError> {
        self.keyring
            .sealer(tenant)
            .await
            .map_err(|e| IdentityError::Keys(format!("the tenant's data key: {e}")))
    }

    /// A person's id: `per_` and a keyed digest of their key, so the store
    /// never sees the key (often an e-mail address or employee number).
    pub fn person_id(sealer: &TenantSealer, key: &str) -> String {
        let derived = sealer.derive_key(PERSON_ID_PURPOSE);
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(derived.as_ref())
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
        mac.update(key.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("per_{}", hex::encode(&digest[..16]))
    }

    pub(crate) fn seal<T: Serialize>(
        sealer: &TenantSealer,
        context: &str,
        value: &T,
    ) -> Result<Vec<u8>, IdentityError> {
        let plain =
            serde_json::to_vec(value).map_err(|e| IdentityError::Keys(format!("encoding: {e}")))?;
        sealer
            .seal(context, &plain)
            .map_err(|e| IdentityError::Keys(format!("sealing: {e}")))
    }

    pub(crate) fn open<T: DeserializeOwned>(
        sealer: &TenantSealer,
        context: &str,
        sealed: &[u8],
    ) -> Result<T, IdentityError> {
        let plain = sealer
            .open(context, sealed)
            .map_err(|e| IdentityError::Keys(format!("opening {context}: {e}")))?;
        serde_json::from_slice(&plain)
            .map_err(|e| IdentityError::Keys(format!("stored {context} is unreadable: {e}")))
    }

    /// A person and their stored row.
    pub async fn person(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
        id: &str,
    ) -> Result<Option<(StoredPerson, Person)>, IdentityError> {
        let Some(stored) = self.store.identity_person(tenant, id).await? else {
            return Ok(None);
        };
        let person = Self::open(sealer, &context("person", id), &stored.sealed)?;
        Ok(Some((stored, person)))
    }

    /// The tenant's policy and its version (an empty policy, version 0,
    /// when none was set).
    pub async fn policy(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
    ) -> Result<(u64, String, Policy), IdentityError> {
        let Some(stored) = self.store.identity_policy(tenant).await? else {
            return Ok((0, String::new(), Policy::default()));
        };
        let text: String = Self::open(sealer, &context("policy", "current"), &stored.sealed)?;
        let policy = Policy::parse(&text).map_err(|e| {
            IdentityError::Invalid(format!("the stored policy no longer parses: {e}"))
        })?;
        Ok((stored.version, text, policy))
    }

    /// A person's elevations, opened.
    pub async fn elevations(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
        person: Option<&str>,
    ) -> Result<Vec<(StoredElevation, ElevationDoc)>, IdentityError> {
        let stored = self.store.identity_elevations(tenant, person).await?;
        stored
            .into_iter()
            .map(|e| {
                let doc = Self::open(sealer, &context("elevation", &e.id), &e.sealed)?;
                Ok((e, doc))
            })
            .collect()
    }

    /// The live elevations of a person, as the rules take them.
    pub async fn live_elevations(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
        person: &str,
    ) -> Result<Vec<Elevation>, IdentityError> {
        Ok(self
            .elevations(tenant, sealer, Some(person))
            .await?
            .into_iter()
            .filter(|(e, _)| e.state == "active")
            .filter_map(|(e, doc)| {
                Some(Elevation {
                    grant: e.id,
                    elevation: doc.elevation,
                    system: doc.system,
                    entitlement: doc.entitlement,
                    expires_at: e.expires_at?,
                })
            })
            .collect())
    }

    /// The tenant's account systems, by name.
    pub async fn systems(
        &self,
        tenant: TenantId,
    ) -> Result<BTreeMap<String, AccountSystem>, IdentityError> {
        let systems = self
            .directory
            .account_systems(tenant)
            .await
            .map_err(|e| IdentityError::Systems(e.to_string()))?;
        Ok(systems.into_iter().map(|s| (s.name.clone(), s)).collect())
    }

    /// Who a person is to the systems.
    pub fn account_ref(id: &str, person: &Person) -> AccountRef {
        AccountRef {
            external_id: id.to_owned(),
            user_name: person.user_name(),
            display_name: person.display_name(),
            given_name: person.attribute("given_name").map(str::to_owned),
            family_name: person.attribute("family_name").map(str::to_owned),
            email: person.attribute("email").map(str::to_owned),
        }
    }

    /// What a system holds, as the rules compare it.
    pub fn held(holdings: &Holdings) -> Held {
        Held {
            active: holdings.active,
            entitlements: holdings
                .groups
                .iter()
                .map(|g| Entitlement::Group(g.clone()))
                .chain(
                    holdings
                        .licenses
                        .iter()
                        .map(|l| Entitlement::License(l.clone())),
                )
                .chain(holdings.roles.iter().map(|r| Entitlement::Role(r.clone())))
                .collect(),
        }
    }

    /// The connector's form of a change.
    pub fn change(change: &AccountChange) -> Change {
        match change {
            AccountChange::Create => Change::CreateAccount,
            AccountChange::Enable => Change::EnableAccount,
            AccountChange::Disable => Change::DisableAccount,
            AccountChange::RevokeSessions => Change::RevokeSessions,
            AccountChange::Add(Entitlement::Group(g)) => Change::AddGroup(g.clone()),
            AccountChange::Add(Entitlement::License(l)) => Change::AddLicense(l.clone()),
            AccountChange::Add(Entitlement::Role(r)) => Change::AddRole(r.clone()),
            AccountChange::Remove(Entitlement::Group(g)) => Change::RemoveGroup(g.clone()),
            AccountChange::Remove(Entitlement::License(l)) => Change::RemoveLicense(l.clone()),
            AccountChange::Remove(Entitlement::Role(r)) => Change::RemoveRole(r.clone()),
        }
    }

    /// What every system holds for a person (systems that cannot be read
    /// answer their error).
    pub async fn holdings(
        systems: &BTreeMap<String, AccountSystem>,
        account: &AccountRef,
    ) -> BTreeMap<String, Result<Option<Holdings>, ConnectorError>> {
        let reads = systems.iter().map(|(name, system)| async move {
            (name.clone(), system.directory.holdings(account).await)
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    /// The revocation record of a person, opened.
    pub async fn revocation(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
        person: &str,
    ) -> Result<Option<(StoredRevocation, RevocationDoc)>, IdentityError> {
        let Some(stored) = self.store.identity_revocation(tenant, person).await? else {
            return Ok(None);
        };
        let doc = Self::open(sealer, &context("revocation", person), &stored.sealed)?;
        Ok(Some((stored, doc)))
    }
}
