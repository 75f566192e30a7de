//! C2SP checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed tree
//! head of the audit log.
//!
//! ```text
//! gatehouse.example/audit            ← origin: which log
//! 20852163                           ← tree size, decimal, no leading zeros
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   ← root hash, base64
//!                                    ← blank line, then signatures
//! — gatehouse.example/audit Az3grlgt…
//! ```
//!
//! Optional extension lines may follow the root hash (the spec advises
//! against them; Gatehouse writes none).
//!
//! A checkpoint is only trusted through [`open`], which checks the note's
//! signatures against trusted keys **and** that the origin is the log the
//! caller expects: the same key could sign several logs (one per tenant),
//! and a valid checkpoint of another log proves nothing about this one.

use thiserror::Error;

use crate::merkle::{Hash, HashError};
use crate::note::{NoteError, SignError, SignedNote, Signer, VerifierKey};

/// Why a checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    #[error("the checkpoint note is malformed: {0}")]
    Note(NoteError),
    #[error("the checkpoint's signatures do not verify: {0}")]
    Signature(NoteError),
    #[error("a checkpoint has at least three lines (origin, size, root), this one has {0}")]
    TooFewLines(usize),
    #[error("the origin line is empty or contains a control character")]
    Origin,
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("tree size {0:?} is not a decimal number without leading zeros that fits in 64 bits")]
    Size(String),
    #[error("root hash line: {0}")]
    Root(HashError),
    #[error("extension line {0} is empty")]
    EmptyExtension(usize),
    #[error("extension line {0:?} contains a newline or a control character")]
    Extension(String),
}

/// The body of a checkpoint: origin, tree size, root hash, extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

fn plain_line(line: &str) -> bool {
    !line.is_empty() && !line.chars().any(|c| c < ' ')
}

impl Checkpoint {
    /// A checkpoint of `origin`'s tree at `size` leaves with root `root`.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        let origin = origin.into();
        if !plain_line(&origin) {
            return Err(CheckpointError::Origin);
        }
        Ok(Self {
            origin,
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// Adds an extension line (non-empty, no control characters).
    pub fn with_extension(mut self, line: impl Into<String>) -> Result<Self, CheckpointError> {
        let line = line.into();
        if !plain_line(&line) {
            return Err(CheckpointError::Extension(line));
        }
        self.extensions.push(line);
        Ok(self)
    }

    /// The log's identity.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root hash at that size.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// Extension lines.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text that gets signed.
    pub fn body(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            self.root.to_base64()
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses a note text (the part before the blank line) as a checkpoint.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let Some(text) = text.strip_suffix('\n') else {
            return Err(CheckpointError::Note(NoteError::TextNotTerminated));
        };
        let lines: Vec<&str> = text.split('\n').collect();
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(CheckpointError::TooFewLines(lines.len()));
        };
        if !plain_line(origin) {
            return Err(CheckpointError::Origin);
        }
        let size = parse_size(size)?;
        let root = Hash::from_base64(root).map_err(CheckpointError::Root)?;
        for (i, line) in extensions.iter().enumerate() {
            if line.is_empty() {
                return Err(CheckpointError::EmptyExtension(i + 1));
            }
        }
        Ok(Self {
            origin: (*origin).to_owned(),
            size,
            root,
            extensions: extensions.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// Signs the checkpoint; returns the signed note (its `to_string()` is
    /// what gets stored and published).
    pub async fn sign(&self, signer: &dyn Signer) -> Result<SignedNote, SignError> {
        let mut note = SignedNote::new(self.body()).map_err(SignError::Note)?;
        note.sign(signer).await?;
        Ok(note)
    }
}

fn parse_size(text: &str) -> Result<u64, CheckpointError> {
    let bad = || CheckpointError::Size(text.to_owned());
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return Err(bad());
    }
    text.parse().map_err(|_| bad())
}

/// Parses a signed checkpoint note, verifies it against the trusted `keys`
/// and checks that it belongs to the log `origin`.
pub fn open(
    note: &str,
    keys: &[VerifierKey],
    origin: &str,
) -> Result<(Checkpoint, SignedNote), CheckpointError> {
    let parsed = SignedNote::parse(note).map_err(CheckpointError::Note)?;
    // The text means nothing until a trusted key has signed it.
    parsed.verify(keys).map_err(CheckpointError::Signature)?;
    let checkpoint = Checkpoint::parse_body(parsed.text())?;
    if checkpoint.origin() != origin {
        return Err(CheckpointError::WrongOrigin {
            expected: origin.to_owned(),
            found: checkpoint.origin().to_owned(),
        });
    }
    Ok((checkpoint, parsed))
}
