//! Integration tests of the key layer against real stores: envelope
//! encryption, tenant binding, crypto-shredding, KEK rotation, and both key
//! providers (the local key file and Vault Transit, through the emulator).
//!
//! Every case runs on SQLite, and on PostgreSQL when
//! `GATEHOUSE_TEST_DATABASE_URL` is set; each gets a database (or schema)
//! and a key file of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::TenantId;
use gatehouse_core::keys::WrappedKey;
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::{Store, StoreError};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantSlug, TenantState};
use gatehouse_sandbox::{TransitOp, VaultTransitEmulator};
use gatehouse_store::testing::TestDatabase;
use gatehouse_vault::{
    DataKey, KeyProvider, Keyring, LocalKeyFile, RotationProgress, SEALED_OVERHEAD, VaultError,
    VaultTransit, VaultTransitConfig,
};
use time::OffsetDateTime;

/// Long enough that no cached key expires during a test.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

const ROOT_TOKEN: &str = "root-token";

/// 64 random-looking ASCII bytes that occur nowhere by chance.
const DISTINCTIVE: &[u8; 64] = b"Qx7#vR2!mZp9@Lw4$Tk8^Hn3&Jc6*Fb1(Yd5)Ge0-Su8+Oa2=Ni7?Wq3%Ek9~Pm6";

/// One test's world: a fresh database, a fake clock, and a directory for
/// the local key file.
struct Env {
    db: TestDatabase,
    clock: FakeClock,
    dir: tempfile::TempDir,
}

