//! The audit log's sequencer: takes the records the store queued in the
//! outbox with each change, gives each its index in its log (one per
//! tenant, plus the system log), builds its leaf and appends leaves and
//! completed Merkle subtrees in one transaction per log (see docs/audit.md,
//! "Storage").
//!
//! One sequencer should run at a time; a second one is harmless: the append
//! is a compare-and-set on the log's size, so the loser's append is refused
//! (`Stale`), it forgets what it cached about that log and tries again on
//! its next run.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gatehouse_audit::canonical::{self, CanonicalError};
use gatehouse_audit::{Frontier, Hash, TreeError, leaf_hash};
use gatehouse_core::audit::{AuditEntry, AuditNode, AuditRecord, SYSTEM_LOG};
use gatehouse_core::store::{AuditStore, StoreError};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

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
}

/// Records sequenced per run of [`Sequencer::run`].
pub const SEQUENCE_BATCH: u32 = 4096;

/// Appends outbox records to their logs.
pub struct Sequencer {
    store: Arc<dyn AuditStore>,
    /// Each log's frontier after this sequencer's last append, so that a run
    /// reads no node rows; held for the whole run, so runs are serial.
    frontiers: Mutex<HashMap<String, Frontier>>,
}

impl std::fmt::Debug for Sequencer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequencer").finish_non_exhaustive()
    }
}

impl Sequencer {
    /// A sequencer over `store`, with nothing cached.
    pub fn new(store: Arc<dyn AuditStore>) -> Self {
        Self {
            store,
            frontiers: Mutex::new(HashMap::new()),
        }
    }

    /// Sequences until `shutdown` completes: a batch at a time while records
    /// are waiting, then every `idle` when the outbox is empty. A failed run
    /// is logged and retried; records stay queued until appended.
    pub async fn run(
        &self,
        idle: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let appended = match self.run_once(SEQUENCE_BATCH).await {
                Ok(n) => n,
                Err(err) => {
                    tracing::error!(%err, "audit sequencing failed; retrying");
                    0
                }
            };
            if appended > 0 {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// Sequences up to `limit` of the oldest outbox records; returns how
    /// many were appended. A log whose append was refused because another
    /// sequencer appended meanwhile is skipped (its records stay queued).
    pub async fn run_once(&self, limit: u32) -> Result<usize, SequencerError> {
        let mut frontiers = self.frontiers.lock().await;
        let pending = self.store.pending_audit(limit).await?;
        let mut by_log: BTreeMap<String, Vec<(i64, AuditRecord)>> = BTreeMap::new();
        for (id, record) in pending {
            by_log.entry(record.log()).or_default().push((id, record));
        }
        let mut appended = 0;
        for (log, records) in by_log {
            let mut frontier = match frontiers.get(&log) {
                Some(f) => f.clone(),
                None => self.restore(&log).await?,
            };
            let start = frontier.size();
            let mut entries = Vec::with_capacity(records.len());
            let mut nodes = Vec::with_capacity(records.len() * 2);
            let mut consumed = Vec::with_capacity(records.len());
            for (id, record) in &records {
                let idx = frontier.size();
                let leaf = leaf(&log, idx, record)?;
                let hash = leaf_hash(leaf.as_bytes());
                frontier
                    .push_with(hash, |id, h| {
                        nodes.push(AuditNode {
                            level: id.level,
                            index: id.index,
                            hash: *h.as_bytes(),
                        });
                    })
                    .map_err(|source| SequencerError::Tree {
                        log: log.clone(),
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
            match self
                .store
                .append_audit(&log, start, &entries, &nodes, &consumed)
                .await
            {
                Ok(()) => {
                    appended += entries.len();
                    frontiers.insert(log, frontier);
                }
                Err(StoreError::Stale(what)) => {
                    tracing::info!(
                        log,
                        what,
                        "another sequencer appended to the audit log; retrying on the next run"
                    );
                    frontiers.remove(&log);
                }
                Err(err) => {
                    frontiers.remove(&log);
                    return Err(err.into());
                }
            }
        }
        Ok(appended)
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

/// The leaf of `record` at `idx` in `log`: the RFC 8785 canonical JSON of
/// the entry. What is clear: the log, index, time, actor, action, subject
/// and tenant. The details are in clear only in the system log; a tenant's
/// entry holds `details_sha256` instead, see [`sealed_details`].
pub fn leaf(log: &str, idx: u64, record: &AuditRecord) -> Result<String, SequencerError> {
    let mut entry = Map::new();
    entry.insert("log".into(), json!(log));
    entry.insert("idx".into(), json!(idx));
    entry.insert("at".into(), json!(record.at.format(&Rfc3339)?));
    entry.insert("actor".into(), json!(record.actor));
    entry.insert("action".into(), json!(record.action));
    entry.insert("subject".into(), json!(record.subject));
    let details = representable(record);
    if log == SYSTEM_LOG {
        entry.insert("details".into(), details);
    } else {
        entry.insert(
            "tenant_id".into(),
            json!(record.tenant_id.map(|t| t.to_string())),
        );
        let (key, value) = sealed_details(record, &details)?;
        entry.insert(key.into(), value);
    }
    canonical::to_string(&Value::Object(entry)).map_err(|source| SequencerError::Canonical {
        subject: record.subject.clone(),
        source,
    })
}

/// What a tenant's entry commits to instead of its details. For now the
/// SHA-256 (hex) of their canonical bytes, as `details_sha256`; sealing
/// under the tenant's key replaces this with the ciphertext's digest (and
/// the store then keeps the ciphertext, not the details).
fn sealed_details(
    record: &AuditRecord,
    details: &Value,
) -> Result<(&'static str, Value), SequencerError> {
    let bytes = canonical::to_vec(details).map_err(|source| SequencerError::Canonical {
        subject: record.subject.clone(),
        source,
    })?;
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    Ok(("details_sha256", json!(Hash::from_bytes(digest).to_hex())))
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
    use time::OffsetDateTime;

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
    fn tenant_leaves_commit_to_their_details_and_system_leaves_hold_them()
    -> Result<(), Box<dyn std::error::Error>> {
        let tenant = TenantId::generate(OffsetDateTime::UNIX_EPOCH);
        let details = json!({"b": 1, "a": "Zoë"});
        let text = leaf(
            &tenant.to_string(),
            3,
            &record(Some(tenant), details.clone()),
        )?;
        assert!(canonical::is_canonical(text.as_bytes())?);
        let value: Value = serde_json::from_str(&text)?;
        let expected: [u8; 32] = Sha256::digest("{\"a\":\"Zoë\",\"b\":1}".as_bytes()).into();
        assert_eq!(
            value["details_sha256"],
            Hash::from_bytes(expected).to_hex().as_str()
        );
        assert_eq!(value.get("details"), None);
        assert_eq!(value["idx"], 3);
        assert_eq!(value["at"], "1970-01-01T00:00:00Z");

        let text = leaf(SYSTEM_LOG, 0, &record(None, details.clone()))?;
        let value: Value = serde_json::from_str(&text)?;
        assert_eq!(value["details"], details);
        assert_eq!(value.get("details_sha256"), None);
        Ok(())
    }

    #[test]
    fn details_without_a_canonical_form_are_kept_as_json_text()
    -> Result<(), Box<dyn std::error::Error>> {
        let details = json!({"n": 9_007_199_254_740_993_u64});
        let text = leaf(SYSTEM_LOG, 0, &record(None, details))?;
        let value: Value = serde_json::from_str(&text)?;
        assert_eq!(value["details"]["json_text"], r#"{"n":9007199254740993}"#);
        Ok(())
    }
}
