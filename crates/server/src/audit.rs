//! The audit log's sequencer: takes the records the store queued in the
//! outbox with each change, gives each its index in its log (one per
//! tenant, plus the system log), builds its leaf (sealing a tenant's
//! details under the tenant's data key), appends leaves and completed
//! Merkle subtrees in one transaction per log, and signs checkpoints every
//! N entries or T seconds (see docs/audit.md, "Storage" and "Checkpoints").
//!
//! One sequencer should run at a time; a second one is harmless: the append
//! is a compare-and-set on the log's size, so the loser's append is refused
//! (`Stale`), it forgets what it cached about that log and tries again on
//! its next run. Checkpoints are unique per size in the store, so two
//! sequencers (or a sequencer and an on-demand request) signing the same
//! size store one checkpoint.

mod details;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gatehouse_audit::canonical::{self, CanonicalError};
use gatehouse_audit::{
    Checkpoint, CheckpointError, Frontier, Hash, SignError, Signer, TreeError, leaf_hash,
};
use gatehouse_core::audit::{
    AUDIT_STORED_LEVEL, AuditCheckpoint, AuditEntry, AuditNode, AuditRecord, SYSTEM_LOG,
    details_context, log_origin,
};
use gatehouse_core::clock::Clock;
use gatehouse_core::store::{AuditStore, StoreError};
use gatehouse_vault::{Keyring, TenantSealer, VaultError};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

pub use details::{
    DETAILS, Details, DetailsError, KEY_DESTROYED, SEALED, WITHHELD, open_details,
    open_details_with,
};