impl Env {
    fn new(db: TestDatabase) -> Self {
        Self {
            db,
            clock: FakeClock::default(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        &self.db.store
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("kek.json")
    }

    /// Opens (creating on first use) this test's local key file, as a
    /// process starting up would.
    fn local(&self) -> Arc<LocalKeyFile> {
        Arc::new(LocalKeyFile::open_or_create(&self.key_file()).unwrap().0)
    }

    /// A keyring with an empty cache over `provider`.
    fn keyring(&self, provider: Arc<dyn KeyProvider>) -> Keyring {
        Keyring::new(provider, self.db.store.clone(), CACHE_TTL)
    }

    /// Creates and stores an active tenant with a data key from `keyring`.
    async fn tenant(&self, keyring: &Keyring, slug: &str) -> Tenant {
        let now = self.clock.now();
        let tenant = Tenant::new(
            TenantSlug::parse(slug).unwrap(),
            DisplayName::parse(&format!("{slug} Ltd")).unwrap(),
            Region::parse("eu").unwrap(),
            TenantState::Active,
            now,
        )
        .unwrap();
        let key = keyring
            .new_tenant_key(tenant.id, &self.clock)
            .await
            .unwrap();
        assert_eq!(key.tenant_id, tenant.id);
        assert_eq!(key.created_at, now);
        self.store()
            .insert_tenant(&tenant, &key, &[])
            .await
            .unwrap();
        // Ids are time-ordered: a millisecond apart, tenants list in creation order.
        self.clock.advance(time::Duration::milliseconds(1));
        tenant
    }

    /// Seals `plaintext` as secret `name` of `tenant` and stores it;
    /// returns the sealed bytes.
    async fn put(
        &self,
        keyring: &Keyring,
        tenant: TenantId,
        name: &str,
        plaintext: &[u8],
    ) -> Vec<u8> {
        let sealed = keyring
            .seal(tenant, &context(name), plaintext)
            .await
            .unwrap();
        self.store()
            .put_secret(tenant, &secret(name), &sealed, self.clock.now(), &[])
            .await
            .unwrap();
        sealed
    }

    /// The sealed bytes of a stored secret.
    async fn sealed(&self, tenant: TenantId, name: &str) -> Vec<u8> {
        self.store()
            .get_secret(tenant, &secret(name))
            .await
            .unwrap()
            .sealed
    }

    /// Reads secret `name` back from the store and opens it with `keyring`.
    async fn open(
        &self,
        keyring: &Keyring,
        tenant: TenantId,
        name: &str,
    ) -> Result<Vec<u8>, VaultError> {
        let sealed = self.sealed(tenant, name).await;
        keyring
            .open(tenant, &context(name), &sealed)
            .await
            .map(|plain| plain.to_vec())
    }

    async fn wrapped(&self, tenant: TenantId) -> WrappedKey {
        self.store().get_tenant_key(tenant).await.unwrap().wrapped
    }

    /// Every stored wrapped key, by tenant.
    async fn all_wrapped(&self) -> BTreeMap<TenantId, WrappedKey> {
        let keys = self.store().list_tenant_keys(None, 10_000).await.unwrap();
        keys.into_iter().map(|k| (k.tenant_id, k.wrapped)).collect()
    }

    /// Deletes `tenant` (destroying its key and secrets), as the server does.
    async fn delete(&self, tenant: &Tenant) {
        let mut doomed = tenant.clone();
        doomed.state = TenantState::Deleted;
        doomed.version += 1;
        doomed.updated_at = self.clock.now();
        self.store().delete_tenant(&doomed, &[]).await.unwrap();
    }
}

fn secret(name: &str) -> SecretName {
    SecretName::parse(name).unwrap()
}

fn context(name: &str) -> String {
    format!("secret:{name}")
}

/// The plaintext of secret `name` of tenant number `i` (distinct per secret).
fn plaintext(i: usize, name: &str) -> Vec<u8> {
    format!(
        "tenant {i} / {name} / {}",
        String::from_utf8_lossy(DISTINCTIVE)
    )
    .into_bytes()
}

/// The error of `result`, without ever printing a plaintext it might hold.
fn error<T>(result: Result<T, VaultError>) -> VaultError {
    match result {
        Ok(_) => panic!("expected an error, got a value"),
        Err(err) => err,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The raw bytes of the SQLite database and its `-wal` and `-shm` files
/// (those that exist), by file name.
fn sqlite_files(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        match std::fs::read(&file) {
            Ok(bytes) => files.push((file.display().to_string(), bytes)),
            // The WAL is removed when the last connection closes.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !suffix.is_empty() => {}
            Err(err) => panic!("reading {}: {err}", file.display()),
        }
    }
    files
}

fn found_in(files: &[(String, Vec<u8>)], needle: &[u8]) -> Option<String> {
    files
        .iter()
        .find(|(_, bytes)| contains(bytes, needle))
        .map(|(name, _)| name.clone())
}

fn vault_config(url: String, token: &str) -> VaultTransitConfig {
    VaultTransitConfig {
        addr: url,
        token: token.into(),
        mount: "transit".into(),
        key: "gatehouse".into(),
        namespace: None,
        ca_cert_pem: None,
    }
}

/// A provider that lets `rewraps_left` rewraps through and then fails, as a
/// rotation killed half-way would.
#[derive(Debug)]
struct Interrupting {
    inner: Arc<LocalKeyFile>,
    rewraps_left: AtomicUsize,
}

#[async_trait]
impl KeyProvider for Interrupting {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn generate(&self, tenant: TenantId) -> Result<(DataKey, WrappedKey), VaultError> {
        self.inner.generate(tenant).await
    }

    async fn unwrap(&self, tenant: TenantId, wrapped: &WrappedKey) -> Result<DataKey, VaultError> {
        self.inner.unwrap(tenant, wrapped).await
    }

    async fn rewrap(
        &self,
        tenant: TenantId,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError> {
        if self
            .rewraps_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(VaultError::Provider("simulated crash mid-rotation".into()));
        }
        self.inner.rewrap(tenant, wrapped).await
    }

    async fn rotate(&self) -> Result<String, VaultError> {
        self.inner.rotate().await
    }

    async fn active_kek(&self) -> Result<String, VaultError> {
        self.inner.active_kek().await
    }

    async fn retire(
        &self,
        in_use: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<String>, VaultError> {
        self.inner.retire(in_use).await
    }
}

/// A provider through which the world moves while a rotation runs: when
/// asked to rewrap `raced`'s key, another node rewraps and stores it first;
/// when asked to rewrap `doomed`'s key, the tenant is deleted first.
#[derive(Debug)]
struct Racing {
    inner: Arc<LocalKeyFile>,
    store: Arc<dyn Store>,
    at: OffsetDateTime,
    raced: TenantId,
    doomed: Mutex<Option<Tenant>>,
}

#[async_trait]
impl KeyProvider for Racing {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn generate(&self, tenant: TenantId) -> Result<(DataKey, WrappedKey), VaultError> {
        self.inner.generate(tenant).await
    }

    async fn unwrap(&self, tenant: TenantId, wrapped: &WrappedKey) -> Result<DataKey, VaultError> {
        self.inner.unwrap(tenant, wrapped).await
    }

    async fn rewrap(
        &self,
        tenant: TenantId,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError> {
        if tenant == self.raced {
            let theirs = self.inner.rewrap(tenant, wrapped).await?;
            self.store
                .rewrap_tenant_key(tenant, &wrapped.kek_id, &theirs, self.at, &[])
                .await?;
        }
        let doomed = {
            let mut slot = self.doomed.lock().unwrap();
            slot.take_if(|t| t.id == tenant)
        };
        if let Some(mut doomed) = doomed {
            doomed.state = TenantState::Deleted;
            doomed.version += 1;
            self.store.delete_tenant(&doomed, &[]).await?;
        }
        self.inner.rewrap(tenant, wrapped).await
    }

    async fn rotate(&self) -> Result<String, VaultError> {
        self.inner.rotate().await
    }

    async fn active_kek(&self) -> Result<String, VaultError> {
        self.inner.active_kek().await
    }

    async fn retire(
        &self,
        in_use: &std::collections::BTreeSet<String>,
    ) -> Result<Vec<String>, VaultError> {
        self.inner.retire(in_use).await
    }
}

mod cases {
    use super::*;

    pub async fn secrets_round_trip_and_are_bound_to_tenant_and_context(env: &Env) {
        let keyring = env.keyring(env.local());
        let a = env.tenant(&keyring, "tenant-a").await.id;
        let b = env.tenant(&keyring, "tenant-b").await.id;
        let ctx = context("psa.api-key");

        let sealed_a = keyring.seal(a, &ctx, DISTINCTIVE).await.unwrap();
        assert_eq!(sealed_a.len(), DISTINCTIVE.len() + SEALED_OVERHEAD);
        assert!(!contains(&sealed_a, DISTINCTIVE));
        assert_eq!(
            keyring.open(a, &ctx, &sealed_a).await.unwrap().as_slice(),
            DISTINCTIVE
        );
        let again = keyring.seal(a, &ctx, DISTINCTIVE).await.unwrap();
        assert_ne!(again, sealed_a, "every seal uses a fresh nonce");

        // The same plaintext for tenant B: its own key, its own ciphertext.
        let sealed_b = keyring.seal(b, &ctx, DISTINCTIVE).await.unwrap();
        assert_eq!(
            keyring.open(b, &ctx, &sealed_b).await.unwrap().as_slice(),
            DISTINCTIVE
        );

        // Bound to the tenant: neither opens as the other.
        for (owner, other, sealed) in [(a, b, &sealed_a), (b, a, &sealed_b)] {
            let err = error(keyring.open(other, &ctx, sealed).await);
            assert!(
                matches!(err, VaultError::Decrypt(_)),
                "{owner} as {other}: {err:?}"
            );
        }
        // Bound to the context.
        for wrong in [
            "secret:psa.api-key2",
            "secret:graph.client-secret",
            "",
            "psa.api-key",
        ] {
            let err = error(keyring.open(a, wrong, &sealed_a).await);
            assert!(
                matches!(err, VaultError::Decrypt(_)),
                "context {wrong:?}: {err:?}"
            );
        }
        // Any altered byte, or a truncation, is detected.
        for i in 0..sealed_a.len() {
            let mut tampered = sealed_a.clone();
            tampered[i] ^= 0x80;
            let err = error(keyring.open(a, &ctx, &tampered).await);
            assert!(
                matches!(err, VaultError::Decrypt(_)),
                "flipped byte {i}: {err:?}"
            );
        }
        for len in [0, 1, 13, SEALED_OVERHEAD - 1, sealed_a.len() - 1] {
            let err = error(keyring.open(a, &ctx, &sealed_a[..len]).await);
            assert!(
                matches!(err, VaultError::Decrypt(_)),
                "truncated to {len}: {err:?}"
            );
        }
        let mut extended = sealed_a.clone();
        extended.push(0);
        assert!(matches!(
            error(keyring.open(a, &ctx, &extended).await),
            VaultError::Decrypt(_)
        ));

        // Through the store and a keyring with an empty cache (the data key
        // is unwrapped from its stored record, as after a restart).
        env.put(&keyring, a, "psa.api-key", b"for a").await;
        env.put(&keyring, b, "psa.api-key", b"for b").await;
        env.put(&keyring, a, "empty", b"").await;
        let fresh = env.keyring(env.local());
        assert_eq!(env.open(&fresh, a, "psa.api-key").await.unwrap(), b"for a");
        assert_eq!(env.open(&fresh, b, "psa.api-key").await.unwrap(), b"for b");
        assert_eq!(env.open(&fresh, a, "empty").await.unwrap(), b"");
        assert_eq!(
            fresh.open(a, &ctx, &sealed_a).await.unwrap().as_slice(),
            DISTINCTIVE,
            "a value sealed before the restart"
        );
        assert!(matches!(
            error(fresh.open(b, &ctx, &sealed_a).await),
            VaultError::Decrypt(_)
        ));

        // A tenant without a stored key has nothing to open with.
        let stranger = TenantId::generate(env.clock.now());
        assert!(matches!(
            error(fresh.seal(stranger, &ctx, b"x").await),
            VaultError::KeyDestroyed(id) if id == stranger
        ));
        assert!(matches!(
            fresh.sealer(stranger).await,
            Err(VaultError::KeyDestroyed(id)) if id == stranger
        ));

        // A tenant's sealer (one key fetch for many values) is
        // interchangeable with the keyring, and as bound.
        let sealer = fresh.sealer(a).await.unwrap();
        assert_eq!(sealer.tenant(), a);
        assert_eq!(
            sealer.open(&ctx, &sealed_a).unwrap().as_slice(),
            DISTINCTIVE
        );
        let by_sealer = sealer.seal(&ctx, DISTINCTIVE).unwrap();
        assert_eq!(
            fresh.open(a, &ctx, &by_sealer).await.unwrap().as_slice(),
            DISTINCTIVE
        );
        assert!(matches!(
            sealer.open("audit:1", &by_sealer),
            Err(VaultError::Decrypt(_))
        ));
        assert!(matches!(
            fresh.sealer(b).await.unwrap().open(&ctx, &by_sealer),
            Err(VaultError::Decrypt(_))
        ));
        assert!(format!("{sealer:?}").contains("DataKey(<redacted>)"));
    }

    pub async fn plaintext_never_reaches_the_sqlite_file(env: &Env) {
        let local = env.local();
        let keyring = env.keyring(local.clone());
        let names = ["psa.api-key", "graph.client-secret"];
        let mut tenants = Vec::new();
        for i in 0..4 {
            let tenant = env.tenant(&keyring, &format!("tenant-{i}")).await.id;
            for name in names {
                let sealed = env.put(&keyring, tenant, name, &plaintext(i, name)).await;
                assert!(!contains(&sealed, DISTINCTIVE));
            }
            tenants.push(tenant);
        }

        // What the database holds, read back: sealed bytes only.
        let mut sealed_blobs = Vec::new();
        let mut data_keys = Vec::new();
        for (i, &tenant) in tenants.iter().enumerate() {
            for name in names {
                let sealed = env.sealed(tenant, name).await;
                assert!(!contains(&sealed, DISTINCTIVE), "{tenant}/{name}");
                assert!(!contains(&sealed, &plaintext(i, name)[..16]));
                assert_eq!(
                    keyring
                        .open(tenant, &context(name), &sealed)
                        .await
                        .unwrap()
                        .as_slice(),
                    plaintext(i, name)
                );
                sealed_blobs.push(sealed);
            }
            let record = env.store().get_tenant_key(tenant).await.unwrap();
            let dek = local.unwrap(tenant, &record.wrapped).await.unwrap();
            assert!(!contains(&record.wrapped.ciphertext, dek.expose()));
            data_keys.push(*dek.expose());
        }

        let Some(path) = env.db.sqlite_path() else {
            eprintln!("not SQLite: the stored values were checked, there is no file to scan");
            return;
        };
        let key_file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.key_file()).unwrap()).unwrap();
        let keks: Vec<Vec<u8>> = key_file["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kek| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(kek["key"].as_str().unwrap())
                    .unwrap()
            })
            .collect();
        assert_eq!(keks.len(), 1);
        assert_eq!(keks[0].len(), 32);
        let assert_clean = |files: &[(String, Vec<u8>)]| {
            // No plaintext, not even a 16-byte piece of one.
            for window in DISTINCTIVE.windows(16) {
                if let Some(file) = found_in(files, window) {
                    panic!(
                        "plaintext bytes {:?} found in {file}",
                        String::from_utf8_lossy(window)
                    );
                }
            }
            // No data key in the clear, nor the KEK that wraps them.
            for dek in &data_keys {
                assert_eq!(found_in(files, dek), None, "a data key is in the clear");
            }
            for kek in &keks {
                assert_eq!(found_in(files, kek), None, "the KEK is in the database");
            }
        };

        // While the store is open, everything committed is in the database
        // file or its WAL, and nothing is in flight.
        let files = sqlite_files(&path);
        // The scan can find things: every sealed value is there.
        for sealed in &sealed_blobs {
            assert!(
                found_in(&files, sealed).is_some(),
                "a stored sealed value was not found; is this the right file?"
            );
        }
        assert_clean(&files);

        // After closing. `close()` returns before SQLite's last connection
        // has checkpointed and removed the WAL (that happens on the driver's
        // worker thread), so the files may be caught in any state of that;
        // none of them may hold a secret.
        env.store().close().await;
        assert_clean(&sqlite_files(&path));
    }

    pub async fn deleting_a_tenant_crypto_shreds_everything_it_sealed(env: &Env) {
        let keyring = env.keyring(env.local());
        let a = env.tenant(&keyring, "tenant-a").await;
        let b = env.tenant(&keyring, "tenant-b").await;
        let names = ["psa.api-key", "graph.client-secret", "backup.passphrase"];
        for name in names {
            env.put(&keyring, a.id, name, &plaintext(0, name)).await;
            env.put(&keyring, b.id, name, &plaintext(1, name)).await;
        }
        let mut captured = Vec::new();
        for name in names {
            captured.push((name, env.sealed(a.id, name).await));
        }
        let a_wrapped = env.wrapped(a.id).await;
        let b_wrapped = env.wrapped(b.id).await;

        env.delete(&a).await;
        // On SQLite, the destroyed bytes are gone from the files on disk too,
        // the write-ahead log included, while the database is still open.
        if let Some(path) = env.db.sqlite_path() {
            let files = sqlite_files(&path);
            let everything: Vec<u8> = files.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
            assert!(
                contains(&everything, &b_wrapped.ciphertext),
                "the scan finds what is there"
            );
            assert!(
                !contains(&everything, &a_wrapped.ciphertext),
                "A's wrapped key left on disk"
            );
            for (name, sealed) in &captured {
                assert!(
                    !contains(&everything, sealed),
                    "A's sealed {name} left on disk"
                );
            }
        }
        assert!(matches!(
            env.store().get_tenant_key(a.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(env.store().list_secrets(a.id).await.unwrap().is_empty());
        // Until the cached data key is dropped (or its TTL passes), this
        // keyring can still open what it could before: that is why the
        // server forgets the key right after deleting the tenant.
        let (name, sealed) = &captured[0];
        assert_eq!(
            keyring
                .open(a.id, &context(name), sealed)
                .await
                .unwrap()
                .as_slice(),
            plaintext(0, name)
        );
        keyring.forget(a.id);

        let fresh = env.keyring(env.local());
        for (name, sealed) in &captured {
            for ring in [&keyring, &fresh] {
                let err = error(ring.open(a.id, &context(name), sealed).await);
                assert!(
                    matches!(err, VaultError::KeyDestroyed(id) if id == a.id),
                    "{name}: {err:?}"
                );
            }
            // Tenant B's key does not open them either.
            let err = error(keyring.open(b.id, &context(name), sealed).await);
            assert!(
                matches!(err, VaultError::Decrypt(_)),
                "{name} as B: {err:?}"
            );
        }
        assert!(matches!(
            error(keyring.seal(a.id, "secret:new", b"x").await),
            VaultError::KeyDestroyed(_)
        ));
        // Forgetting twice is harmless, and the failures did not re-cache anything.
        keyring.forget(a.id);
        assert!(matches!(
            error(
                keyring
                    .open(a.id, &context(captured[0].0), &captured[0].1)
                    .await
            ),
            VaultError::KeyDestroyed(_)
        ));

        // Tenant B is untouched, with the warm keyring and with a fresh one.
        for name in names {
            for ring in [&keyring, &fresh] {
                assert_eq!(
                    env.open(ring, b.id, name).await.unwrap(),
                    plaintext(1, name)
                );
            }
        }
        assert_eq!(env.wrapped(b.id).await, b_wrapped);

        // A copy of the destroyed wrapped key (in a backup, say) still
        // unwraps while the KEK that wrapped it exists, and no longer once a
        // rotation has retired that KEK (for a process opening the key file
        // afterwards).
        let local = env.local();
        assert!(local.unwrap(a.id, &a_wrapped).await.is_ok());
        let report = keyring
            .rotate_kek(&env.clock, &by_test(), true, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(
            (report.rewrapped, report.vanished),
            (1, 0),
            "only B has a key"
        );
        assert_eq!(report.retired, vec!["local:1".to_string()]);
        assert!(matches!(
            env.local().unwrap(a.id, &a_wrapped).await,
            Err(VaultError::UnknownKek(id)) if id == "local:1"
        ));
        let restarted = env.keyring(env.local());
        for name in names {
            assert_eq!(
                env.open(&restarted, b.id, name).await.unwrap(),
                plaintext(1, name)
            );
        }
    }

    pub async fn rotation_rewraps_every_key_and_keeps_everything_readable(env: &Env) {
        const TENANTS: usize = 30;
        let local = env.local();
        let keyring = env.keyring(local.clone());
        let mut tenants = Vec::new();
        for i in 0..TENANTS {
            let tenant = env.tenant(&keyring, &format!("tenant-{i:02}")).await.id;
            env.put(
                &keyring,
                tenant,
                "psa.api-key",
                &plaintext(i, "psa.api-key"),
            )
            .await;
            tenants.push(tenant);
        }
        let before = env.all_wrapped().await;
        assert_eq!(before.len(), TENANTS);
        assert!(before.values().all(|w| w.kek_id == "local:1"));
        let created: BTreeMap<_, _> = env
            .store()
            .list_tenant_keys(None, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|k| (k.tenant_id, k.created_at))
            .collect();

        env.clock.advance(time::Duration::days(90));
        let rotated_at = env.clock.now();
        let mut seen = Vec::new();
        let mut progress = |p: RotationProgress| seen.push(p);
        let report = keyring
            .rotate_kek(&env.clock, &by_test(), true, &mut progress)
            .await
            .unwrap();
        assert_eq!(report.active_kek, "local:2");
        assert_eq!(report.rewrapped, TENANTS as u64);
        assert_eq!((report.already_current, report.vanished), (0, 0));
        assert_eq!(report.retired, vec!["local:1".to_string()]);
        assert_eq!(
            seen.last(),
            Some(&RotationProgress {
                seen: TENANTS as u64,
                rewrapped: TENANTS as u64
            })
        );
        assert!(
            seen.windows(2)
                .all(|w| w[0].seen <= w[1].seen && w[0].rewrapped <= w[1].rewrapped)
        );

        let records = env.store().list_tenant_keys(None, 1000).await.unwrap();
        assert_eq!(records.len(), TENANTS);
        for record in &records {
            assert_eq!(record.wrapped.kek_id, "local:2");
            assert_ne!(
                record.wrapped.ciphertext,
                before[&record.tenant_id].ciphertext
            );
            assert_eq!(record.rewrapped_at, Some(rotated_at));
            assert_eq!(
                record.created_at, created[&record.tenant_id],
                "creation time kept"
            );
        }

        // A restart: a freshly opened key file and an empty cache.
        let restarted = env.local();
        let fresh = env.keyring(restarted.clone());
        for (i, &tenant) in tenants.iter().enumerate() {
            assert_eq!(
                env.open(&fresh, tenant, "psa.api-key").await.unwrap(),
                plaintext(i, "psa.api-key")
            );
        }
        // The old KEK is gone from the file: a copy of an old wrapped key
        // (say, from a database backup) no longer unwraps.
        let old = &before[&tenants[0]];
        assert!(matches!(
            restarted.unwrap(tenants[0], old).await,
            Err(VaultError::UnknownKek(id)) if id == "local:1"
        ));

        // A second rotation rewraps every key again.
        let report = fresh
            .rotate_kek(&env.clock, &by_test(), true, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.active_kek, "local:3");
        assert_eq!(
            (report.rewrapped, report.already_current),
            (TENANTS as u64, 0)
        );
        assert_eq!(report.retired, vec!["local:2".to_string()]);
        assert!(
            env.all_wrapped()
                .await
                .values()
                .all(|w| w.kek_id == "local:3")
        );

        // A rotation killed half-way: half the keys under the new KEK, half
        // under the previous one. Nothing is unreadable meanwhile.
        let half = TENANTS / 2;
        let crashing = env.keyring(Arc::new(Interrupting {
            inner: env.local(),
            rewraps_left: AtomicUsize::new(half),
        }));
        let err = crashing
            .rotate_kek(&env.clock, &by_test(), true, &mut |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(err, VaultError::Provider(ref m) if m.contains("simulated")),
            "{err:?}"
        );
        let mut by_kek: BTreeMap<String, usize> = BTreeMap::new();
        for wrapped in env.all_wrapped().await.values() {
            *by_kek.entry(wrapped.kek_id.clone()).or_default() += 1;
        }
        assert_eq!(
            by_kek,
            BTreeMap::from([
                ("local:3".to_string(), TENANTS - half),
                ("local:4".to_string(), half)
            ])
        );
        let fresh = env.keyring(env.local());
        for (i, &tenant) in tenants.iter().enumerate() {
            assert_eq!(
                env.open(&fresh, tenant, "psa.api-key").await.unwrap(),
                plaintext(i, "psa.api-key")
            );
        }

        // Running the rotation again finishes the job. It starts by creating
        // yet another KEK, so every key (including those the interrupted run
        // had already moved to local:4) is rewrapped to local:5; both older
        // versions are then retired. (Run as a new process would, with a
        // freshly opened key file: a handle that loaded the file earlier
        // only notices changes through its modification time.)
        let rerun = env.keyring(env.local());
        let report = rerun
            .rotate_kek(&env.clock, &by_test(), true, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.active_kek, "local:5");
        assert_eq!(report.rewrapped + report.already_current, TENANTS as u64);
        assert_eq!(report.rewrapped, TENANTS as u64);
        assert_eq!(report.vanished, 0);
        assert_eq!(
            report.retired,
            vec!["local:3".to_string(), "local:4".to_string()]
        );
        assert!(
            env.all_wrapped()
                .await
                .values()
                .all(|w| w.kek_id == "local:5")
        );
        let fresh = env.keyring(env.local());
        for (i, &tenant) in tenants.iter().enumerate() {
            assert_eq!(
                env.open(&fresh, tenant, "psa.api-key").await.unwrap(),
                plaintext(i, "psa.api-key")
            );
        }
        let key_file: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.key_file()).unwrap()).unwrap();
        assert_eq!(key_file["active"], 5);
        assert_eq!(
            key_file["keys"].as_array().unwrap().len(),
            1,
            "only the active KEK is kept"
        );
    }

    pub async fn rotation_counts_keys_rewrapped_or_destroyed_while_it_runs(env: &Env) {
        let keyring = env.keyring(env.local());
        let mut tenants = Vec::new();
        for i in 0..6 {
            let tenant = env.tenant(&keyring, &format!("tenant-{i}")).await;
            env.put(
                &keyring,
                tenant.id,
                "psa.api-key",
                &plaintext(i, "psa.api-key"),
            )
            .await;
            tenants.push(tenant);
        }
        let raced = tenants[2].id;
        let doomed = tenants[4].clone();
        let racing = env.keyring(Arc::new(Racing {
            inner: env.local(),
            store: env.store().clone(),
            at: env.clock.now(),
            raced,
            doomed: Mutex::new(Some(doomed.clone())),
        }));
        let report = racing
            .rotate_kek(&env.clock, &by_test(), true, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.active_kek, "local:2");
        assert_eq!(
            (report.rewrapped, report.already_current, report.vanished),
            (4, 1, 1),
            "{report:?}"
        );
        assert_eq!(report.retired, vec!["local:1".to_string()]);

        let wrapped = env.all_wrapped().await;
        assert_eq!(wrapped.len(), 5);
        assert!(!wrapped.contains_key(&doomed.id));
        assert!(wrapped.values().all(|w| w.kek_id == "local:2"));
        let fresh = env.keyring(env.local());
        for (i, tenant) in tenants.iter().enumerate() {
            if tenant.id == doomed.id {
                let sealed_gone = env
                    .store()
                    .get_secret(tenant.id, &secret("psa.api-key"))
                    .await;
                assert!(matches!(sealed_gone, Err(StoreError::NotFound(_))));
                assert!(matches!(
                    error(fresh.seal(tenant.id, "secret:x", b"x").await),
                    VaultError::KeyDestroyed(_)
                ));
            } else {
                assert_eq!(
                    env.open(&fresh, tenant.id, "psa.api-key").await.unwrap(),
                    plaintext(i, "psa.api-key"),
                    "tenant {i}"
                );
            }
        }
    }

    pub async fn vault_transit_provider_against_the_emulator(env: &Env) {
        let emu = VaultTransitEmulator::start(ROOT_TOKEN).await.unwrap();
        let transit = VaultTransit::new(vault_config(emu.url(), ROOT_TOKEN)).unwrap();
        transit.ensure_key().await.unwrap();
        assert_eq!(emu.calls(TransitOp::CreateKey), 1);
        assert_eq!(emu.latest_version("gatehouse"), Some(1));
        transit.ensure_key().await.unwrap();
        assert_eq!(
            emu.calls(TransitOp::CreateKey),
            1,
            "an existing key is not created again"
        );
        assert_eq!(transit.kind(), "vault-transit");
        assert_eq!(
            transit.active_kek().await.unwrap(),
            "vault-transit:gatehouse:v1"
        );
        assert!(!format!("{transit:?}").contains(ROOT_TOKEN));

        let transit = Arc::new(transit);
        let keyring = env.keyring(transit.clone());
        let names = ["psa.api-key", "graph.client-secret"];
        let mut tenants = Vec::new();
        for i in 0..4 {
            let tenant = env.tenant(&keyring, &format!("tenant-{i}")).await.id;
            for name in names {
                env.put(&keyring, tenant, name, &plaintext(i, name)).await;
            }
            let wrapped = env.wrapped(tenant).await;
            assert_eq!(wrapped.kek_id, "vault-transit:gatehouse:v1");
            assert!(wrapped.ciphertext.starts_with(b"vault:v1:"));
            tenants.push(tenant);
        }
        let count = tenants.len() as u64;
        assert_eq!(emu.calls(TransitOp::DataKey), count);
        assert_eq!(
            emu.calls(TransitOp::Decrypt),
            0,
            "fresh data keys are cached"
        );
        for (i, &tenant) in tenants.iter().enumerate() {
            for name in names {
                assert_eq!(
                    env.open(&keyring, tenant, name).await.unwrap(),
                    plaintext(i, name)
                );
            }
        }
        let before = env.all_wrapped().await;

        // A restart: each key is unwrapped by Vault once, then cached.
        let fresh = env.keyring(transit.clone());
        for (i, &tenant) in tenants.iter().enumerate() {
            for name in names {
                assert_eq!(
                    env.open(&fresh, tenant, name).await.unwrap(),
                    plaintext(i, name)
                );
            }
        }
        assert_eq!(emu.calls(TransitOp::Decrypt), count);

        // Rotation: Vault rewraps every key without Gatehouse seeing it.
        let mut seen = Vec::new();
        let mut progress = |p: RotationProgress| seen.push(p);
        let report = keyring
            .rotate_kek(&env.clock, &by_test(), true, &mut progress)
            .await
            .unwrap();
        assert_eq!(report.active_kek, "vault-transit:gatehouse:v2");
        assert_eq!(
            (report.rewrapped, report.already_current, report.vanished),
            (count, 0, 0)
        );
        assert!(
            report.retired.is_empty(),
            "retiring Transit versions is the Vault operator's job"
        );
        assert_eq!(
            seen.last(),
            Some(&RotationProgress {
                seen: count,
                rewrapped: count
            })
        );
        assert_eq!(emu.calls(TransitOp::Rotate), 1);
        assert_eq!(emu.calls(TransitOp::Rewrap), count);
        assert_eq!(emu.latest_version("gatehouse"), Some(2));
        for (tenant, wrapped) in env.all_wrapped().await {
            assert_eq!(wrapped.kek_id, "vault-transit:gatehouse:v2");
            assert!(wrapped.ciphertext.starts_with(b"vault:v2:"));
            assert_ne!(wrapped, before[&tenant]);
        }
        let rotated = env.keyring(transit.clone());
        for (i, &tenant) in tenants.iter().enumerate() {
            for name in names {
                assert_eq!(
                    env.open(&rotated, tenant, name).await.unwrap(),
                    plaintext(i, name)
                );
            }
        }
        assert_eq!(emu.calls(TransitOp::Decrypt), 2 * count);

        // A wrong token is refused, and the error does not repeat it.
        let bad_token = "s.not-the-root-token-3f9a";
        let wrong = Arc::new(VaultTransit::new(vault_config(emu.url(), bad_token)).unwrap());
        let wrong_keyring = env.keyring(wrong.clone());
        let failures = [
            error(wrong.ensure_key().await),
            error(
                wrong_keyring
                    .new_tenant_key(TenantId::generate(env.clock.now()), &env.clock)
                    .await,
            ),
            error(env.open(&wrong_keyring, tenants[0], names[0]).await),
            error(
                wrong_keyring
                    .rotate_kek(&env.clock, &by_test(), true, &mut |_| {})
                    .await,
            ),
        ];
        for err in failures {
            // A 403 is a refusal (retrying will not help), not an outage.
            let VaultError::Refused(message) = &err else {
                panic!("expected a refusal, got {err:?}");
            };
            assert!(message.contains("403"), "{message}");
            assert!(!message.contains(bad_token), "the token leaked: {message}");
            assert!(!err.to_string().contains(bad_token));
            assert!(!format!("{err:?}").contains(bad_token));
        }
        assert_eq!(emu.calls(TransitOp::CreateKey), 1);
        assert_eq!(
            emu.latest_version("gatehouse"),
            Some(2),
            "no rotation with a wrong token"
        );

        // Vault down (sealed). `rotated` opened everything a moment ago, so
        // its cache is warm; `no_cache` has a zero TTL and always asks Vault.
        let no_cache = Keyring::new(
            transit.clone(),
            env.store().clone(),
            std::time::Duration::ZERO,
        );
        assert_eq!(
            env.open(&no_cache, tenants[0], names[0]).await.unwrap(),
            plaintext(0, names[0])
        );
        emu.set_down(true);
        let err = error(
            keyring
                .new_tenant_key(TenantId::generate(env.clock.now()), &env.clock)
                .await,
        );
        assert!(
            matches!(&err, VaultError::Provider(m) if m.contains("sealed")),
            "{err:?}"
        );
        let cold = env.keyring(transit.clone());
        for ring in [&cold, &no_cache] {
            let err = error(env.open(ring, tenants[0], names[0]).await);
            assert!(
                matches!(&err, VaultError::Provider(m) if m.contains("sealed")),
                "{err:?}"
            );
        }
        // The key cache TTL at work: within it, a node keeps serving the
        // tenants whose keys it holds even while Vault is unreachable.
        for (i, &tenant) in tenants.iter().enumerate() {
            for name in names {
                assert_eq!(
                    env.open(&rotated, tenant, name).await.unwrap(),
                    plaintext(i, name)
                );
            }
        }
        emu.set_down(false);
        assert_eq!(
            env.open(&cold, tenants[3], names[1]).await.unwrap(),
            plaintext(3, names[1])
        );

        emu.shutdown().await;
    }

    pub async fn a_wrapped_key_swapped_between_tenants_does_not_open(env: &Env) {
        let local = env.local();
        let keyring = env.keyring(local.clone());
        let a = env.tenant(&keyring, "tenant-a").await.id;
        let b = env.tenant(&keyring, "tenant-b").await.id;
        let names = ["psa.api-key", "graph.client-secret"];
        for name in names {
            env.put(&keyring, a, name, &plaintext(0, name)).await;
            env.put(&keyring, b, name, &plaintext(1, name)).await;
        }
        let a_wrapped = env.wrapped(a).await;
        let b_wrapped = env.wrapped(b).await;
        assert_eq!(a_wrapped.kek_id, b_wrapped.kek_id);

        // Someone with write access to the database copies A's wrapped key
        // into B's row.
        env.store()
            .rewrap_tenant_key(b, &b_wrapped.kek_id, &a_wrapped, env.clock.now(), &[])
            .await
            .unwrap();
        assert_eq!(env.wrapped(b).await, a_wrapped);

        // The provider binds a wrapped key to its tenant.
        assert!(matches!(
            local.unwrap(b, &a_wrapped).await,
            Err(VaultError::Decrypt(_))
        ));
        let fresh = env.keyring(env.local());
        for name in names {
            let err = error(env.open(&fresh, b, name).await);
            assert!(matches!(err, VaultError::Decrypt(_)), "{name}: {err:?}");
        }
        assert!(matches!(
            error(fresh.seal(b, "secret:new", b"x").await),
            VaultError::Decrypt(_)
        ));
        // Copying A's sealed secret along with it opens nothing either.
        let a_sealed = env.sealed(a, names[0]).await;
        env.store()
            .put_secret(b, &secret(names[0]), &a_sealed, env.clock.now(), &[])
            .await
            .unwrap();
        assert!(env.open(&fresh, b, names[0]).await.is_err());
        // Tenant A is unaffected.
        for name in names {
            assert_eq!(env.open(&fresh, a, name).await.unwrap(), plaintext(0, name));
        }

        // Putting B's own wrapped key back makes B readable again: the
        // failures above came from the swap alone.
        env.store()
            .rewrap_tenant_key(b, &a_wrapped.kek_id, &b_wrapped, env.clock.now(), &[])
            .await
            .unwrap();
        let restored = env.keyring(env.local());
        assert_eq!(
            env.open(&restored, b, names[1]).await.unwrap(),
            plaintext(1, names[1])
        );
    }
}

macro_rules! key_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = gatehouse_store::testing::TestDatabase::sqlite().await.unwrap();
                    let env = super::Env::new(db);
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = gatehouse_store::testing::TestDatabase::postgres(stringify!($case)).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let env = super::Env::new(db);
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }
    };
}

key_tests!(
    secrets_round_trip_and_are_bound_to_tenant_and_context,
    plaintext_never_reaches_the_sqlite_file,
    deleting_a_tenant_crypto_shreds_everything_it_sealed,
    rotation_rewraps_every_key_and_keeps_everything_readable,
    rotation_counts_keys_rewrapped_or_destroyed_while_it_runs,
    vault_transit_provider_against_the_emulator,
    a_wrapped_key_swapped_between_tenants_does_not_open,
);

/// Who rotates in these tests.
fn by_test() -> gatehouse_core::audit::Provenance {
    gatehouse_core::audit::Provenance::system("test", time::OffsetDateTime::UNIX_EPOCH)
}
