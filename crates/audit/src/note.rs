//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519.
//!
//! A note is UTF-8 text ending in a newline, a blank line, then one line per
//! signature: `— <key name> base64(key ID ‖ signature)`. The key ID of an
//! Ed25519 key is the first four bytes of
//! `SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)`.
//!
//! Keys travel as text in the formats of the Go `sumdb/note` package, which
//! every transparency-log tool reads:
//! - verifier key: `<name>+<key ID, 8 hex digits>+base64(0x01 ‖ public key)`;
//! - signer key: `PRIVATE+KEY+<name>+<key ID>+base64(0x01 ‖ 32-byte seed)`.
//!
//! Signing goes through the async [`Signer`] trait so that the key can live
//! in the vault (or an external KMS) later; [`Ed25519Signer`] keeps it in
//! memory. Verification uses `verify_strict`, which rejects malleable
//! signatures and small-order keys.

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

/// Signature type byte of Ed25519 in the signed-note registry.
pub const ED25519_TYPE: u8 = 0x01;

/// The most signatures a note may carry (the spec asks for at least 16).
pub const MAX_SIGNATURES: usize = 64;

/// The largest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a note, a key or a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NoteError {
    #[error("a note is at most {MAX_NOTE_BYTES} bytes, this one is {0}")]
    TooLarge(usize),
    #[error("a note may not contain control characters other than newline (found U+{0:04X})")]
    ControlCharacter(u32),
    #[error("the note text must be non-empty and end with a newline")]
    TextNotTerminated,
    #[error("no blank line separates the note text from its signatures")]
    MissingSeparator,
    #[error("the note has no signature lines")]
    NoSignatures,
    #[error("the note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("the last signature line does not end with a newline")]
    SignaturesNotTerminated,
    #[error("signature line {line} does not start with an em dash and a space")]
    SignatureLineStart { line: usize },
    #[error("signature line {line} is not `— <key name> <base64>`")]
    SignatureLineShape { line: usize },
    #[error("signature line {line} is not valid base64")]
    SignatureBase64 { line: usize },
    #[error("signature line {line} is shorter than a key ID and a signature")]
    SignatureTooShort { line: usize },
    #[error("key name {0:?} is empty or contains a space or a plus sign")]
    KeyName(String),
    #[error("verifier key is not `<name>+<8 hex digits>+<base64>`")]
    VerifierKeyShape,
    #[error("signer key is not `PRIVATE+KEY+<name>+<8 hex digits>+<base64>`")]
    SignerKeyShape,
    #[error("key data is not standard base64")]
    KeyBase64,
    #[error("key type 0x{0:02x} is not Ed25519 (0x01)")]
    KeyType(u8),
    #[error("an Ed25519 key is 32 bytes after the type byte, got {0}")]
    KeyLength(usize),
    #[error("the public key is not a valid Ed25519 point, or has small order")]
    WeakKey,
    #[error("key ID {stated} does not match the key, which has ID {computed}")]
    KeyIdMismatch { stated: KeyId, computed: KeyId },
    #[error("signature by {name} (key {key_id}) does not verify")]
    BadSignature { name: String, key_id: KeyId },
    #[error("no signature by a trusted key (signed by: {0})")]
    NoTrustedSignature(String),
}

/// A signed-note key name: non-empty, no Unicode spaces, no `+`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, std::hash::Hash)]
pub struct KeyName(String);

impl KeyName {
    /// Validates a key name.
    pub fn parse(name: &str) -> Result<Self, NoteError> {
        if name.is_empty()
            || name.contains('+')
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(NoteError::KeyName(name.to_owned()));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A signed-note key ID (big-endian u32); shown as 8 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, std::hash::Hash)]
pub struct KeyId(pub u32);

impl KeyId {
    /// The recommended key ID: `SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]`.
    pub fn compute(name: &KeyName, signature_type: u8, public_key: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(name.as_str().as_bytes());
        h.update([b'\n', signature_type]);
        h.update(public_key);
        let digest = h.finalize();
        Self(u32::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]))
    }

    fn parse_hex(text: &str) -> Option<Self> {
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(text, 16).ok().map(Self)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:08x})", self.0)
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Name of the key that signed.
    pub name: KeyName,
    /// ID of the key that signed.
    pub key_id: KeyId,
    /// The signature bytes (after the key ID).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line as it appears in the note, without the final newline.
    pub fn line(&self) -> String {
        let mut blob = Vec::with_capacity(4 + self.signature.len());
        blob.extend_from_slice(&self.key_id.0.to_be_bytes());
        blob.extend_from_slice(&self.signature);
        format!("{SIGNATURE_PREFIX}{} {}", self.name, BASE64.encode(blob))
    }
}