/// Why a sequencer run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SequencerError {
    #[error("audit storage: {0}")]
    Store(#[from] StoreError),
    #[error("audit record of `{subject}` has no canonical form: {source}")]
    Canonical {
        subject: String,
        #[source]
        source: CanonicalError,
    },
    #[error("audit record time cannot be written: {0}")]
    Time(#[from] time::error::Format),
    #[error("audit log `{log}`: {source}")]
    Tree {
        log: String,
        #[source]
        source: TreeError,
    },
    #[error("audit log `{log}`: the stored frontier does not fit its size: {source}")]
    Head {
        log: String,
        #[source]
        source: TreeError,
    },
    /// The tenant's details could not be sealed (the key service failed);
    /// the records stay queued.
    #[error("audit log `{log}`: sealing details: {source}")]
    Seal {
        log: String,
        #[source]
        source: VaultError,
    },
    /// The entries were appended, but their checkpoint was not signed or
    /// stored; the next append or idle pass tries again.
    #[error("audit log `{log}`: {source}")]
    Checkpoint {
        log: String,
        #[source]
        source: IssueError,
    },
    /// The blocking thread building a batch's leaves panicked, or the
    /// runtime shut down under it: that batch and the rest of the run are
    /// not appended (the batches before it are), and stay queued.
    #[error("audit log `{log}`: building its leaves: {source}")]
    Build {
        log: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Why a checkpoint could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("checkpoint body: {0}")]
    Body(#[from] CheckpointError),
    #[error("signing the checkpoint: {0}")]
    Sign(#[from] SignError),
    #[error("storing the checkpoint: {0}")]
    Store(#[from] StoreError),
}

/// Records read per page of a run of [`Sequencer::run`].
pub const SEQUENCE_BATCH: u32 = 16384;

/// Pages one run reads at most before it lets go of the sequencer's state
/// (so that an on-demand checkpoint waits for a few pages, not a backlog).
pub const PAGES_PER_RUN: usize = 4;

/// When the sequencer signs a checkpoint of a log that grew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Right after an append that makes the log this many entries larger
    /// than its latest checkpoint.
    pub entries: NonZeroU64,
    /// On an idle pass, when the log's latest checkpoint is this many
    /// seconds old (or it has none).
    pub every_secs: NonZeroU64,
}

impl Default for CheckpointPolicy {
    /// Every 1,000 entries or 60 seconds.
    fn default() -> Self {
        Self {
            entries: NonZeroU64::MIN.saturating_add(999),
            every_secs: NonZeroU64::MIN.saturating_add(59),
        }
    }
}

/// What signing checkpoints needs.
struct Checkpointing {
    signer: Arc<dyn Signer>,
    clock: Arc<dyn Clock>,
    policy: CheckpointPolicy,
}

/// A log's latest checkpoint, as far as this sequencer knows.
#[derive(Debug, Clone, Copy)]
struct Latest {
    size: u64,
    at: OffsetDateTime,
}

/// What a sequencer caches between runs, per log.
#[derive(Default)]
struct State {
    /// Each log's frontier after this sequencer's last append, so that a
    /// run reads no node rows.
    frontiers: HashMap<String, Frontier>,
    /// Each log's latest checkpoint (`None`: it has none); a log missing
    /// here is read from the store when needed.
    latest: HashMap<String, Option<Latest>>,
}

impl State {
    /// Forgets what another sequencer may have changed.
    fn forget(&mut self, log: &str) {
        self.frontiers.remove(log);
        self.latest.remove(log);
    }
}

/// Records appended per transaction. A run of [`SEQUENCE_BATCH`] records
/// of one log is written in a few transactions, so that the next one's
/// leaves are built while one is being written.
const APPEND_CHUNK: usize = 2048;

/// One transaction's worth of a log: its entries, the subtrees they
/// complete, the outbox records they consume, and the log's frontier
/// after them.
struct Batch {
    start: u64,
    entries: Vec<AuditEntry>,
    nodes: Vec<AuditNode>,
    consumed: Vec<i64>,
    frontier: Frontier,
}

impl Batch {
    /// [`Batch::build`] on a blocking thread. Sealing, canonicalising and
    /// hashing [`APPEND_CHUNK`] leaves takes tens of milliseconds of CPU;
    /// on an async worker that time would delay the append being written
    /// meanwhile (each of its statements needs a worker to send the next)
    /// and the tasks queueing records for the writer.
    ///
    /// The work starts when this is called, not when it is awaited.
    fn build_beside(
        log: Arc<str>,
        frontier: Frontier,
        records: Vec<(i64, AuditRecord)>,
        sealing: Arc<Sealing>,
    ) -> impl Future<Output = Result<Self, SequencerError>> {
        let building = {
            let log = log.clone();
            tokio::task::spawn_blocking(move || Self::build(&log, frontier, &records, &sealing))
        };
        async move {
            building.await.map_err(|source| SequencerError::Build {
                log: log.to_string(),
                source,
            })?
        }
    }

    /// Builds the leaves of `records`, appended to `log` at `frontier`.
    fn build(
        log: &str,
        mut frontier: Frontier,
        records: &[(i64, AuditRecord)],
        sealing: &Sealing,
    ) -> Result<Self, SequencerError> {
        let start = frontier.size();
        let mut entries = Vec::with_capacity(records.len());
        let mut nodes = Vec::with_capacity(records.len() / 4 + 1);
        let mut consumed = Vec::with_capacity(records.len());
        for (id, record) in records {
            let idx = frontier.size();
            let leaf = leaf(log, idx, record, sealing)?;
            let hash = leaf_hash(leaf.as_bytes());
            frontier
                .push_with(hash, |id, h| {
                    // The store hashes the lower levels from the entries.
                    if id.level < AUDIT_STORED_LEVEL {
                        return;
                    }
                    nodes.push(AuditNode {
                        level: id.level,
                        index: id.index,
                        hash: *h.as_bytes(),
                    });
                })
                .map_err(|source| SequencerError::Tree {
                    log: log.to_owned(),
                    source,
                })?;
            entries.push(AuditEntry {
                idx,
                at: record.at,
                actor: record.actor.clone(),
                action: record.action.clone(),
                subject: record.subject.clone(),
                leaf,
                leaf_hash: *hash.as_bytes(),
            });
            consumed.push(*id);
        }
        Ok(Self {
            start,
            entries,
            nodes,
            consumed,
            frontier,
        })
    }
}

/// How a log's details go into its leaves in one run.
enum Sealing {
    /// The system log: in clear.
    Clear,
    /// A tenant's log: sealed under its data key.
    Sealed(TenantSealer),
    /// A tenant's log whose key is destroyed: left out.
    Withheld,
}

/// Appends outbox records to their logs and signs their checkpoints.
pub struct Sequencer {
    store: Arc<dyn AuditStore>,
    keyring: Arc<Keyring>,
    checkpoints: Option<Checkpointing>,
    /// Held for a whole run, so runs are serial.
    state: Mutex<State>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer")
            .field("checkpoints", &self.checkpoints.as_ref().map(|c| c.policy))
            .finish_non_exhaustive()
    }
}

impl Sequencer {
    /// A sequencer over `store`, sealing tenants' details with `keyring`,
    /// with nothing cached. It signs no checkpoints until
    /// [`Sequencer::with_checkpoints`].
    pub fn new(store: Arc<dyn AuditStore>, keyring: Arc<Keyring>) -> Self {
        Self {
            store,
            keyring,
            checkpoints: None,
            state: Mutex::new(State::default()),
        }
    }

    /// Signs checkpoints with `signer` as `policy` says, reading the time
    /// from `clock`.
    pub fn with_checkpoints(
        mut self,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
        policy: CheckpointPolicy,
    ) -> Self {
        self.checkpoints = Some(Checkpointing {
            signer,
            clock,
            policy,
        });
        self
    }

    /// Sequences until `shutdown` completes: a batch at a time while records
    /// are waiting, then every `idle` when the outbox is empty, signing the
    /// checkpoints that are due at least every `idle`. A failed run is
    /// logged and retried; records stay queued until appended.
    pub async fn run(
        &self,
        idle: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut last_due = tokio::time::Instant::now();
        loop {
            let appended = match self.run_once(SEQUENCE_BATCH).await {
                Ok(n) => n,
                Err(err) => {
                    tracing::error!(%err, "audit sequencing failed; retrying");
                    0
                }
            };
            if appended == 0 || last_due.elapsed() >= idle {
                if let Err(err) = self.sign_due_checkpoints().await {
                    tracing::error!(%err, "signing due audit checkpoints failed; retrying");
                }
                last_due = tokio::time::Instant::now();
            }
            if appended > 0 {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// Sequences batches until the outbox is empty (or only holds records
    /// of logs another sequencer is appending to); returns how many were
    /// appended. For a process that is not running [`Sequencer::run`] and
    /// must see every committed record in the logs (an export at the CLI).
    pub async fn catch_up(&self) -> Result<usize, SequencerError> {
        let mut appended = 0;
        loop {
            match self.run_once(SEQUENCE_BATCH).await? {
                0 => return Ok(appended),
                n => appended += n,
            }
        }
    }

    /// Sequences the oldest outbox records, in pages of `limit`, at most
    /// [`PAGES_PER_RUN`] pages; returns how many were appended. Each page
    /// after the first is read (the records above the current page's ids)
    /// while the current one is appended, so the writer does not wait for
    /// the read. A log whose append was refused because another sequencer
    /// appended meanwhile is skipped (its records stay queued), and the run
    /// ends there. After each append, signs a checkpoint of the log if it
    /// grew by the policy's number of entries since its latest one.
    pub async fn run_once(&self, limit: u32) -> Result<usize, SequencerError> {
        let mut state = self.state.lock().await;
        let mut page = self.store.pending_audit(limit).await?;
        let mut appended = 0;
        for turn in 1..=PAGES_PER_RUN {
            let Some(&(last, _)) = page.last() else {
                break;
            };
            let next = (turn < PAGES_PER_RUN).then(|| {
                let store = self.store.clone();
                tokio::spawn(async move { store.pending_audit_after(last, limit).await })
            });
            let sequenced = self.sequence_page(&mut state, page).await;
            let (n, whole) = match sequenced {
                Ok(done) => done,
                Err(err) => {
                    if let Some(next) = next {
                        next.abort();
                    }
                    return Err(err);
                }
            };
            appended += n;
            page = match next {
                Some(next) if whole => match next.await {
                    Ok(read) => read?,
                    Err(join) => {
                        return Err(StoreError::Backend {
                            context: "reading the audit outbox",
                            source: Box::new(join),
                        }
                        .into());
                    }
                },
                Some(next) => {
                    next.abort();
                    break;
                }
                None => break,
            };
        }
        Ok(appended)
    }

    /// Appends one page of outbox records (in id order) to their logs;
    /// answers how many were appended and whether every log took its
    /// records (`false`: one was refused and keeps them queued).
    async fn sequence_page(
        &self,
        state: &mut State,
        pending: Vec<(i64, AuditRecord)>,
    ) -> Result<(usize, bool), SequencerError> {
        let mut whole = true;
        let mut by_log: BTreeMap<String, Vec<(i64, AuditRecord)>> = BTreeMap::new();
        for (id, record) in pending {
            by_log.entry(record.log()).or_default().push((id, record));
        }
        let mut appended = 0;
        for (log, records) in by_log {
            let frontier = match state.frontiers.get(&log) {
                Some(f) => f.clone(),
                None => self.restore(&log).await?,
            };
            let sealing = Arc::new(self.sealing(&log, &records).await?);
            let shared_log: Arc<str> = Arc::from(log.as_str());
            let mut records = records.into_iter();
            let mut chunks = std::iter::from_fn(move || {
                let chunk: Vec<_> = records.by_ref().take(APPEND_CHUNK).collect();
                (!chunk.is_empty()).then_some(chunk)
            });
            let mut next = match chunks.next() {
                Some(chunk) => Some(
                    Batch::build_beside(shared_log.clone(), frontier, chunk, sealing.clone())
                        .await?,
                ),
                None => None,
            };
            // Pipelined: while batch k is written (on the store's side),
            // the leaves of batch k+1 are sealed, canonicalised and hashed
            // on a blocking thread, from the frontier batch k leaves. If
            // batch k is refused, batch k+1 is dropped unwritten.
            while let Some(batch) = next.take() {
                let Batch {
                    start,
                    entries,
                    nodes,
                    consumed,
                    frontier,
                } = batch;
                let count = entries.len();
                let writing = {
                    let store = self.store.clone();
                    let log = log.clone();
                    tokio::spawn(async move {
                        store
                            .append_audit(&log, start, &entries, &nodes, &consumed)
                            .await
                    })
                };
                let following = chunks.next().map(|chunk| {
                    Batch::build_beside(
                        shared_log.clone(),
                        frontier.clone(),
                        chunk,
                        sealing.clone(),
                    )
                });
                let written = match writing.await {
                    Ok(written) => written,
                    Err(join) => Err(StoreError::Backend {
                        context: "appending audit entries",
                        source: Box::new(join),
                    }),
                };
                match written {
                    Ok(()) => {
                        appended += count;
                        self.checkpoint_if_grown(state, &log, &frontier).await?;
                        state.frontiers.insert(log.clone(), frontier);
                        next = match following {
                            Some(building) => Some(building.await?),
                            None => None,
                        };
                    }
                    Err(StoreError::Stale(what)) => {
                        tracing::info!(
                            log,
                            what,
                            "another sequencer appended to the audit log; retrying on the next run"
                        );
                        state.forget(&log);
                        whole = false;
                    }
                    Err(err) => {
                        state.forget(&log);
                        return Err(err.into());
                    }
                }
            }
        }
        Ok((appended, whole))
    }

    /// How this run writes the details of `log`'s records: in clear in the
    /// system log; sealed under the tenant's key in a tenant's log, or
    /// withheld if that key is destroyed (the tenant was deleted), so that
    /// a shredded tenant neither blocks its log nor has details in clear.
    async fn sealing(
        &self,
        log: &str,
        records: &[(i64, AuditRecord)],
    ) -> Result<Sealing, SequencerError> {
        let Some(tenant) = records.first().and_then(|(_, r)| r.tenant_id) else {
            return Ok(Sealing::Clear);
        };
        match self.keyring.sealer(tenant).await {
            Ok(sealer) => Ok(Sealing::Sealed(sealer)),
            Err(VaultError::KeyDestroyed(_)) => {
                tracing::warn!(
                    log,
                    records = records.len(),
                    "the tenant's data key is destroyed; its audit entries are recorded without their details"
                );
                Ok(Sealing::Withheld)
            }
            Err(source) => Err(SequencerError::Seal {
                log: log.to_owned(),
                source,
            }),
        }
    }

    /// Signs a checkpoint of `log` at `frontier` if it grew by the policy's
    /// number of entries since its latest checkpoint.
    async fn checkpoint_if_grown(
        &self,
        state: &mut State,
        log: &str,
        frontier: &Frontier,
    ) -> Result<(), SequencerError> {
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(());
        };
        let signed = self.latest(state, log).await?.map_or(0, |l| l.size);
        if frontier.size().saturating_sub(signed) >= checkpoints.policy.entries.get() {
            self.sign(checkpoints, state, log, frontier.size(), frontier.root())
                .await?;
        }
        Ok(())
    }

    /// Signs a checkpoint of every log that grew since its latest
    /// checkpoint and whose latest checkpoint is older than the policy's
    /// seconds (or that has none). Returns how many were stored. `run`
    /// calls this when idle; tests call it with a fake clock.
    pub async fn sign_due_checkpoints(&self) -> Result<usize, SequencerError> {
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(0);
        };
        let mut state = self.state.lock().await;
        let now = checkpoints.clock.now();
        let every = time::Duration::seconds(
            i64::try_from(checkpoints.policy.every_secs.get()).unwrap_or(i64::MAX),
        );
        let mut signed = 0;
        for (log, size) in self.store.audit_logs().await? {
            let latest = self.latest(&mut state, &log).await?;
            let due = match latest {
                None => size > 0,
                Some(latest) => latest.size < size && latest.at + every <= now,
            };
            if !due {
                continue;
            }
            let frontier = match state.frontiers.get(&log) {
                Some(f) if f.size() == size => f.clone(),
                _ => self.restore(&log).await?,
            };
            if self
                .sign(
                    checkpoints,
                    &mut state,
                    &log,
                    frontier.size(),
                    frontier.root(),
                )
                .await?
            {
                signed += 1;
            }
            state.frontiers.insert(log, frontier);
        }
        Ok(signed)
    }

    /// The latest checkpoint of `log`, from the cache or the store.
    async fn latest(&self, state: &mut State, log: &str) -> Result<Option<Latest>, StoreError> {
        if let Some(latest) = state.latest.get(log) {
            return Ok(*latest);
        }
        let latest = self
            .store
            .list_checkpoints(log)
            .await?
            .last()
            .map(|c| Latest {
                size: c.size,
                at: c.created_at,
            });
        state.latest.insert(log.to_owned(), latest);
        Ok(latest)
    }

    /// Signs and stores the checkpoint of `log` at `size`; whether it was
    /// stored (`false`: another node had signed that size).
    async fn sign(
        &self,
        checkpoints: &Checkpointing,
        state: &mut State,
        log: &str,
        size: u64,
        root: Hash,
    ) -> Result<bool, SequencerError> {
        let now = checkpoints.clock.now();
        let stored = sign_checkpoint(
            self.store.as_ref(),
            checkpoints.signer.as_ref(),
            log,
            size,
            root,
            now,
        )
        .await
        .map_err(|source| SequencerError::Checkpoint {
            log: log.to_owned(),
            source,
        })?;
        match stored {
            Some(c) => {
                let latest = Latest {
                    size: c.size,
                    at: c.created_at,
                };
                state.latest.insert(log.to_owned(), Some(latest));
                Ok(true)
            }
            // Someone else signed: read their checkpoint back when needed.
            None => {
                state.latest.remove(log);
                Ok(false)
            }
        }
    }

    /// The log's frontier, rebuilt from its stored head.
    async fn restore(&self, log: &str) -> Result<Frontier, SequencerError> {
        let head = self.store.audit_head(log).await?;
        let hashes = head
            .frontier
            .iter()
            .map(|n| Hash::from_bytes(n.hash))
            .collect();
        Frontier::restore(head.size, hashes).map_err(|source| SequencerError::Head {
            log: log.to_owned(),
            source,
        })
    }
}

/// Signs the checkpoint of `log` at `size` with tree root `root` (origin
/// `log_origin(key name, log)`) and stores it as created `at`. `None` if a
/// checkpoint of that size is stored already (another node or request
/// signed it first): there is never a second one of a size.
pub async fn sign_checkpoint(
    store: &dyn AuditStore,
    signer: &dyn Signer,
    log: &str,
    size: u64,
    root: Hash,
    at: OffsetDateTime,
) -> Result<Option<AuditCheckpoint>, IssueError> {
    let origin = log_origin(signer.key_name().as_str(), log);
    let note = Checkpoint::new(origin, size, root)?.sign(signer).await?;
    let checkpoint = AuditCheckpoint {
        log: log.to_owned(),
        size,
        note: note.to_string(),
        created_at: at,
    };
    match store.put_checkpoint(&checkpoint).await {
        Ok(()) => {
            tracing::debug!(log, size, "signed an audit checkpoint");
            Ok(Some(checkpoint))
        }
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The leaf of `record` at `idx` in `log`: the RFC 8785 canonical JSON of
/// the entry. What is clear: the log, index, time, actor, action, subject
/// and tenant. The details are in clear only in the system log; a tenant's
/// entry holds them sealed under the tenant's key, bound to `idx`
/// (`sealed`, base64), or `details_withheld` if that key is destroyed.
fn leaf(
    log: &str,
    idx: u64,
    record: &AuditRecord,
    sealing: &Sealing,
) -> Result<String, SequencerError> {
    let mut entry = Map::new();
    entry.insert("log".into(), json!(log));
    entry.insert("idx".into(), json!(idx));
    entry.insert("at".into(), json!(record.at.format(&Rfc3339)?));
    entry.insert("actor".into(), json!(record.actor));
    entry.insert("action".into(), json!(record.action));
    entry.insert("subject".into(), json!(record.subject));
    if log != SYSTEM_LOG {
        entry.insert(
            "tenant_id".into(),
            json!(record.tenant_id.map(|t| t.to_string())),
        );
    }
    match sealing {
        Sealing::Clear => {
            entry.insert(DETAILS.into(), representable(record));
        }
        Sealing::Sealed(sealer) => {
            // One canonicalisation in the usual case: the bytes are sealed.
            let bytes = canonical::to_vec(&record.details)
                .or_else(|_| canonical::to_vec(&representable(record)))
                .map_err(|source| SequencerError::Canonical {
                    subject: record.subject.clone(),
                    source,
                })?;
            let sealed = sealer
                .seal(&details_context(idx), &bytes)
                .map_err(|source| SequencerError::Seal {
                    log: log.to_owned(),
                    source,
                })?;
            entry.insert(SEALED.into(), json!(BASE64.encode(sealed)));
        }
        Sealing::Withheld => {
            entry.insert(WITHHELD.into(), json!(KEY_DESTROYED));
        }
    }
    canonical::to_string(&Value::Object(entry)).map_err(|source| SequencerError::Canonical {
        subject: record.subject.clone(),
        source,
    })
}

/// The record's details if they have a canonical form; otherwise (an
/// integer beyond 2^53, nesting deeper than 128) their JSON text as
/// `{"json_text": …}`, so that one odd record neither blocks its log nor is
/// dropped.
fn representable(record: &AuditRecord) -> Value {
    match canonical::to_vec(&record.details) {
        Ok(_) => record.details.clone(),
        Err(err) => {
            tracing::warn!(
                subject = record.subject,
                action = record.action,
                %err,
                "audit details have no canonical JSON form; recording their JSON text"
            );
            json!({ "json_text": record.details.to_string() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::id::TenantId;

    fn record(tenant_id: Option<TenantId>, details: Value) -> AuditRecord {
        AuditRecord {
            at: OffsetDateTime::UNIX_EPOCH,
            tenant_id,
            actor: "op_x".into(),
            action: "workflow.step.succeeded".into(),
            subject: "wf_1".into(),
            details,
        }
    }

    #[test]
    fn system_leaves_hold_their_details_and_withheld_leaves_none()
    -> Result<(), Box<dyn std::error::Error>> {
        let details = json!({"b": 1, "a": "x"});
        let text = leaf(
            SYSTEM_LOG,
            0,
            &record(None, details.clone()),
            &Sealing::Clear,
        )?;
        assert!(canonical::is_canonical(text.as_bytes())?);
        let value: Value = serde_json::from_str(&text)?;
        assert_eq!(value["details"], details);
        assert_eq!(value.get("tenant_id"), None);
        assert_eq!(value["at"], "1970-01-01T00:00:00Z");
        assert_eq!(
            open_details_with(None, &text)?,
            Details::Clear(details.clone())
        );

        let tenant = TenantId::generate(OffsetDateTime::UNIX_EPOCH);
        let text = leaf(
            &tenant.to_string(),
            3,
            &record(Some(tenant), details),
            &Sealing::Withheld,
        )?;
        let value: Value = serde_json::from_str(&text)?;
        assert_eq!(value["idx"], 3);
        assert_eq!(value["tenant_id"], tenant.to_string().as_str());
        assert_eq!(value[WITHHELD], KEY_DESTROYED);
        assert_eq!(value.get("details"), None);
        assert_eq!(value.get(SEALED), None);
        assert_eq!(
            open_details_with(None, &text)?,
            Details::Withheld(KEY_DESTROYED.into())
        );
        Ok(())
    }

    #[test]
    fn details_without_a_canonical_form_are_kept_as_json_text()
    -> Result<(), Box<dyn std::error::Error>> {
        let details = json!({"n": 9_007_199_254_740_993_u64});
        let text = leaf(SYSTEM_LOG, 0, &record(None, details), &Sealing::Clear)?;
        let value: Value = serde_json::from_str(&text)?;
        assert_eq!(value["details"]["json_text"], r#"{"n":9007199254740993}"#);
        Ok(())
    }

    #[test]
    fn leaves_that_are_not_entries_are_refused() {
        for text in [
            "not json",
            r#"{"log":"system","idx":0}"#,
            r#"{"log":"ten_x","idx":0,"tenant_id":"ten_x","sealed":"***"}"#,
            r#"{"log":"system","idx":0,"tenant_id":"ten_01jd8x3k2q9f6v0c4m7r5t8w1y","sealed":"AA=="}"#,
        ] {
            assert!(
                matches!(open_details_with(None, text), Err(DetailsError::Leaf(_))),
                "{text}"
            );
        }
    }
}
