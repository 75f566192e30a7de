//! Reading a tenant entry's details back: the leaf holds them sealed under
//! the tenant's data key (`sealed`), bound to the entry's index; the system
//! log holds them in clear (`details`); an entry sequenced after its
//! tenant's key was destroyed holds neither (`details_withheld`).
//!
//! [`open_details`] opens one leaf; bulk readers (browsing, OSCAL export)
//! fetch the tenant's key once with `Keyring::sealer` and call
//! [`open_details_with`] for each leaf, which does no I/O.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gatehouse_core::audit::details_context;
use gatehouse_core::id::TenantId;
use gatehouse_vault::{Keyring, TenantSealer, VaultError};
use serde::Deserialize;
use serde_json::Value;

/// The leaf member holding a tenant entry's sealed details (base64).
pub const SEALED: &str = "sealed";
/// The leaf member holding details in clear (system log only).
pub const DETAILS: &str = "details";
/// The leaf member saying why a tenant entry holds no details.
pub const WITHHELD: &str = "details_withheld";
/// Why details are withheld when the tenant's key was destroyed before
/// its records were sequenced.
pub const KEY_DESTROYED: &str = "tenant key destroyed";

/// An entry's details, as far as they can be read.
#[derive(Debug, Clone, PartialEq)]
pub enum Details {
    /// A system log entry: its details are in the leaf, in clear.
    Clear(Value),
    /// A tenant entry: its details, opened with the tenant's key.
    Opened(Value),
    /// The entry was written without details; the reason (such as
    /// [`KEY_DESTROYED`]).
    Withheld(String),
    /// The details are sealed, but the tenant's key has been destroyed
    /// (the tenant was deleted): they can never be read again. The leaf
    /// still verifies.
    KeyDestroyed,
}

/// Why an entry's details could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DetailsError {
    /// The leaf is not an audit entry as the sequencer writes them.
    #[error("not an audit entry leaf: {0}")]
    Leaf(String),
    /// The sealed details belong to another tenant than the key given.
    #[error("entry {idx} belongs to tenant {entry}, not to {key}")]
    OtherTenant {
        /// The entry's index.
        idx: u64,
        /// The tenant named in the entry.
        entry: TenantId,
        /// The tenant whose key was given.
        key: TenantId,
    },
    /// Opening failed: the ciphertext was altered or moved from another
    /// entry, or the key service failed.
    #[error("the details of entry {idx} cannot be opened: {source}")]
    Open {
        /// The entry's index.
        idx: u64,
        /// Why.
        #[source]
        source: VaultError,
    },
}

/// What a leaf says about its details, before any key is used.
enum Parsed {
    Done(Details),
    Sealed {
        tenant: TenantId,
        idx: u64,
        sealed: Vec<u8>,
    },
}

fn leaf_error(what: impl Into<String>) -> DetailsError {
    DetailsError::Leaf(what.into())
}

/// The members of a leaf that say where its details are; the others are
/// skipped without being kept.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    log: Option<Cow<'a, str>>,
    idx: Option<u64>,
    #[serde(borrow)]
    tenant_id: Option<Cow<'a, str>>,
    /// `Some(Null)` for `"details": null`, `None` when absent.
    #[serde(default, deserialize_with = "present")]
    details: Option<Value>,
    #[serde(borrow)]
    sealed: Option<Cow<'a, str>>,
    details_withheld: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn parse(entry_leaf: &str) -> Result<Parsed, DetailsError> {
    let fields: Fields<'_> =
        serde_json::from_str(entry_leaf).map_err(|e| leaf_error(e.to_string()))?;
    if let Some(details) = fields.details {
        return Ok(Parsed::Done(Details::Clear(details)));
    }
    if let Some(reason) = fields.details_withheld {
        return Ok(Parsed::Done(Details::Withheld(reason)));
    }
    let sealed = fields
        .sealed
        .ok_or_else(|| leaf_error(format!("no `{DETAILS}`, `{SEALED}` or `{WITHHELD}`")))?;
    let sealed = BASE64
        .decode(sealed.as_bytes())
        .map_err(|e| leaf_error(format!("`{SEALED}` is not base64: {e}")))?;
    let idx = fields.idx.ok_or_else(|| leaf_error("no `idx`"))?;
    let tenant_text = fields
        .tenant_id
        .ok_or_else(|| leaf_error("sealed details without a `tenant_id`"))?;
    if fields.log.as_deref() != Some(&*tenant_text) {
        return Err(leaf_error("sealed details outside their tenant's log"));
    }
    let tenant = tenant_text
        .parse()
        .map_err(|_| leaf_error(format!("`tenant_id` {tenant_text:?} is not a tenant id")))?;
    Ok(Parsed::Sealed {
        tenant,
        idx,
        sealed,
    })
}

fn open_with(sealer: &TenantSealer, idx: u64, sealed: &[u8]) -> Result<Details, DetailsError> {
    let clear = sealer
        .open(&details_context(idx), sealed)
        .map_err(|source| DetailsError::Open { idx, source })?;
    serde_json::from_slice(&clear)
        .map(Details::Opened)
        .map_err(|e| leaf_error(format!("entry {idx}: opened details are not JSON: {e}")))
}

/// The details of the entry whose leaf (canonical JSON) is `entry_leaf`,
/// opened with its tenant's key from `keyring` if they are sealed.
pub async fn open_details(keyring: &Keyring, entry_leaf: &str) -> Result<Details, DetailsError> {
    match parse(entry_leaf)? {
        Parsed::Done(details) => Ok(details),
        Parsed::Sealed {
            tenant,
            idx,
            sealed,
        } => match keyring.sealer(tenant).await {
            Ok(sealer) => open_with(&sealer, idx, &sealed),
            Err(VaultError::KeyDestroyed(_)) => Ok(Details::KeyDestroyed),
            Err(source) => Err(DetailsError::Open { idx, source }),
        },
    }
}

/// Like [`open_details`], with the tenant's key already fetched (for many
/// entries of one log; no I/O). `None` means the key is destroyed
/// (`Keyring::sealer` answered `KeyDestroyed`): sealed details are then
/// [`Details::KeyDestroyed`]. A key of another tenant than the entry's is
/// an error.
pub fn open_details_with(
    sealer: Option<&TenantSealer>,
    entry_leaf: &str,
) -> Result<Details, DetailsError> {
    match parse(entry_leaf)? {
        Parsed::Done(details) => Ok(details),
        Parsed::Sealed {
            tenant,
            idx,
            sealed,
        } => match sealer {
            Some(sealer) if sealer.tenant() == tenant => open_with(sealer, idx, &sealed),
            Some(sealer) => Err(DetailsError::OtherTenant {
                idx,
                entry: tenant,
                key: sealer.tenant(),
            }),
            None => Ok(Details::KeyDestroyed),
        },
    }
}
