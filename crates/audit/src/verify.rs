//! Verifying a whole stored log: replay every entry into the tree, check
//! every checkpoint against the replayed root, and name the first thing
//! that does not match.
//!
//! What can be localised, and how precisely, depends on what was tampered
//! with (docs/audit.md has the table):
//! - a row whose index is missing, repeated or out of place is named by its
//!   position;
//! - an entry whose bytes no longer match the leaf hash stored beside them,
//!   or that are not canonical JSON, is named by its position;
//! - an entry rewritten *consistently* (bytes and stored hash together) can
//!   only be caught by the signed checkpoints: the report names the first
//!   checkpoint whose root differs and the range of entries, after the last
//!   checkpoint that matched, where the change must be;
//! - a checkpoint that was altered fails its signature; one that was
//!   deleted leaves a gap in the sequence numbers; a copied or reordered one
//!   breaks the rule that each checkpoint covers more entries than the one
//!   before; a log cut shorter than a checkpoint is caught by that
//!   checkpoint (a checkpoint an auditor kept covers a cut tail).
//!
//! Checkpoints are checked first (they need no entries), then the entries
//! are streamed once, in O(log n) memory.

use std::fmt;

use thiserror::Error;

use crate::canonical;
use crate::checkpoint::{self, CheckpointError};
use crate::merkle::{Hash, leaf_hash};
use crate::note::VerifierKey;
use crate::tree::Frontier;

/// What a store holds for one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryLeaf {
    /// The canonical JSON bytes of the entry, and the leaf hash stored beside
    /// them if the store keeps one.
    Body {
        bytes: Vec<u8>,
        stored_hash: Option<Hash>,
    },
    /// Only the leaf hash (an export that leaves the bodies out).
    Hash(Hash),
}

/// One stored entry, as read from the store in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// The index the store recorded for the entry.
    pub index: u64,
    /// Its content.
    pub leaf: EntryLeaf,
}

/// One stored checkpoint, as read from the store in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The sequence number the store recorded (0, 1, 2, …).
    pub seq: u64,
    /// The signed note, as issued.
    pub note: String,
}

/// Which checkpoint a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointRef {
    /// A checkpoint from the store, by sequence number.
    Stored { seq: u64 },
    /// A checkpoint the auditor kept, by its position in the list given.
    Kept { ordinal: usize },
}

impl fmt::Display for CheckpointRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stored { seq } => write!(f, "stored checkpoint #{seq}"),
            Self::Kept { ordinal } => write!(f, "kept checkpoint {}", ordinal + 1),
        }
    }
}

/// Where the first mismatch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The entry at this index.
    Entry(u64),
    /// This checkpoint.
    Checkpoint(CheckpointRef),
}

/// The first thing in the log that does not match.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    #[error("entry {position} is missing: the next stored entry has index {found}")]
    EntryMissing { position: u64, found: u64 },
    #[error(
        "entry {position}: found index {found} again or out of place (a duplicated, inserted or reordered row)"
    )]
    EntryOutOfOrder { position: u64, found: u64 },
    #[error("entry {position} is not canonical JSON (RFC 8785): {reason}")]
    EntryNotCanonical { position: u64, reason: String },
    #[error(
        "entry {position}: its content hashes to {computed}, but the stored leaf hash is {stored}"
    )]
    LeafHashMismatch {
        position: u64,
        stored: Hash,
        computed: Hash,
    },
    #[error("the log holds more entries than a tree can")]
    TooManyEntries,
    #[error("{at}: {error}")]
    Checkpoint {
        at: CheckpointRef,
        error: CheckpointError,
    },
    #[error("stored checkpoint #{expected} is missing: the next one has sequence number {found}")]
    CheckpointMissing { expected: u64, found: u64 },
    #[error(
        "{at} covers {size} entries, not more than the {previous} of the checkpoint before it (a copied or reordered checkpoint)"
    )]
    CheckpointNotGrowing {
        at: CheckpointRef,
        size: u64,
        previous: u64,
    },
    #[error(
        "{at} signs root {signed} for the first {size} entries, but they hash to {computed}: an entry in {since}..{size} was changed, inserted, removed or reordered"
    )]
    CheckpointRootMismatch {
        at: CheckpointRef,
        size: u64,
        signed: Hash,
        computed: Hash,
        /// Size of the last checkpoint whose root matched (0 if none): the
        /// change is at an index in `since..size`.
        since: u64,
    },
    #[error(
        "{at} covers {size} entries, but the log holds only {log_size}: entry {log_size} onward is missing"
    )]
    CheckpointBeyondLog {
        at: CheckpointRef,
        size: u64,
        log_size: u64,
    },
}

