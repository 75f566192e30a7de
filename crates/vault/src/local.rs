//! The default KEK provider: a key file on local disk.
//!
//! The file is created on first start, readable by its owner only (0600),
//! and refused if anyone else can read it. It holds every KEK version still
//! needed, so rotation can happen while other processes run:
//!
//! ```json
//! {"format":"gatehouse-kek/1","active":2,"keys":[{"version":1,"key":"<base64>"},{"version":2,"key":"<base64>"}]}
//! ```
//!
//! Each process re-reads the file before wrapping a new key, before a
//! rotation and when it meets a version it does not know, so a rotation by
//! `gatehouse keys rotate` reaches a running server without a restart.
//! Changes (rotate, retire) hold an exclusive lock on `kek.lock` and re-read
//! the file inside it, so concurrent rotations never overwrite each other.
//! Keep a backup of this file: without it no tenant data can be read.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_core::id::TenantId;
use gatehouse_core::keys::WrappedKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{DataKey, KeyProvider, VaultError};

const FORMAT: &str = "gatehouse-kek/1";
const NONCE_LEN: usize = 12;

#[derive(Serialize, Deserialize)]
struct KeyFileBody {
    format: String,
    active: u32,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    version: u32,
    key: String,
}

struct Loaded {
    active: u32,
    keys: Vec<(u32, DataKey)>,
}

/// KEKs in a local file.
pub struct LocalKeyFile {
    path: PathBuf,
    state: Mutex<Loaded>,
}

impl std::fmt::Debug for LocalKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalKeyFile {
    /// Opens the key file at `path`, creating it (0600, with one fresh KEK)
    /// if it does not exist. Returns the provider and whether it was created.
    pub fn open_or_create(path: &Path) -> Result<(Self, bool), VaultError> {
        let created = if path.exists() {
            false
        } else {
            let key = DataKey::generate()?;
            let body = KeyFileBody {
                format: FORMAT.into(),
                active: 1,
                keys: vec![KeyEntry {
                    version: 1,
                    key: STANDARD.encode(key.expose()),
                }],
            };
            write_new(path, &body, true)?;
            true
        };
        let loaded = load(path)?;
        Ok((
            Self {
                path: path.to_owned(),
                state: Mutex::new(loaded),
            },
            created,
        ))
    }

    fn file_error(&self, reason: impl Into<String>) -> VaultError {
        VaultError::KeyFile {
            path: self.path.display().to_string(),
            reason: reason.into(),
        }
    }

    /// Takes the cross-process lock that serialises changes to the file
    /// (two `keys rotate` at once would otherwise both write version N+1).
    /// Released when the returned file is dropped.
    fn exclusive(&self) -> Result<std::fs::File, VaultError> {
        let lock_path = self.path.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| self.file_error(format!("opening its lock file failed: {e}")))?;
        file.lock()
            .map_err(|e| self.file_error(format!("locking it failed: {e}")))?;
        Ok(file)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Re-reads the file if it changed on disk since it was loaded.
    /// Re-reads the file. It is a few hundred bytes and read only when a
    /// key is created, rotated or not yet known, so it is simply read again
    /// rather than trusting modification times (coarse on many filesystems:
    /// two writes in one tick look like none).
    fn refresh(&self) -> Result<(), VaultError> {
        let loaded = load(&self.path)?;
        *self.lock() = loaded;
        Ok(())
    }

    fn key(&self, version: u32) -> Result<DataKey, VaultError> {
        let find = |state: &Loaded| {
            state
                .keys
                .iter()
                .find(|(v, _)| *v == version)
                .map(|(_, k)| k.clone())
        };
        if let Some(key) = find(&self.lock()) {
            return Ok(key);
        }
        self.refresh()?;
        find(&self.lock()).ok_or_else(|| VaultError::UnknownKek(kek_id(version)))
    }