/// A note: its text and its signature lines (verified or not: see
/// [`SignedNote::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    text: String,
    signatures: Vec<NoteSignature>,
}

fn check_characters(text: &str) -> Result<(), NoteError> {
    match text.chars().find(|&c| c != '\n' && c < ' ') {
        Some(c) => Err(NoteError::ControlCharacter(c.into())),
        None => Ok(()),
    }
}

impl SignedNote {
    /// A note with `text` (non-empty, ending in a newline, no control
    /// characters but newlines) and no signatures yet.
    pub fn new(text: impl Into<String>) -> Result<Self, NoteError> {
        let text = text.into();
        if text.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge(text.len()));
        }
        check_characters(&text)?;
        if !text.ends_with('\n') {
            return Err(NoteError::TextNotTerminated);
        }
        Ok(Self {
            text,
            signatures: Vec::new(),
        })
    }

    /// The signed text, final newline included.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every signature line, trusted or not.
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds a signature line.
    pub fn push_signature(&mut self, signature: NoteSignature) -> Result<(), NoteError> {
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        self.signatures.push(signature);
        Ok(())
    }

    /// Signs the text with `signer` and adds the signature line.
    pub async fn sign(&mut self, signer: &dyn Signer) -> Result<(), SignError> {
        let signature = signer.sign(self.text.as_bytes()).await?;
        self.push_signature(NoteSignature {
            name: signer.key_name().clone(),
            key_id: signer.key_id(),
            signature,
        })
        .map_err(SignError::Note)
    }

    /// Parses a signed note. Checks the shape only: call
    /// [`SignedNote::verify`] before trusting the text.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if note.len() > MAX_NOTE_BYTES {
            return Err(NoteError::TooLarge(note.len()));
        }
        check_characters(note)?;
        let split = note.rfind("\n\n").ok_or(NoteError::MissingSeparator)?;
        let text = &note[..split + 1];
        let block = &note[split + 2..];
        if block.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        let Some(block) = block.strip_suffix('\n') else {
            return Err(NoteError::SignaturesNotTerminated);
        };
        let mut signatures = Vec::new();
        for (i, line) in block.split('\n').enumerate() {
            let line_no = i + 1;
            if signatures.len() >= MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures);
            }
            let rest = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or(NoteError::SignatureLineStart { line: line_no })?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or(NoteError::SignatureLineShape { line: line_no })?;
            if blob.contains(' ') {
                return Err(NoteError::SignatureLineShape { line: line_no });
            }
            let name = KeyName::parse(name)?;
            let blob = BASE64
                .decode(blob)
                .map_err(|_| NoteError::SignatureBase64 { line: line_no })?;
            if blob.len() < 5 {
                return Err(NoteError::SignatureTooShort { line: line_no });
            }
            let key_id = KeyId(u32::from_be_bytes([blob[0], blob[1], blob[2], blob[3]]));
            signatures.push(NoteSignature {
                name,
                key_id,
                signature: blob[4..].to_vec(),
            });
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Checks the signatures against the trusted `keys`, per the spec:
    /// signatures by unknown keys (name and ID not both matching) are
    /// ignored; a signature by a known key that fails rejects the note; at
    /// least one known key must have signed. Returns the verified
    /// signatures.
    pub fn verify(&self, keys: &[VerifierKey]) -> Result<Vec<&NoteSignature>, NoteError> {
        let mut verified = Vec::new();
        for sig in &self.signatures {
            let Some(key) = keys
                .iter()
                .find(|k| k.name == sig.name && k.key_id == sig.key_id)
            else {
                continue;
            };
            key.verify(self.text.as_bytes(), &sig.signature)
                .map_err(|_| NoteError::BadSignature {
                    name: sig.name.to_string(),
                    key_id: sig.key_id,
                })?;
            verified.push(sig);
        }
        if verified.is_empty() {
            let names: Vec<String> = self
                .signatures
                .iter()
                .map(|s| format!("{} {}", s.name, s.key_id))
                .collect();
            return Err(NoteError::NoTrustedSignature(names.join(", ")));
        }
        Ok(verified)
    }
}

impl fmt::Display for SignedNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for sig in &self.signatures {
            writeln!(f, "{}", sig.line())?;
        }
        Ok(())
    }
}

/// A trusted Ed25519 public key with its name and ID.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: KeyName,
    key_id: KeyId,
    key: VerifyingKey,
}

