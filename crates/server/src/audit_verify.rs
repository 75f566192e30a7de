//! Verifying a log as stored: stream its entries from the store, replay
//! them with `gatehouse_audit::verify_log` against its stored checkpoints
//! (and any an auditor kept), and check the log's recorded size (see
//! docs/audit.md, "Verifying a stored log").
//!
//! Reading and hashing overlap: the caller's task reads the next pages
//! (two ranges at once, on two connections) while a blocking thread hashes
//! the current ones, through a channel of a few pages. Memory stays at a
//! few pages and the tree's O(log n) frontier.

use gatehouse_audit::checkpoint::Checkpoint;
use gatehouse_audit::note::SignedNote;
use gatehouse_audit::{
    EntryLeaf, Hash, Mismatch, Position, Progress, Report, StoredCheckpoint, StoredEntry,
    VerifierKey, VerifyError, VerifyOptions, verify_log,
};
use gatehouse_core::store::{AuditLeaf, AuditStore, StoreError};
use tokio::sync::mpsc;

/// Indexes read per query.
pub const VERIFY_PAGE: u32 = 16_384;
/// Pages read ahead of the hashing thread.
const PAGES_AHEAD: usize = 4;

/// What to verify a stored log against.
#[derive(Debug, Clone)]
pub struct VerifyStoredOptions {
    /// The log's checkpoint origin (`gatehouse_core::audit::log_origin`).
    pub origin: String,
    /// The keys whose signatures are trusted.
    pub keys: Vec<VerifierKey>,
    /// Checkpoint notes of this log that an auditor kept.
    pub kept: Vec<String>,
    /// Check that every entry is canonical JSON (RFC 8785).
    pub check_canonical: bool,
    /// Report progress every this many entries (0: only at the end).
    pub progress_every: u64,
}

impl VerifyStoredOptions {
    /// Verification against `keys` under `origin`, no kept checkpoints,
    /// progress every 100 000 entries, canonical form not checked: the
    /// tree and the checkpoints commit to the bytes whatever their form,
    /// and parsing every entry doubles the cost.
    pub fn new(origin: impl Into<String>, keys: Vec<VerifierKey>) -> Self {
        Self {
            origin: origin.into(),
            keys,
            kept: Vec::new(),
            check_canonical: false,
            progress_every: 100_000,
        }
    }
}

/// The first thing in a stored log that does not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredMismatch {
    /// Found while replaying the entries and checkpoints.
    #[error(transparent)]
    Log(Mismatch),
    /// Fewer entries are stored than the log's size records: its tail was
    /// cut.
    #[error(
        "the log records {recorded} entries, but only {found} are stored: entry {found} onward is missing"
    )]
    TailMissing {
        /// The size the log records.
        recorded: u64,
        /// The entries stored.
        found: u64,
    },
    /// More entries are stored than the log's size records: rows were
    /// added after its last entry.
    #[error(
        "the log records {recorded} entries, but {found} are stored: entry {recorded} onward was added"
    )]
    ExtraEntries {
        /// The size the log records.
        recorded: u64,
        /// The entries stored.
        found: u64,
    },
}

impl StoredMismatch {
    /// The entry or checkpoint this mismatch names.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Log(mismatch) => mismatch.position(),
            Self::TailMissing { found, .. } => Some(Position::Entry(*found)),
            Self::ExtraEntries { recorded, .. } => Some(Position::Entry(*recorded)),
        }
    }
}

/// Why a stored log did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyStoredError {
    /// The log does not match: tampering, or a bug that broke it.
    #[error(transparent)]
    Mismatch(StoredMismatch),
    /// Reading the log failed (`NotFound("audit log")` for a log never
    /// appended to).
    #[error("reading the audit log: {0}")]
    Store(#[from] StoreError),
    /// The hashing thread failed.
    #[error("the verification thread failed: {0}")]
    Task(String),
}

/// Verifies the stored log `log`: every entry's index and leaf hash, every
/// stored checkpoint (in size order, numbered 0, 1, …), the kept
/// checkpoints, and the log's recorded size. `progress` runs on the
/// hashing thread. Returns the report, or the first mismatch.
pub async fn verify_stored(
    store: &dyn AuditStore,
    log: &str,
    options: VerifyStoredOptions,
    progress: impl FnMut(Progress) + Send + 'static,
) -> Result<Report, VerifyStoredError> {
    let Some(recorded) = store.audit_log_size(log).await? else {
        return Err(StoreError::NotFound("audit log").into());
    };
    let checkpoints: Vec<StoredCheckpoint> = store
        .list_checkpoints(log)
        .await?
        .into_iter()
        .enumerate()
        .map(|(seq, c)| StoredCheckpoint {
            seq: seq as u64,
            note: c.note,
        })
        .collect();

    let (pages, inbox) = mpsc::channel::<Vec<AuditLeaf>>(PAGES_AHEAD);
    let hashing = tokio::task::spawn_blocking(move || {
        replay(inbox, &checkpoints, &options, recorded, progress)
    });
    let read = read_pages(store, log, recorded, pages).await;
    let replayed = hashing
        .await
        .map_err(|e| VerifyStoredError::Task(e.to_string()))?;
    // A read that failed ended the stream early: that is the error, not
    // what the replay made of the shortened log.
    read?;
    let report = replayed.map_err(VerifyStoredError::Mismatch)?;
    if report.entries < recorded {
        return Err(VerifyStoredError::Mismatch(StoredMismatch::TailMissing {
            recorded,
            found: report.entries,
        }));
    }
    // Read again: the sequencer may have appended while this ran.
    let recorded = store.audit_log_size(log).await?.unwrap_or(recorded);
    if report.entries > recorded {
        return Err(VerifyStoredError::Mismatch(StoredMismatch::ExtraEntries {
            recorded,
            found: report.entries,
        }));
    }
    Ok(report)
}

