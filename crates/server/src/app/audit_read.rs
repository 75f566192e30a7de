//! Reading the audit log: browsing entries, inclusion and consistency
//! proofs, and verifying a stored log (docs/audit.md, "Browsing", "Proofs"
//! and "Verifying a stored log"). Everything here needs `ReadAudit`; a log
//! is named as `App::audit_log_of` reads it (`system`, a tenant id or slug).

use gatehouse_audit::note::Signer as _;
use gatehouse_audit::{CheckpointRef, Hash, NodeId, Position, Progress, ProofError, ProofPlan};
use gatehouse_core::audit::{AuditEntry, log_origin};
use gatehouse_core::id::TenantId;
use gatehouse_core::store::{ActionFilter, AuditCursor, AuditFilter, AuditRow, StoreError};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Actor, App, Page};
use crate::audit_verify::{StoredMismatch, VerifyStoredError, VerifyStoredOptions, verify_stored};
use crate::authz::{Permission, authorize_list};
use crate::error::AppError;

/// The most entries one page lists.
pub const MAX_AUDIT_PAGE: u32 = 1000;

/// Which entries to list; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this log: `system`, a tenant id or slug.
    pub log: Option<String>,
    /// Only by this actor.
    pub actor: Option<String>,
    /// Only these actions (`event.received`, or a prefix `workflow.*`).
    pub action: Option<ActionFilter>,
    /// Only at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only before this time.
    pub until: Option<OffsetDateTime>,
    /// Where the previous page ended.
    pub cursor: Option<AuditCursor>,
    /// Page size, 1–1000.
    pub limit: u32,
}

/// One entry of a log, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditEntryView {
    /// Its log: a tenant id, or `system`.
    #[schema(example = "system")]
    pub log: String,
    /// Its index in the log.
    pub idx: u64,
    /// When the change happened (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// Who did it.
    pub actor: String,
    /// What was done.
    #[schema(example = "workflow.step.succeeded")]
    pub action: String,
    /// To what.
    pub subject: String,
    /// `SHA-256(0x00 ‖ leaf)`, hex.
    pub leaf_hash: String,
    /// The leaf: the exact canonical JSON text the leaf hash covers.
    pub leaf: String,
}

impl AuditEntryView {
    fn new(log: String, entry: AuditEntry) -> Self {
        Self {
            log,
            idx: entry.idx,
            at: entry.at,
            actor: entry.actor,
            action: entry.action,
            subject: entry.subject,
            leaf_hash: Hash::from_bytes(entry.leaf_hash).to_hex(),
            leaf: entry.leaf,
        }
    }
}

/// A log and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditLogView {
    /// The log: a tenant id, or `system`.
    pub log: String,
    /// Entries appended.
    pub size: u64,
    /// The tenant's slug, when the log is a tenant's and the tenant exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_slug: Option<String>,
}

/// An RFC 9162 inclusion proof of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct InclusionProof {
    /// The log.
    pub log: String,
    /// The entry's index.
    pub index: u64,
    /// The size of the tree the proof is for.
    pub tree_size: u64,
    /// The entry's leaf hash, hex.
    pub leaf_hash: String,
    /// The root of the tree of `tree_size` entries, hex.
    pub root: String,
    /// The audit path, hex, from the leaf up.
    pub proof: Vec<String>,
    /// The signed checkpoint of `tree_size`, if one was issued: it signs
    /// `root`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
}

/// An RFC 9162 consistency proof between two sizes of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConsistencyProof {
    /// The log.
    pub log: String,
    /// The older size.
    pub old_size: u64,
    /// The newer size.
    pub new_size: u64,
    /// The root at `old_size`, hex.
    pub old_root: String,
    /// The root at `new_size`, hex.
    pub new_root: String,
    /// The proof, hex.
    pub proof: Vec<String>,
    /// The signed checkpoint of `old_size`, if one was issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_checkpoint: Option<String>,
    /// The signed checkpoint of `new_size`, if one was issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_checkpoint: Option<String>,
}

/// The outcome of verifying a stored log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AuditVerification {
    /// The log.
    pub log: String,
    /// Whether everything matched.
    pub verified: bool,
    /// Entries verified (0 when a mismatch stopped verification).
    pub entries: u64,
    /// The root of the whole log, hex (when verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Stored checkpoints checked (when verified).
    pub checkpoints: usize,
    /// Kept checkpoints checked (when verified).
    pub kept_checkpoints: usize,
    /// The largest size a verified checkpoint signs: later entries are not
    /// signed yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_size: Option<u64>,
    /// The first mismatch (when not verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<MismatchView>,
}