impl Mismatch {
    /// The entry or checkpoint this mismatch names.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::EntryMissing { position, .. }
            | Self::EntryOutOfOrder { position, .. }
            | Self::EntryNotCanonical { position, .. }
            | Self::LeafHashMismatch { position, .. } => Some(Position::Entry(*position)),
            Self::TooManyEntries => None,
            Self::Checkpoint { at, .. }
            | Self::CheckpointNotGrowing { at, .. }
            | Self::CheckpointRootMismatch { at, .. }
            | Self::CheckpointBeyondLog { at, .. } => Some(Position::Checkpoint(*at)),
            Self::CheckpointMissing { expected, .. } => {
                Some(Position::Checkpoint(CheckpointRef::Stored {
                    seq: *expected,
                }))
            }
        }
    }
}

/// Verification failed: the log does not match, or reading it failed.
#[derive(Debug, Error)]
pub enum VerifyError<E> {
    #[error(transparent)]
    Mismatch(Mismatch),
    #[error("reading the log failed: {0}")]
    Source(E),
}

/// What to verify against.
#[derive(Debug, Clone)]
pub struct VerifyOptions<'a> {
    /// The log's origin; checkpoints of any other origin are rejected.
    pub origin: &'a str,
    /// The trusted checkpoint keys.
    pub keys: &'a [VerifierKey],
    /// Check that every entry body is canonical JSON (costs a parse per
    /// entry).
    pub check_canonical: bool,
    /// How many entries the log is expected to hold, for progress display.
    pub expected_entries: Option<u64>,
    /// Call the progress callback every this many entries (0: only at the
    /// end).
    pub progress_every: u64,
}

impl<'a> VerifyOptions<'a> {
    /// Defaults: canonical check on, progress every 65 536 entries.
    pub fn new(origin: &'a str, keys: &'a [VerifierKey]) -> Self {
        Self {
            origin,
            keys,
            check_canonical: true,
            expected_entries: None,
            progress_every: 1 << 16,
        }
    }
}

/// How far verification has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Entries replayed so far.
    pub entries: u64,
    /// The expected total, if known.
    pub expected_entries: Option<u64>,
    /// Checkpoints whose roots matched so far.
    pub checkpoints: usize,
}

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Entries replayed.
    pub entries: u64,
    /// The root of the whole log.
    pub root: Hash,
    /// Stored checkpoints verified.
    pub stored_checkpoints: usize,
    /// Kept checkpoints verified.
    pub kept_checkpoints: usize,
    /// The largest tree size a verified checkpoint signs (entries after it
    /// are not yet covered by any signature).
    pub signed_size: Option<u64>,
}

struct Target {
    size: u64,
    root: Hash,
    at: CheckpointRef,
}