impl VerifierKey {
    /// A verifier for `public_key` under `name`.
    pub fn from_public_key(name: KeyName, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| NoteError::WeakKey)?;
        if key.is_weak() {
            return Err(NoteError::WeakKey);
        }
        let key_id = KeyId::compute(&name, ED25519_TYPE, public_key);
        Ok(Self { name, key_id, key })
    }

    /// Parses `<name>+<8 hex digits>+base64(0x01 ‖ public key)`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let (name, rest) = text.split_once('+').ok_or(NoteError::VerifierKeyShape)?;
        let (id, data) = rest.split_once('+').ok_or(NoteError::VerifierKeyShape)?;
        let name = KeyName::parse(name)?;
        let stated = KeyId::parse_hex(id).ok_or(NoteError::VerifierKeyShape)?;
        let bytes = BASE64.decode(data).map_err(|_| NoteError::KeyBase64)?;
        let key: [u8; 32] = typed_key(&bytes)?;
        let verifier = Self::from_public_key(name, &key)?;
        if verifier.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                stated,
                computed: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    /// The key name.
    pub fn name(&self) -> &KeyName {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Verifies an Ed25519 signature over `message` (strictly).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), NoteError> {
        let bad = || NoteError::BadSignature {
            name: self.name.to_string(),
            key_id: self.key_id,
        };
        let signature = Signature::from_slice(signature).map_err(|_| bad())?;
        self.key
            .verify_strict(message, &signature)
            .map_err(|_| bad())
    }
}

impl fmt::Display for VerifierKey {
    /// The verifier key text, `<name>+<key ID>+<base64>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut data = Vec::with_capacity(33);
        data.push(ED25519_TYPE);
        data.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, self.key_id, BASE64.encode(data))
    }
}

impl fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// `0x01 ‖ 32 bytes` → the 32 bytes.
fn typed_key(bytes: &[u8]) -> Result<[u8; 32], NoteError> {
    let Some((&kind, key)) = bytes.split_first() else {
        return Err(NoteError::KeyLength(0));
    };
    if kind != ED25519_TYPE {
        return Err(NoteError::KeyType(kind));
    }
    <[u8; 32]>::try_from(key).map_err(|_| NoteError::KeyLength(key.len()))
}

/// A signing failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignError {
    /// The key holder (vault, KMS) failed; the text is safe to show.
    #[error("signing failed: {0}")]
    Backend(String),
    #[error(transparent)]
    Note(NoteError),
}

/// Something that signs notes with one named key: in memory
/// ([`Ed25519Signer`]) or, later, in the vault.
#[async_trait]
pub trait Signer: Send + Sync {
    /// The key name written on signature lines.
    fn key_name(&self) -> &KeyName;
    /// The key ID written on signature lines.
    fn key_id(&self) -> KeyId;
    /// The public half, to publish (e.g. at `/api/v1/audit/public-key`).
    fn verifier_key(&self) -> VerifierKey;
    /// Signs `message` (the note text); returns the signature bytes.
    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// An Ed25519 signing key held in memory (zeroed on drop).
pub struct Ed25519Signer {
    name: KeyName,
    key_id: KeyId,
    key: SigningKey,
}

impl Ed25519Signer {
    /// A signer from a 32-byte seed (RFC 8032 private key).
    pub fn from_seed(name: KeyName, seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let key_id = KeyId::compute(&name, ED25519_TYPE, key.verifying_key().as_bytes());
        Self { name, key_id, key }
    }

    /// A fresh random key from the operating system.
    pub fn generate(name: KeyName) -> Result<Self, SignError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut())
            .map_err(|e| SignError::Backend(format!("no randomness for a new key: {e}")))?;
        Ok(Self::from_seed(name, &seed))
    }

    /// Parses `PRIVATE+KEY+<name>+<key ID>+base64(0x01 ‖ seed)`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::SignerKeyShape)?;
        let (name, rest) = rest.split_once('+').ok_or(NoteError::SignerKeyShape)?;
        let (id, data) = rest.split_once('+').ok_or(NoteError::SignerKeyShape)?;
        let name = KeyName::parse(name)?;
        let stated = KeyId::parse_hex(id).ok_or(NoteError::SignerKeyShape)?;
        let bytes = Zeroizing::new(BASE64.decode(data).map_err(|_| NoteError::KeyBase64)?);
        let seed = Zeroizing::new(typed_key(&bytes)?);
        let signer = Self::from_seed(name, &seed);
        if signer.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                stated,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The signer key text. It is the private key: keep it out of logs.
    pub fn to_signer_key(&self) -> Zeroizing<String> {
        let mut data = Zeroizing::new(Vec::with_capacity(33));
        data.push(ED25519_TYPE);
        data.extend_from_slice(self.key.as_bytes());
        Zeroizing::new(format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            self.key_id,
            BASE64.encode(data.as_slice())
        ))
    }
}

impl fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[async_trait]
impl Signer for Ed25519Signer {
    fn key_name(&self) -> &KeyName {
        &self.name
    }

    fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn verifier_key(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        use ed25519_dalek::Signer as _;
        Ok(self.key.sign(message).to_bytes().to_vec())
    }
}