/// Where a log stops matching, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MismatchView {
    /// For people.
    pub message: String,
    /// The entry it names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<u64>,
    /// The stored checkpoint it names (0 is the smallest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_checkpoint: Option<u64>,
    /// The kept checkpoint it names (0 is the first given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_checkpoint: Option<usize>,
}

impl MismatchView {
    /// Describes `mismatch`.
    pub fn new(mismatch: &StoredMismatch) -> Self {
        let mut view = Self {
            message: mismatch.to_string(),
            entry: None,
            stored_checkpoint: None,
            kept_checkpoint: None,
        };
        match mismatch.position() {
            Some(Position::Entry(idx)) => view.entry = Some(idx),
            Some(Position::Checkpoint(CheckpointRef::Stored { seq })) => {
                view.stored_checkpoint = Some(seq);
            }
            Some(Position::Checkpoint(CheckpointRef::Kept { ordinal })) => {
                view.kept_checkpoint = Some(ordinal);
            }
            None => {}
        }
        view
    }

    /// `entry 5`, `stored checkpoint #2`, `kept checkpoint 1`, or `the log`.
    pub fn position(&self) -> String {
        match (self.entry, self.stored_checkpoint, self.kept_checkpoint) {
            (Some(idx), _, _) => format!("entry {idx}"),
            (_, Some(seq), _) => format!("stored checkpoint #{seq}"),
            (_, _, Some(ordinal)) => format!("kept checkpoint {}", ordinal + 1),
            _ => "the log".to_owned(),
        }
    }
}

/// What to verify a stored log against, beyond its own checkpoints.
#[derive(Debug, Clone, Default)]
pub struct VerifyRequest {
    /// Checkpoint notes of this log kept outside the database.
    pub kept: Vec<String>,
    /// Also check that every entry is canonical JSON (RFC 8785); about
    /// twice as slow.
    pub check_canonical: bool,
}

fn log_not_found(log: &str) -> AppError {
    AppError::NotFound {
        code: "audit_log_not_found",
        message: format!("audit log `{log}` has no entries"),
    }
}

fn proof_error(err: ProofError) -> AppError {
    AppError::Invalid(err.to_string())
}

/// The subtrees an inclusion proof of `index` in the tree of `tree_size`
/// entries reads: the leaf, the proof's path, then the root's.
fn inclusion_ids(index: u64, tree_size: u64, plan: &ProofPlan) -> Vec<(u8, u64)> {
    let mut ids = vec![(0u8, index)];
    ids.extend(plan.nodes().iter().map(|n| (n.level, n.index)));
    ids.extend(
        ProofPlan::root(tree_size)
            .nodes()
            .iter()
            .map(|n| (n.level, n.index)),
    );
    ids
}

fn hex(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_hex).collect()
}

impl App {
    /// A page of entries matching `query`, by time, then log, then index.
    pub async fn list_audit(
        &self,
        actor: &Actor,
        query: AuditQuery,
    ) -> Result<Page<AuditEntryView, String>, AppError> {
        let within = authorize_list(actor, Permission::ReadAudit)?;
        if !(1..=MAX_AUDIT_PAGE).contains(&query.limit) {
            return Err(AppError::Invalid(format!(
                "limit must be 1–{MAX_AUDIT_PAGE}, not {}",
                query.limit
            )));
        }
        if let (Some(since), Some(until)) = (query.since, query.until)
            && since >= until
        {
            return Err(AppError::Invalid(
                "`since` must be before `until` (the range is since ≤ at < until)".into(),
            ));
        }
        let log = match (&query.log, within.as_deref()) {
            (Some(spec), _) => Some(self.audit_log_of(actor, spec).await?),
            (None, None) => None,
            // A scoped operator browses one of their tenants' logs: the
            // first unless they name one.
            (None, Some([first, ..])) => Some(first.to_string()),
            (None, Some([])) => {
                return Err(AppError::Invalid(
                    "your role applies to no tenant yet: there is no log to browse".into(),
                ));
            }
        };
        let filter = AuditFilter {
            log,
            actor: query.actor,
            action: query.action,
            since: query.since,
            until: query.until,
        };
        let rows = self
            .store
            .list_audit_entries(&filter, query.cursor.as_ref(), query.limit)
            .await?;
        let next = (rows.len() == query.limit as usize)
            .then(|| rows.last().map(|row| AuditCursor::after(row).encode()))
            .flatten();
        Ok(Page {
            items: rows
                .into_iter()
                .map(|AuditRow { log, entry }| AuditEntryView::new(log, entry))
                .collect(),
            next,
        })
    }