/// Verifies a stored log.
///
/// `entries` yields the stored entries in index order; `checkpoints` are the
/// stored checkpoints in sequence order; `kept` are checkpoint notes an
/// auditor kept. Returns the first mismatch, or a [`Report`].
pub fn verify_log<I, E>(
    entries: I,
    checkpoints: &[StoredCheckpoint],
    kept: &[String],
    options: &VerifyOptions<'_>,
    mut progress: impl FnMut(&Progress),
) -> Result<Report, VerifyError<E>>
where
    I: IntoIterator<Item = Result<StoredEntry, E>>,
{
    let mismatch = VerifyError::Mismatch;
    let mut targets = Vec::with_capacity(checkpoints.len() + kept.len());
    let mut previous: Option<u64> = None;
    for (i, stored) in checkpoints.iter().enumerate() {
        let expected = i as u64;
        if stored.seq != expected {
            return Err(mismatch(Mismatch::CheckpointMissing {
                expected,
                found: stored.seq,
            }));
        }
        let at = CheckpointRef::Stored { seq: stored.seq };
        let (cp, _) = checkpoint::open(&stored.note, options.keys, options.origin)
            .map_err(|error| mismatch(Mismatch::Checkpoint { at, error }))?;
        if let Some(previous) = previous
            && cp.size() <= previous
        {
            return Err(mismatch(Mismatch::CheckpointNotGrowing {
                at,
                size: cp.size(),
                previous,
            }));
        }
        previous = Some(cp.size());
        targets.push(Target {
            size: cp.size(),
            root: cp.root(),
            at,
        });
    }
    for (ordinal, note) in kept.iter().enumerate() {
        let at = CheckpointRef::Kept { ordinal };
        let (cp, _) = checkpoint::open(note, options.keys, options.origin)
            .map_err(|error| mismatch(Mismatch::Checkpoint { at, error }))?;
        targets.push(Target {
            size: cp.size(),
            root: cp.root(),
            at,
        });
    }
    // Stable: at equal sizes the stored checkpoint is reported first.
    targets.sort_by_key(|t| t.size);

    let mut frontier = Frontier::new();
    let mut next = 0usize;
    let mut since = 0u64;
    let mut report = |entries: u64, checked: usize| {
        progress(&Progress {
            entries,
            expected_entries: options.expected_entries,
            checkpoints: checked,
        });
    };
    check_targets(&frontier, &targets, &mut next, &mut since).map_err(mismatch)?;
    for item in entries {
        let entry = item.map_err(VerifyError::Source)?;
        let position = frontier.size();
        if entry.index != position {
            return Err(mismatch(if entry.index > position {
                Mismatch::EntryMissing {
                    position,
                    found: entry.index,
                }
            } else {
                Mismatch::EntryOutOfOrder {
                    position,
                    found: entry.index,
                }
            }));
        }
        let hash = entry_hash(position, &entry.leaf, options.check_canonical).map_err(mismatch)?;
        frontier
            .push(hash)
            .map_err(|_| mismatch(Mismatch::TooManyEntries))?;
        check_targets(&frontier, &targets, &mut next, &mut since).map_err(mismatch)?;
        if options.progress_every > 0 && frontier.size().is_multiple_of(options.progress_every) {
            report(frontier.size(), next);
        }
    }
    if let Some(target) = targets.get(next) {
        return Err(mismatch(Mismatch::CheckpointBeyondLog {
            at: target.at,
            size: target.size,
            log_size: frontier.size(),
        }));
    }
    report(frontier.size(), next);
    Ok(Report {
        entries: frontier.size(),
        root: frontier.root(),
        stored_checkpoints: checkpoints.len(),
        kept_checkpoints: kept.len(),
        signed_size: targets.last().map(|t| t.size),
    })
}

fn entry_hash(position: u64, leaf: &EntryLeaf, check_canonical: bool) -> Result<Hash, Mismatch> {
    match leaf {
        EntryLeaf::Hash(hash) => Ok(*hash),
        EntryLeaf::Body { bytes, stored_hash } => {
            let computed = leaf_hash(bytes);
            if let Some(stored) = stored_hash
                && *stored != computed
            {
                return Err(Mismatch::LeafHashMismatch {
                    position,
                    stored: *stored,
                    computed,
                });
            }
            if check_canonical {
                let reason = match canonical::is_canonical(bytes) {
                    Ok(true) => None,
                    Ok(false) => Some("the bytes differ from their canonical form".to_owned()),
                    Err(e) => Some(e.to_string()),
                };
                if let Some(reason) = reason {
                    return Err(Mismatch::EntryNotCanonical { position, reason });
                }
            }
            Ok(computed)
        }
    }
}

/// Checks every checkpoint that covers exactly the entries replayed so far.
fn check_targets(
    frontier: &Frontier,
    targets: &[Target],
    next: &mut usize,
    since: &mut u64,
) -> Result<(), Mismatch> {
    let size = frontier.size();
    let mut root = None;
    while let Some(target) = targets.get(*next).filter(|t| t.size == size) {
        let computed = *root.get_or_insert_with(|| frontier.root());
        if computed != target.root {
            return Err(Mismatch::CheckpointRootMismatch {
                at: target.at,
                size,
                signed: target.root,
                computed,
                since: *since,
            });
        }
        *since = size;
        *next += 1;
    }
    Ok(())
}
