//! The keyring: tenants' data keys, unwrapped on demand and cached.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_core::audit::{Provenance, action};
use gatehouse_core::audit_key::AuditKeyStore;
use gatehouse_core::clock::Clock;
use gatehouse_core::id::TenantId;
use gatehouse_core::keys::TenantKey;
use gatehouse_core::store::{StoreError, TenantKeyStore};
use zeroize::Zeroizing;

use crate::{DataKey, KeyProvider, VaultError};

/// How many wrapped keys rotation reads per page.
const ROTATION_PAGE: u32 = 500;

/// Seals and opens tenants' data with their data keys.
pub struct Keyring {
    provider: Arc<dyn KeyProvider>,
    keys: Arc<dyn TenantKeyStore>,
    audit_keys: Option<Arc<dyn AuditKeyStore>>,
    totp_secrets: Option<Arc<dyn gatehouse_core::signin::SignInStore>>,
    ttl: Duration,
    cache: Mutex<HashMap<TenantId, (DataKey, Instant)>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("provider", &self.provider)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// One tenant's data key, for sealing and opening many values without
/// asking the keyring each time (see [`Keyring::sealer`]). Values are
/// interchangeable with [`Keyring::seal`] and [`Keyring::open`]. Hold it
/// only for the work at hand: it keeps the key past the cache's TTL, and
/// past the tenant's deletion.
#[derive(Debug, Clone)]
pub struct TenantSealer {
    tenant: TenantId,
    key: DataKey,
}

impl TenantSealer {
    /// The tenant whose key this is.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Associated data binding a value to its tenant and purpose.
    fn aad(&self, context: &str) -> Vec<u8> {
        format!("gatehouse/v1\u{0}{}\u{0}{context}", self.tenant).into_bytes()
    }

    /// Seals `plaintext`; opening needs the same `context`.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        self.key.seal(&self.aad(context), plaintext)
    }

    /// Opens a value sealed for this tenant with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.key.open(&self.aad(context), sealed)
    }

    /// A 32-byte key for `purpose` (such as `scim-blind-index`), derived
    /// from the tenant's data key with HMAC-SHA-256 (a PRF), so it is never
    /// the data key itself and each purpose gets its own. It changes only
    /// when the data key does (KEK rotation rewraps, it does not change
    /// data keys), and it is shredded with the tenant.
    pub fn derive_key(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        use hmac::digest::KeyInit;
        use hmac::{Hmac, Mac};
        // A key shorter than the block is zero-padded by HMAC itself, so
        // padding it here gives the same MAC without a fallible call.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(self.key.expose());
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new(&(*block).into());
        mac.update(&self.aad(&format!("derive:{purpose}")));
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }
}

/// What a rotation rewraps to, and who is recorded as doing it.
struct Target<'a> {
    /// The KEK made active.
    active: &'a str,
    /// The time of each rewrap.
    clock: &'a dyn Clock,
    /// Who rotates.
    by: &'a Provenance,
}

/// Where a KEK rotation stands, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationProgress {
    /// Keys looked at so far.
    pub seen: u64,
    /// Of those, rewrapped.
    pub rewrapped: u64,
}

/// What a KEK rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The KEK now active.
    pub active_kek: String,
    /// Data keys rewrapped under it.
    pub rewrapped: u64,
    /// Data keys that already were.
    pub already_current: u64,
    /// Data keys destroyed (tenant deleted) while the rotation ran.
    pub vanished: u64,
    /// Audit log signing keys rewrapped under it.
    pub audit_keys_rewrapped: u64,
    /// Operators' TOTP secrets rewrapped under it.
    pub totp_secrets_rewrapped: u64,
    /// Old KEK versions removed from the provider afterwards.
    pub retired: Vec<String>,
}