    /// Every log with its size and, for a tenant's, the tenant's slug.
    pub async fn list_audit_logs(&self, actor: &Actor) -> Result<Vec<AuditLogView>, AppError> {
        let within = authorize_list(actor, Permission::ReadAudit)?;
        let mut logs = Vec::new();
        for (log, size) in self.store.audit_logs().await? {
            if let Some(tenants) = &within
                && !tenants.iter().any(|t| t.to_string() == log)
            {
                continue;
            }
            let tenant_slug = match log.parse::<TenantId>() {
                Ok(id) => match self.store.get_tenant(id).await {
                    Ok(tenant) => Some(tenant.slug.to_string()),
                    Err(StoreError::NotFound(_)) => None,
                    Err(err) => return Err(err.into()),
                },
                Err(_) => None,
            };
            logs.push(AuditLogView {
                log,
                size,
                tenant_slug,
            });
        }
        Ok(logs)
    }

    /// Entry `idx` of the log `log_spec` names.
    pub async fn get_audit_entry(
        &self,
        actor: &Actor,
        log_spec: &str,
        idx: u64,
    ) -> Result<AuditEntryView, AppError> {
        let log = self.audit_log_of(actor, log_spec).await?;
        match self.store.audit_entry(&log, idx).await {
            Ok(entry) => Ok(AuditEntryView::new(log, entry)),
            Err(StoreError::NotFound(_)) => Err(AppError::NotFound {
                code: "audit_entry_not_found",
                message: format!("audit log `{log}` has no entry {idx}"),
            }),
            Err(err) => Err(err.into()),
        }
    }

    /// The log's size; `audit_log_not_found` for a log never appended to.
    async fn audit_size(&self, log: &str) -> Result<u64, AppError> {
        self.store
            .audit_log_size(log)
            .await?
            .ok_or_else(|| log_not_found(log))
    }

    /// The hashes of the subtrees `ids`, in one query. Every subtree a
    /// proof within the log's size needs is stored, or hashed from entries
    /// that are, so a missing one is a damaged log, not a bad request.
    async fn proof_nodes(&self, log: &str, ids: &[(u8, u64)]) -> Result<Vec<Hash>, AppError> {
        match self.store.audit_nodes(log, ids).await {
            Ok(hashes) => Ok(hashes.into_iter().map(Hash::from_bytes).collect()),
            Err(StoreError::NotFound(_)) => Err(AppError::Internal(format!(
                "audit log `{log}` lacks a Merkle subtree its size implies; run `gatehouse audit verify`"
            ))),
            Err(err) => Err(err.into()),
        }
    }

    /// Checks that `size` is within the log of `current` entries.
    fn within(log: &str, size: u64, current: u64) -> Result<(), AppError> {
        if size > current {
            return Err(AppError::Invalid(format!(
                "tree size {size} is larger than audit log `{log}` ({current} entries)"
            )));
        }
        Ok(())
    }