    fn wrap_with(
        &self,
        version: u32,
        tenant: TenantId,
        dek: &DataKey,
    ) -> Result<WrappedKey, VaultError> {
        let kek = self.key(version)?;
        let cipher = Aes256Gcm::new(kek.expose().into());
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| VaultError::Crypto(e.to_string()))?;
        let aad = aad(tenant);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: dek.expose(),
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Crypto("wrapping failed".into()))?;
        let mut ciphertext = nonce.to_vec();
        ciphertext.extend_from_slice(&sealed);
        Ok(WrappedKey {
            kek_id: kek_id(version),
            ciphertext,
        })
    }

    fn save(&self, state: &Loaded) -> Result<(), VaultError> {
        let body = KeyFileBody {
            format: FORMAT.into(),
            active: state.active,
            keys: state
                .keys
                .iter()
                .map(|(version, key)| KeyEntry {
                    version: *version,
                    key: STANDARD.encode(key.expose()),
                })
                .collect(),
        };
        // Write beside the file, then rename over it: readers see the old
        // file or the new one, never half of one.
        let tmp = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        write_new(&tmp, &body, false)?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| self.file_error(format!("replacing it failed: {e}")))
    }
}

fn kek_id(version: u32) -> String {
    format!("local:{version}")
}

fn parse_kek_id(id: &str) -> Result<u32, VaultError> {
    id.strip_prefix("local:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| VaultError::UnknownKek(id.to_owned()))
}

fn aad(tenant: TenantId) -> Vec<u8> {
    format!("gatehouse/dek\u{0}{tenant}").into_bytes()
}

fn write_new(path: &Path, body: &KeyFileBody, create_dir: bool) -> Result<(), VaultError> {
    let err = |reason: String| VaultError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    if create_dir && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("creating its directory failed: {e}")))?;
    }
    let json = Zeroizing::new(serde_json::to_vec_pretty(body).map_err(|e| err(e.to_string()))?);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(format!("creating it failed: {e}")))?;
    file.write_all(&json)
        .map_err(|e| err(format!("writing failed: {e}")))?;
    file.sync_all()
        .map_err(|e| err(format!("syncing failed: {e}")))
}

fn load(path: &Path) -> Result<Loaded, VaultError> {
    let err = |reason: String| VaultError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "permissions are {:o}; it must be readable by its owner only (chmod 600)",
            mode & 0o777
        )));
    }
    let text =
        Zeroizing::new(std::fs::read(path).map_err(|e| err(format!("cannot read it: {e}")))?);
    let body: KeyFileBody = serde_json::from_slice(&text)
        .map_err(|e| err(format!("is not a Gatehouse key file: {e}")))?;
    if body.format != FORMAT {
        return Err(err(format!(
            "has format `{}`, expected `{FORMAT}`",
            body.format
        )));
    }
    let mut keys = Vec::with_capacity(body.keys.len());
    for entry in &body.keys {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(&entry.key)
                .map_err(|_| err(format!("key version {} is not base64", entry.version)))?,
        );
        let key = DataKey::from_bytes(&bytes)
            .map_err(|_| err(format!("key version {} is not 256 bits", entry.version)))?;
        keys.push((entry.version, key));
    }
    if !keys.iter().any(|(v, _)| *v == body.active) {
        return Err(err(format!(
            "the active version {} is not in the file",
            body.active
        )));
    }
    Ok(Loaded {
        active: body.active,
        keys,
    })
}

#[async_trait]
impl KeyProvider for LocalKeyFile {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn generate(&self, tenant: TenantId) -> Result<(DataKey, WrappedKey), VaultError> {
        self.refresh()?;
        let active = self.lock().active;
        let dek = DataKey::generate()?;
        let wrapped = self.wrap_with(active, tenant, &dek)?;
        Ok((dek, wrapped))
    }

