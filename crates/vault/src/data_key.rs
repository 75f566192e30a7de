//! A tenant's data key and the sealed format.
//!
//! Sealed value: `0x01 ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext and tag`.
//! The version byte lets a later format (another cipher, a DEK version)
//! coexist with this one. Nonces are random; at 2^32 values per key the
//! collision risk stays below NIST's bound, far above any tenant's volume.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use zeroize::Zeroizing;

use crate::VaultError;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Bytes a sealed value adds to its plaintext.
pub const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// A 256-bit data key in the clear. Zeroed on drop; `Debug` shows nothing.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A new random key.
    pub fn generate() -> Result<Self, VaultError> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).map_err(|e| VaultError::Crypto(e.to_string()))?;
        Ok(Self(key))
    }

    /// Wraps key bytes received from a provider; they must be 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| VaultError::Decrypt("data key is not 256 bits"))?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// The key bytes, for a provider to wrap.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// Seals `plaintext`, binding it to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| VaultError::Crypto(e.to_string()))?;
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| VaultError::Crypto("AES-GCM encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Opens a value sealed with this key and the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let (&version, rest) = sealed
            .split_first()
            .ok_or(VaultError::Decrypt("empty ciphertext"))?;
        if version != FORMAT_V1 {
            return Err(VaultError::Decrypt("unknown ciphertext format"));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(VaultError::Decrypt("ciphertext is truncated"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(self.0.as_ref().into());
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                VaultError::Decrypt(
                    "authentication failed: wrong key, wrong context or altered data",
                )
            })
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_binds_the_context() {
        let key = DataKey::generate().unwrap();
        let sealed = key.seal(b"tenant-a/secret:x", b"hunter2").unwrap();
        assert_eq!(sealed.len(), b"hunter2".len() + SEALED_OVERHEAD);
        assert_eq!(
            key.open(b"tenant-a/secret:x", &sealed).unwrap().as_slice(),
            b"hunter2"
        );
        assert!(
            key.open(b"tenant-b/secret:x", &sealed).is_err(),
            "other context"
        );
        assert!(
            DataKey::generate()
                .unwrap()
                .open(b"tenant-a/secret:x", &sealed)
                .is_err(),
            "other key"
        );
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(
                key.open(b"tenant-a/secret:x", &tampered).is_err(),
                "flipped byte {i}"
            );
        }
        assert!(key.open(b"", &sealed[..10]).is_err());
        assert!(key.open(b"", &[]).is_err());
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let key = DataKey::generate().unwrap();
        assert_ne!(
            key.seal(b"", b"same").unwrap(),
            key.seal(b"", b"same").unwrap()
        );
        assert!(!format!("{key:?}").contains(&format!("{:?}", key.expose())));
    }
}