impl Keyring {
    /// A keyring over `provider`, reading wrapped keys from `keys`, keeping
    /// unwrapped keys for at most `ttl`.
    pub fn new(
        provider: Arc<dyn KeyProvider>,
        keys: Arc<dyn TenantKeyStore>,
        ttl: Duration,
    ) -> Self {
        Self {
            provider,
            keys,
            audit_keys: None,
            totp_secrets: None,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Also rewraps the audit log's signing keys from `keys` when rotating
    /// the KEK (and keeps the KEKs they use from being retired).
    pub fn with_audit_keys(mut self, keys: Arc<dyn AuditKeyStore>) -> Self {
        self.audit_keys = Some(keys);
        self
    }

    /// Also rewraps operators' TOTP secrets from `secrets` when rotating
    /// the KEK (and keeps the KEKs they use from being retired).
    pub fn with_totp_secrets(
        mut self,
        secrets: Arc<dyn gatehouse_core::signin::SignInStore>,
    ) -> Self {
        self.totp_secrets = Some(secrets);
        self
    }

    /// The provider holding the KEKs.
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, (DataKey, Instant)>> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new data key for a new tenant: the record to store with the tenant.
    pub async fn new_tenant_key(
        &self,
        tenant: TenantId,
        clock: &dyn Clock,
    ) -> Result<TenantKey, VaultError> {
        let (dek, wrapped) = self.provider.generate(tenant).await?;
        self.cache().insert(tenant, (dek, Instant::now()));
        Ok(TenantKey {
            tenant_id: tenant,
            wrapped,
            created_at: clock.now(),
            rewrapped_at: None,
        })
    }

    async fn data_key(&self, tenant: TenantId) -> Result<DataKey, VaultError> {
        if let Some((key, loaded)) = self.cache().get(&tenant)
            && loaded.elapsed() < self.ttl
        {
            return Ok(key.clone());
        }
        let record = match self.keys.get_tenant_key(tenant).await {
            Ok(record) => record,
            Err(StoreError::NotFound(_)) => {
                self.forget(tenant);
                return Err(VaultError::KeyDestroyed(tenant));
            }
            Err(err) => return Err(err.into()),
        };
        let key = self.provider.unwrap(tenant, &record.wrapped).await?;
        self.cache().insert(tenant, (key.clone(), Instant::now()));
        Ok(key)
    }

    /// Seals `plaintext` for `tenant`; `context` names what it is
    /// (`secret:ninjaone.client-secret`), and opening needs the same context.
    pub async fn seal(
        &self,
        tenant: TenantId,
        context: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        self.sealer(tenant).await?.seal(context, plaintext)
    }

    /// Opens a value sealed by [`Keyring::seal`] with the same tenant and context.
    pub async fn open(
        &self,
        tenant: TenantId,
        context: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        self.sealer(tenant).await?.open(context, sealed)
    }

    /// `tenant`'s data key, fetched once for many values: bulk work (the
    /// audit sequencer, exports) seals and opens without a lookup per value.
    /// `KeyDestroyed` if the tenant was deleted.
    pub async fn sealer(&self, tenant: TenantId) -> Result<TenantSealer, VaultError> {
        Ok(TenantSealer {
            tenant,
            key: self.data_key(tenant).await?,
        })
    }

    /// Drops the cached data key of `tenant` (after deleting it).
    pub fn forget(&self, tenant: TenantId) {
        self.cache().remove(&tenant);
    }

    /// Creates a new KEK and rewraps every tenant's data key under it,
    /// without re-encrypting any data. With `retire`, KEK versions no key
    /// uses any more are then removed from the provider. An interrupted run
    /// leaves every key readable (under the old KEK or the new one); running
    /// again rotates once more and rewraps every key.
    ///
    /// Each rewrap queues its record (`key.rewrapped` in the tenant's log,
    /// `audit.key.rewrapped` in the system log) by `by` in its own
    /// transaction; the caller records the rotation as a whole
    /// (`keys.kek.rotated`) from the report.
    pub async fn rotate_kek(
        &self,
        clock: &dyn Clock,
        by: &Provenance,
        retire: bool,
        progress: &mut (dyn FnMut(RotationProgress) + Send),
    ) -> Result<RotationReport, VaultError> {
        let active = self.provider.rotate().await?;
        let mut report = RotationReport {
            active_kek: active.clone(),
            rewrapped: 0,
            already_current: 0,
            vanished: 0,
            audit_keys_rewrapped: 0,
            totp_secrets_rewrapped: 0,
            retired: Vec::new(),
        };
        let mut state = RotationProgress {
            seen: 0,
            rewrapped: 0,
        };
        let target = Target {
            active: &active,
            clock,
            by,
        };
        self.sweep(&target, &mut report, &mut state, progress, true)
            .await?;
        let mut in_use = self
            .rewrap_installation_keys(&target, &mut report, &mut state)
            .await?;
        if retire {
            // A node that wrapped a new tenant's key under the old KEK just
            // before the rotation may have stored it after the sweep listed
            // the keys: sweep again before deciding what is unused.
            self.sweep(&target, &mut report, &mut state, progress, false)
                .await?;
            in_use.extend(
                self.rewrap_installation_keys(&target, &mut report, &mut state)
                    .await?,
            );
            let mut after = None;
            loop {
                let page = self.keys.list_tenant_keys(after, ROTATION_PAGE).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.tenant_id);
                in_use.extend(page.into_iter().map(|k| k.wrapped.kek_id));
            }
            report.retired = self.provider.retire(&in_use).await?;
        }
        Ok(report)
    }

    /// Rewraps the installation's own keys (the audit signing keys and the
    /// operators' TOTP secrets, where configured) not under the target
    /// KEK; returns the KEK ids they use afterwards.
    async fn rewrap_installation_keys(
        &self,
        target: &Target<'_>,
        report: &mut RotationReport,
        state: &mut RotationProgress,
    ) -> Result<BTreeSet<String>, VaultError> {
        let mut in_use = BTreeSet::new();
        if let Some(audit_keys) = &self.audit_keys {
            in_use.extend(
                crate::audit_signer::rewrap_audit_keys(
                    self.provider.as_ref(),
                    audit_keys,
                    target.active,
                    target.clock,
                    target.by,
                    report,
                    state,
                )
                .await?,
            );
        }
        if let Some(secrets) = &self.totp_secrets {
            in_use.extend(
                crate::totp_secrets::rewrap_totp_secrets(
                    self.provider.as_ref(),
                    secrets,
                    target.active,
                    target.clock,
                    target.by,
                    report,
                    state,
                )
                .await?,
            );
        }
        Ok(in_use)
    }

    /// Rewraps every key not under `active`, in pages. Only the first sweep
    /// counts what it finds already current; a later one reports just what
    /// it still had to rewrap.
    async fn sweep(
        &self,
        target: &Target<'_>,
        report: &mut RotationReport,
        state: &mut RotationProgress,
        progress: &mut (dyn FnMut(RotationProgress) + Send),
        first: bool,
    ) -> Result<(), VaultError> {
        let mut after = None;
        loop {
            let page = self.keys.list_tenant_keys(after, ROTATION_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.tenant_id);
            for record in page {
                if first {
                    state.seen += 1;
                }
                if record.wrapped.kek_id == target.active {
                    if first {
                        report.already_current += 1;
                    }
                    continue;
                }
                let new = self
                    .provider
                    .rewrap(record.tenant_id, &record.wrapped)
                    .await?;
                let at = target.clock.now();
                let audit = target.by.at(at).record(
                    Some(record.tenant_id),
                    action::KEY_REWRAPPED,
                    record.tenant_id,
                    serde_json::json!({"from_kek": record.wrapped.kek_id, "to_kek": new.kek_id}),
                );
                match self
                    .keys
                    .rewrap_tenant_key(record.tenant_id, &record.wrapped.kek_id, &new, at, &[audit])
                    .await
                {
                    Ok(()) => {
                        report.rewrapped += 1;
                        state.rewrapped += 1;
                    }
                    Err(StoreError::NotFound(_)) => report.vanished += 1,
                    // Someone else rewrapped it meanwhile: it is current.
                    Err(StoreError::Stale(_)) => report.already_current += 1,
                    Err(err) => return Err(err.into()),
                }
            }
            progress(*state);
        }
        Ok(())
    }
}
