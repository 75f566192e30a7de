//! Checkpoints of audit logs: listing them, and signing one on demand.
//!
//! The sequencer signs checkpoints every N entries or T seconds
//! (`crate::audit::Sequencer`); an auditor may also ask for one now, so
//! that a checkpoint they keep covers everything appended so far. Asking
//! twice without anything appended returns the same checkpoint: there is
//! never a second checkpoint of one size (docs/audit.md, "Checkpoints").

use gatehouse_audit::{Frontier, Hash, SignedNote};
use gatehouse_core::audit::AuditCheckpoint;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Actor, App};
use crate::audit::{IssueError, sign_checkpoint};
use crate::authz::Permission;
use crate::error::AppError;

/// A signed checkpoint of an audit log, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CheckpointView {
    /// The log: `system` or a tenant id.
    #[schema(example = "system")]
    pub log: String,
    /// The tree size it signs.
    pub size: u64,
    /// The tree's root hash at that size, lowercase hex.
    pub root: String,
    /// The C2SP signed note, as issued (verify it with the public key).
    pub note: String,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl CheckpointView {
    /// The view of a stored checkpoint; its root is read from the note's
    /// body (without checking the signature: verification is the
    /// auditor's, with the public key).
    pub fn of(checkpoint: AuditCheckpoint) -> Result<Self, AppError> {
        let root = stored_body(&checkpoint)?.root();
        Ok(Self {
            log: checkpoint.log,
            size: checkpoint.size,
            root: root.to_hex(),
            note: checkpoint.note,
            created_at: checkpoint.created_at,
        })
    }
}

/// The body (origin, size, root) of a stored checkpoint, read without
/// checking the signature: verification is the auditor's, with the public
/// key.
pub(super) fn stored_body(
    checkpoint: &AuditCheckpoint,
) -> Result<gatehouse_audit::Checkpoint, AppError> {
    SignedNote::parse(&checkpoint.note)
        .map_err(|e| e.to_string())
        .and_then(|note| {
            gatehouse_audit::Checkpoint::parse_body(note.text()).map_err(|e| e.to_string())
        })
        .map_err(|e| {
            AppError::Internal(format!(
                "stored checkpoint of `{}` at size {} does not parse: {e}",
                checkpoint.log, checkpoint.size
            ))
        })
}

/// What [`App::issue_checkpoint`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// Signed a new checkpoint at the log's current size.
    New(AuditCheckpoint),
    /// The log has not grown since its latest checkpoint: that one.
    Latest(AuditCheckpoint),
}

impl Issued {
    /// The checkpoint, new or not.
    pub fn checkpoint(&self) -> &AuditCheckpoint {
        match self {
            Self::New(c) | Self::Latest(c) => c,
        }
    }

    /// The checkpoint, new or not.
    pub fn into_checkpoint(self) -> AuditCheckpoint {
        match self {
            Self::New(c) | Self::Latest(c) => c,
        }
    }
}

impl From<IssueError> for AppError {
    fn from(err: IssueError) -> Self {
        match err {
            IssueError::Store(err) => err.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl App {
    /// Signs a checkpoint of the log `log_spec` names (`system`, a tenant
    /// id or slug) at its current size; if the log has not grown since its
    /// latest checkpoint, returns that one instead. An empty log is a
    /// conflict: there is nothing to sign. Needs `IssueCheckpoints` (and
    /// `ReadAudit`, which the same roles hold).
    pub async fn issue_checkpoint(
        &self,
        actor: &Actor,
        log_spec: &str,
    ) -> Result<Issued, AppError> {
        let log = self
            .audit_log_for(actor, Permission::IssueCheckpoints, log_spec)
            .await?;
        let signer = self.audit_signer.as_ref().ok_or_else(|| {
            AppError::Unavailable("the audit log's signing key is not loaded on this node".into())
        })?;
        let head = self.store.audit_head(&log).await?;
        if head.size == 0 {
            return Err(AppError::Conflict {
                code: "audit_log_empty",
                message: format!("audit log `{log}` has no entries yet: there is nothing to sign"),
            });
        }
        if let Some(latest) = self.store.list_checkpoints(&log).await?.pop()
            && latest.size >= head.size
        {
            return Ok(Issued::Latest(latest));
        }
        let root = Frontier::restore(
            head.size,
            head.frontier
                .iter()
                .map(|n| Hash::from_bytes(n.hash))
                .collect(),
        )
        .map_err(|e| AppError::Internal(format!("audit log `{log}`: stored frontier: {e}")))?
        .root();
        match sign_checkpoint(
            self.store.as_ref(),
            signer.as_ref(),
            &log,
            head.size,
            root,
            self.now(),
        )
        .await?
        {
            Some(checkpoint) => {
                tracing::info!(
                    log,
                    size = checkpoint.size,
                    "signed an audit checkpoint on demand"
                );
                Ok(Issued::New(checkpoint))
            }
            // The sequencer (or another request) signed this size first.
            None => self
                .store
                .list_checkpoints(&log)
                .await?
                .into_iter()
                .find(|c| c.size == head.size)
                .map(Issued::Latest)
                .ok_or_else(|| {
                    AppError::Internal(format!(
                        "audit log `{log}`: the checkpoint of size {} conflicted but is not stored",
                        head.size
                    ))
                }),
        }
    }

    /// The checkpoints of the log `log_spec` names, by size. Needs
    /// `ReadAudit`.
    pub async fn list_checkpoints(
        &self,
        actor: &Actor,
        log_spec: &str,
    ) -> Result<Vec<AuditCheckpoint>, AppError> {
        let log = self.audit_log_of(actor, log_spec).await?;
        Ok(self.store.list_checkpoints(&log).await?)
    }

    /// The latest checkpoint of the log `log_spec` names; `NotFound` if it
    /// has none yet. Needs `ReadAudit`.
    pub async fn latest_checkpoint(
        &self,
        actor: &Actor,
        log_spec: &str,
    ) -> Result<AuditCheckpoint, AppError> {
        let log = self.audit_log_of(actor, log_spec).await?;
        self.store
            .list_checkpoints(&log)
            .await?
            .pop()
            .ok_or_else(|| AppError::NotFound {
                code: "checkpoint_not_found",
                message: format!("audit log `{log}` has no checkpoint yet"),
            })
    }
}