/// Sends the log's entries in index order, until the end or until the
/// hashing side hangs up (it found a mismatch). Pages are ranges of
/// [`VERIFY_PAGE`] indexes, read two at a time on two connections, so
/// reading is spread over two cores; ranges never overlap, whatever rows
/// are missing or added. Up to the recorded size every range is read;
/// beyond it, reading goes on while rows are found (rows appended
/// meanwhile, or added by tampering).
async fn read_pages(
    store: &dyn AuditStore,
    log: &str,
    recorded: u64,
    pages: mpsc::Sender<Vec<AuditLeaf>>,
) -> Result<(), StoreError> {
    let page = u64::from(VERIFY_PAGE);
    let mut from = 0u64;
    loop {
        let middle = from.saturating_add(page);
        let end = middle.saturating_add(page);
        let (first, second) = tokio::join!(
            store.audit_leaves(log, from..middle),
            store.audit_leaves(log, middle..end)
        );
        let (first, second) = (first?, second?);
        let found = !first.is_empty() || !second.is_empty();
        for leaves in [first, second] {
            if !leaves.is_empty() && pages.send(leaves).await.is_err() {
                return Ok(());
            }
        }
        from = end;
        if from >= recorded && !found {
            // Past the end: one last look for rows further on.
            match store.audit_entries(log, from, 1).await?.first() {
                Some(entry) => from = entry.idx,
                None => return Ok(()),
            }
        }
        if from == u64::MAX {
            return Ok(());
        }
    }
}

/// The hashing side: replays the pages as they arrive.
fn replay(
    mut inbox: mpsc::Receiver<Vec<AuditLeaf>>,
    checkpoints: &[StoredCheckpoint],
    options: &VerifyStoredOptions,
    recorded: u64,
    mut progress: impl FnMut(Progress),
) -> Result<Report, StoredMismatch> {
    let mut verify = VerifyOptions::new(&options.origin, &options.keys);
    verify.check_canonical = options.check_canonical;
    verify.expected_entries = Some(recorded);
    verify.progress_every = options.progress_every;
    let entries = std::iter::from_fn(move || inbox.blocking_recv())
        .flatten()
        .map(|leaf| {
            Ok::<_, std::convert::Infallible>(StoredEntry {
                index: leaf.idx,
                leaf: EntryLeaf::Body {
                    bytes: leaf.leaf.into_bytes(),
                    stored_hash: Some(Hash::from_bytes(leaf.leaf_hash)),
                },
            })
        });
    verify_log(entries, checkpoints, &options.kept, &verify, |p| {
        progress(*p);
    })
    .map_err(|e| match e {
        VerifyError::Mismatch(mismatch) => StoredMismatch::Log(mismatch),
        VerifyError::Source(never) => match never {},
    })
}

/// Why a kept checkpoint could not be routed to a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeptNoteError {
    /// Not a checkpoint note.
    #[error("not a checkpoint note: {0}")]
    Malformed(String),
    /// Its origin is not `<key name>/<log>`.
    #[error(
        "checkpoint origin `{origin}` is not a log of the key `{key_name}` (`{key_name}/<log>`)"
    )]
    ForeignOrigin {
        /// The note's origin.
        origin: String,
        /// This deployment's key name.
        key_name: String,
    },
}

/// The log a kept checkpoint note is about, from its origin
/// (`<key name>/<log>`). The note is only parsed here; verification checks
/// its signature.
pub fn kept_note_log(note: &str, key_name: &str) -> Result<String, KeptNoteError> {
    let parsed = SignedNote::parse(note).map_err(|e| KeptNoteError::Malformed(e.to_string()))?;
    let body = Checkpoint::parse_body(parsed.text())
        .map_err(|e| KeptNoteError::Malformed(e.to_string()))?;
    body.origin()
        .strip_prefix(key_name)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|log| !log.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| KeptNoteError::ForeignOrigin {
            origin: body.origin().to_owned(),
            key_name: key_name.to_owned(),
        })
}