    async fn unwrap(&self, tenant: TenantId, wrapped: &WrappedKey) -> Result<DataKey, VaultError> {
        let kek = self.key(parse_kek_id(&wrapped.kek_id)?)?;
        if wrapped.ciphertext.len() < NONCE_LEN {
            return Err(VaultError::Decrypt("wrapped key is truncated"));
        }
        let (nonce, sealed) = wrapped.ciphertext.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(kek.expose().into());
        let aad = aad(tenant);
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    VaultError::Decrypt("wrapped key failed authentication (wrong tenant or KEK?)")
                })?,
        );
        DataKey::from_bytes(&plain)
    }

    async fn rewrap(
        &self,
        tenant: TenantId,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError> {
        let dek = self.unwrap(tenant, wrapped).await?;
        self.refresh()?;
        let active = self.lock().active;
        self.wrap_with(active, tenant, &dek)
    }

    async fn rotate(&self) -> Result<String, VaultError> {
        let _guard = self.exclusive()?;
        self.refresh()?;
        let mut state = self.lock();
        let next = state.keys.iter().map(|(v, _)| *v).max().unwrap_or(0) + 1;
        state.keys.push((next, DataKey::generate()?));
        state.active = next;
        self.save(&state)?;
        Ok(kek_id(next))
    }

    async fn active_kek(&self) -> Result<String, VaultError> {
        self.refresh()?;
        Ok(kek_id(self.lock().active))
    }

    async fn retire(&self, in_use: &BTreeSet<String>) -> Result<Vec<String>, VaultError> {
        let _guard = self.exclusive()?;
        self.refresh()?;
        let mut state = self.lock();
        let active = state.active;
        let retired: Vec<String> = state
            .keys
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| *v != active && !in_use.contains(&kek_id(*v)))
            .map(kek_id)
            .collect();
        if retired.is_empty() {
            return Ok(retired);
        }
        state
            .keys
            .retain(|(v, _)| *v == active || in_use.contains(&kek_id(*v)));
        self.save(&state)?;
        Ok(retired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn tenant() -> TenantId {
        TenantId::generate(OffsetDateTime::UNIX_EPOCH)
    }

    #[tokio::test]
    async fn the_key_file_is_created_private_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/kek.json");
        let (kek, created) = LocalKeyFile::open_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let t = tenant();
        let (dek, wrapped) = kek.generate(t).await.unwrap();
        assert_eq!(wrapped.kek_id, "local:1");
        assert!(!wrapped.ciphertext.windows(32).any(|w| w == dek.expose()));

        let (again, created) = LocalKeyFile::open_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(
            again.unwrap(t, &wrapped).await.unwrap().expose(),
            dek.expose()
        );
        assert!(
            again.unwrap(tenant(), &wrapped).await.is_err(),
            "bound to its tenant"
        );
    }

    #[tokio::test]
    async fn a_readable_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.json");
        LocalKeyFile::open_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = LocalKeyFile::open_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[tokio::test]
    async fn rotation_is_seen_by_other_handles_and_retire_keeps_what_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.json");
        let (server, _) = LocalKeyFile::open_or_create(&path).unwrap();
        let (cli, _) = LocalKeyFile::open_or_create(&path).unwrap();
        let t = tenant();
        let (dek, old) = server.generate(t).await.unwrap();

        assert_eq!(cli.rotate().await.unwrap(), "local:2");
        let (_, fresh) = server.generate(t).await.unwrap();
        assert_eq!(
            fresh.kek_id, "local:2",
            "the running server picked up the rotation"
        );

        let new = cli.rewrap(t, &old).await.unwrap();
        assert_eq!(new.kek_id, "local:2");
        assert_eq!(server.unwrap(t, &new).await.unwrap().expose(), dek.expose());

        let in_use: BTreeSet<String> = ["local:2".to_string()].into();
        assert_eq!(
            cli.retire(&in_use).await.unwrap(),
            vec!["local:1".to_string()]
        );
        let (restarted, _) = LocalKeyFile::open_or_create(&path).unwrap();
        assert!(matches!(
            restarted.unwrap(t, &old).await,
            Err(VaultError::UnknownKek(_))
        ));
        assert_eq!(
            restarted.unwrap(t, &new).await.unwrap().expose(),
            dek.expose()
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[tokio::test]
    async fn rotations_from_two_handles_never_overwrite_each_other() {
        // Two writes within one file-time tick used to look like none, so a
        // stale handle rewrote the file from its old copy and lost a KEK.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.json");
        let (first, _) = LocalKeyFile::open_or_create(&path).unwrap();
        let (second, _) = LocalKeyFile::open_or_create(&path).unwrap();
        let t = tenant();
        for round in 0..20 {
            let a = second.rotate().await.unwrap();
            let (dek, wrapped) = second.generate(t).await.unwrap();
            let b = first.rotate().await.unwrap();
            assert_ne!(a, b, "round {round}: two rotations made the same version");
            let (fresh, _) = LocalKeyFile::open_or_create(&path).unwrap();
            assert_eq!(
                fresh.unwrap(t, &wrapped).await.unwrap().expose(),
                dek.expose(),
                "round {round}"
            );
        }
    }
}