    /// The proof that entry `index` is in the tree of `tree_size` entries
    /// (default: the whole log), with that tree's root and, if one was
    /// issued, its checkpoint. One query for every hash it needs. With a
    /// `tree_size`, the log's size, the hashes and the checkpoint are read
    /// at once (one round trip's latency on PostgreSQL instead of three);
    /// the size is still checked first, so the answer is the same.
    pub async fn inclusion_proof(
        &self,
        actor: &Actor,
        log_spec: &str,
        index: u64,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, AppError> {
        let log = self.audit_log_of(actor, log_spec).await?;
        let (tree_size, plan, hashes, checkpoint) =
            match tree_size.map(|size| (size, ProofPlan::inclusion(index, size))) {
                Some((tree_size, Ok(plan))) => {
                    let ids = inclusion_ids(index, tree_size, &plan);
                    let (current, hashes, checkpoint) = tokio::join!(
                        self.audit_size(&log),
                        self.proof_nodes(&log, &ids),
                        self.store.audit_checkpoint(&log, tree_size)
                    );
                    Self::within(&log, tree_size, current?)?;
                    (tree_size, plan, hashes?, checkpoint?)
                }
                _ => {
                    let current = self.audit_size(&log).await?;
                    let tree_size = tree_size.unwrap_or(current);
                    Self::within(&log, tree_size, current)?;
                    let plan = ProofPlan::inclusion(index, tree_size).map_err(proof_error)?;
                    let ids = inclusion_ids(index, tree_size, &plan);
                    let hashes = self.proof_nodes(&log, &ids).await?;
                    let checkpoint = self.store.audit_checkpoint(&log, tree_size).await?;
                    (tree_size, plan, hashes, checkpoint)
                }
            };
        let root_plan = ProofPlan::root(tree_size);
        let (leaf, rest) = hashes
            .split_first()
            .ok_or_else(|| AppError::Internal("the store returned no leaf hash".into()))?;
        let (path, root) = rest.split_at(plan.nodes().len());
        let proof = plan.assemble(path).map_err(internal_proof)?;
        let root = root_plan.assemble_root(root).map_err(internal_proof)?;
        Ok(InclusionProof {
            log,
            index,
            tree_size,
            leaf_hash: leaf.to_hex(),
            root: root.to_hex(),
            proof: hex(&proof),
            checkpoint: checkpoint.map(|c| c.note),
        })
    }

    /// The proof that the tree of `old` entries is a prefix of the tree of
    /// `new` entries, with both roots and their checkpoints if issued.
    pub async fn consistency_proof(
        &self,
        actor: &Actor,
        log_spec: &str,
        old: u64,
        new: u64,
    ) -> Result<ConsistencyProof, AppError> {
        let log = self.audit_log_of(actor, log_spec).await?;
        let current = self.audit_size(&log).await?;
        Self::within(&log, new, current)?;
        let plan = ProofPlan::consistency(old, new).map_err(proof_error)?;
        let (old_plan, new_plan) = (ProofPlan::root(old), ProofPlan::root(new));
        let ids: Vec<(u8, u64)> = [plan.nodes(), old_plan.nodes(), new_plan.nodes()]
            .concat()
            .iter()
            .map(|n: &NodeId| (n.level, n.index))
            .collect();
        let hashes = self.proof_nodes(&log, &ids).await?;
        let (path, roots) = hashes.split_at(plan.nodes().len());
        let (old_hashes, new_hashes) = roots.split_at(old_plan.nodes().len());
        let proof = plan.assemble(path).map_err(internal_proof)?;
        let old_root = old_plan.assemble_root(old_hashes).map_err(internal_proof)?;
        let new_root = new_plan.assemble_root(new_hashes).map_err(internal_proof)?;
        let old_checkpoint = self
            .store
            .audit_checkpoint(&log, old)
            .await?
            .map(|c| c.note);
        let new_checkpoint = self
            .store
            .audit_checkpoint(&log, new)
            .await?
            .map(|c| c.note);
        Ok(ConsistencyProof {
            log,
            old_size: old,
            new_size: new,
            old_root: old_root.to_hex(),
            new_root: new_root.to_hex(),
            proof: hex(&proof),
            old_checkpoint,
            new_checkpoint,
        })
    }

    /// Verifies the stored log `log_spec` names against its checkpoints
    /// and `request`'s kept checkpoints, under this node's signing key. A
    /// mismatch is a result (`verified: false`), not an error.
    pub async fn verify_audit_log(
        &self,
        actor: &Actor,
        log_spec: &str,
        request: VerifyRequest,
        progress: impl FnMut(Progress) + Send + 'static,
    ) -> Result<AuditVerification, AppError> {
        let log = self.audit_log_of(actor, log_spec).await?;
        let signer = self.audit_signer.as_ref().ok_or_else(|| {
            AppError::Unavailable("the audit log's signing key is not loaded on this node".into())
        })?;
        let origin = log_origin(signer.key_name().as_str(), &log);
        let mut options = VerifyStoredOptions::new(origin, vec![signer.verifier_key()]);
        options.kept = request.kept;
        options.check_canonical = request.check_canonical;
        match verify_stored(self.store.as_ref(), &log, options, progress).await {
            Ok(report) => Ok(AuditVerification {
                log,
                verified: true,
                entries: report.entries,
                root: Some(report.root.to_hex()),
                checkpoints: report.stored_checkpoints,
                kept_checkpoints: report.kept_checkpoints,
                signed_size: report.signed_size,
                mismatch: None,
            }),
            Err(VerifyStoredError::Mismatch(mismatch)) => Ok(AuditVerification {
                entries: 0,
                log,
                verified: false,
                root: None,
                checkpoints: 0,
                kept_checkpoints: 0,
                signed_size: None,
                mismatch: Some(MismatchView::new(&mismatch)),
            }),
            Err(VerifyStoredError::Store(StoreError::NotFound(_))) => Err(log_not_found(&log)),
            Err(VerifyStoredError::Store(err)) => Err(err.into()),
            Err(err @ VerifyStoredError::Task(_)) => Err(AppError::Internal(err.to_string())),
        }
    }
}

/// A plan and the hashes fetched for it disagree: a bug, not bad input.
fn internal_proof(err: ProofError) -> AppError {
    AppError::Internal(format!("assembling a proof: {err}"))
}
