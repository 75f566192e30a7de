//! What the audit log records, before it has a place in a log.
//!
//! Every change that must be provable writes an [`AuditRecord`] into the
//! audit outbox **in the same transaction as the change itself** (the
//! store does it for workflow history, events and the other changes it
//! knows). The sequencer later gives each record its index in its log,
//! seals the tenant's details, and appends the leaf to the Merkle tree (see
//! `docs/audit.md`). A record therefore exists if and only if its change
//! was committed.
//!
//! There is one log per tenant and one system log for what concerns no
//! single tenant (see `docs/audit.md`, "One log or one per tenant").

use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::id::{TenantId, TokenId};
use crate::workflow::{HistoryEntry, InboundEvent, Instance};

/// The log of records that concern no single tenant.
pub const SYSTEM_LOG: &str = "system";

/// The origin (C2SP checkpoint first line) of `log` under the signing key
/// named `key_name`: `<key name>/<log>`, such as
/// `gatehouse.example/audit/ten_01h…` or `gatehouse.example/audit/system`.
pub fn log_origin(key_name: &str, log: &str) -> String {
    format!("{key_name}/{log}")
}

/// The sealing context of a tenant entry's details (see
/// `gatehouse_vault::Keyring::seal`): binds the ciphertext to its index, so
/// sealed details cannot be moved to another entry.
pub fn details_context(idx: u64) -> String {
    format!("audit:{idx}")
}

/// The names of the actions the API's mutations and key operations record
/// (workflow transitions are `workflow.<history kind>`, new events
/// `event.received`). docs/audit.md, "What is recorded", lists each with
/// its log.
pub mod action {
    /// A tenant was created (system log, and the first entry of its own log).
    pub const TENANT_CREATED: &str = "tenant.created";
    /// A tenant's display name or region changed (its log).
    pub const TENANT_UPDATED: &str = "tenant.updated";
    /// A tenant was activated (its log).
    pub const TENANT_ACTIVATED: &str = "tenant.activated";
    /// A tenant was suspended (its log).
    pub const TENANT_SUSPENDED: &str = "tenant.suspended";
    /// A tenant was moved to offboarding (its log).
    pub const TENANT_OFFBOARDED: &str = "tenant.offboarded";
    /// A tenant was deleted and crypto-shredded (system log: its own log's
    /// details are unreadable from then on).
    pub const TENANT_DELETED: &str = "tenant.deleted";
    /// A tenant's secret was created or overwritten (its log; never the value).
    pub const SECRET_SET: &str = "tenant.secret.set";
    /// A tenant's secret was removed (its log).
    pub const SECRET_DELETED: &str = "tenant.secret.deleted";
    /// A tenant's gate level for a process area was set (its log).
    pub const GATE_SET: &str = "gate.set";
    /// A tenant's gate override was cleared back to the default (its log).
    pub const GATE_CLEARED: &str = "gate.cleared";
    /// A tenant's data key was created (its log).
    pub const KEY_CREATED: &str = "key.created";
    /// A tenant's data key was rewrapped under a new KEK (its log).
    pub const KEY_REWRAPPED: &str = "key.rewrapped";
    /// The KEK was rotated; the details count what was rewrapped (system log).
    pub const KEK_ROTATED: &str = "keys.kek.rotated";
    /// The audit log's signing key was created (system log).
    pub const AUDIT_KEY_CREATED: &str = "audit.key.created";
    /// The audit log's signing key was rewrapped under a new KEK (system log).
    pub const AUDIT_KEY_REWRAPPED: &str = "audit.key.rewrapped";
    /// An operator was created (system log).
    pub const OPERATOR_CREATED: &str = "operator.created";
    /// An operator was disabled (system log).
    pub const OPERATOR_DISABLED: &str = "operator.disabled";
    /// An operator was enabled again (system log).
    pub const OPERATOR_ENABLED: &str = "operator.enabled";
    /// An operator's role was scoped to some tenants, or to the whole
    /// installation again (system log).
    pub const OPERATOR_SCOPE_CHANGED: &str = "operator.scope.changed";
    /// A tenant group was created (system log).
    pub const TENANT_GROUP_CREATED: &str = "tenant_group.created";
    /// A tenant joined a tenant group (system log).
    pub const TENANT_GROUP_TENANT_ADDED: &str = "tenant_group.tenant_added";
    /// A tenant left a tenant group (system log).
    pub const TENANT_GROUP_TENANT_REMOVED: &str = "tenant_group.tenant_removed";
    /// A tenant group was deleted (system log).
    pub const TENANT_GROUP_DELETED: &str = "tenant_group.deleted";
    /// An API token was issued: the credential event (system log).
    pub const TOKEN_ISSUED: &str = "operator.token.issued";
    /// An API token was revoked (system log).
    pub const TOKEN_REVOKED: &str = "operator.token.revoked";
    /// An operator's password was set or changed (system log).
    pub const PASSWORD_SET: &str = "operator.password.set";
    /// An operator enrolled a TOTP second factor (system log).
    pub const TOTP_ENROLLED: &str = "operator.totp.enrolled";
    /// An operator's TOTP secret was rewrapped under a new KEK (system log).
    pub const TOTP_REWRAPPED: &str = "operator.totp.rewrapped";
    /// An operator signed in to the console (system log).
    pub const SIGNED_IN: &str = "operator.signed_in";
    /// A sign-in was refused: wrong password or code, locked, disabled
    /// (system log; never the password or the code).
    pub const SIGN_IN_FAILED: &str = "operator.sign_in_failed";
    /// An operator signed out, or a session was ended (system log).
    pub const SIGNED_OUT: &str = "operator.signed_out";
}

/// Who makes a change, for its [`AuditRecord`]: an operator (and the API
/// token they used, if any) or Gatehouse itself with the reason it acts
/// (`local cli`, `bootstrap`, …), and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// An operator id, or `system`.
    pub actor: String,
    /// The API token the operator authenticated with.
    pub token: Option<TokenId>,
    /// Why `system` acts, or how an operator acted without a token (a
    /// local administrator at the CLI, on their behalf); `None` for an
    /// operator's token.
    pub reason: Option<String>,
    /// When.
    pub at: OffsetDateTime,
}

impl Provenance {
    /// Gatehouse itself, for `reason`.
    pub fn system(reason: &str, at: OffsetDateTime) -> Self {
        Self {
            actor: "system".into(),
            token: None,
            reason: Some(reason.to_owned()),
            at,
        }
    }

    /// The same actor at another time (one rotation rewraps many keys).
    pub fn at(&self, at: OffsetDateTime) -> Self {
        Self { at, ..self.clone() }
    }

    /// The record of `action` on `subject` in `tenant`'s log (or the system
    /// log): `details` (an object) plus `token` (the token's id) or
    /// `system_reason` for how the actor acted.
    pub fn record(
        &self,
        tenant: Option<TenantId>,
        action: &str,
        subject: impl std::fmt::Display,
        mut details: Value,
    ) -> AuditRecord {
        if let Value::Object(members) = &mut details {
            if let Some(token) = self.token {
                members.insert("token".into(), Value::String(token.to_string()));
            }
            if let Some(reason) = &self.reason {
                members.insert("system_reason".into(), Value::String(reason.clone()));
            }
        }
        AuditRecord {
            at: self.at,
            tenant_id: tenant,
            actor: self.actor.clone(),
            action: action.to_owned(),
            subject: subject.to_string(),
            details,
        }
    }
}

/// One provable fact: who did what to which subject, when, with details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The tenant it concerns; its log. `None`: the system log.
    pub tenant_id: Option<TenantId>,
    /// Who: an operator id, `system`, or a source such as `api`.
    pub actor: String,
    /// What: dotted, such as `workflow.step.succeeded` or `event.received`.
    pub action: String,
    /// The id of what it was done to (an instance, an event, a tenant, …).
    pub subject: String,
    /// Everything else. For a tenant's record these are sealed under the
    /// tenant's key before they enter the log; the leaf commits to the
    /// ciphertext.
    pub details: Value,
}

impl AuditRecord {
    /// The name of the log the record belongs to: the tenant's id, or
    /// [`SYSTEM_LOG`].
    pub fn log(&self) -> String {
        self.tenant_id
            .map_or_else(|| SYSTEM_LOG.to_owned(), |t| t.to_string())
    }

    /// The record of one workflow transition (a step run, a gate decision,
    /// a compensation, …): the history entry, with its instance and
    /// template.
    pub fn of_history(entry: &HistoryEntry, instance: &Instance) -> Self {
        Self {
            at: entry.at,
            tenant_id: instance.tenant_id,
            actor: entry.actor.clone(),
            action: format!("workflow.{}", entry.kind),
            subject: entry.instance_id.to_string(),
            details: json!({
                "template": instance.template,
                "template_version": instance.template_version,
                "step": entry.step_id,
                "history_seq": entry.seq,
                "detail": entry.detail,
            }),
        }
    }

    /// The record of an event taken into the inbox, with what it started.
    pub fn of_event(event: &InboundEvent) -> Self {
        Self {
            at: event.received_at,
            tenant_id: event.tenant_id,
            actor: event.source.as_str().to_owned(),
            action: "event.received".to_owned(),
            subject: event.id.to_string(),
            details: json!({
                "type": event.kind.as_str(),
                "dedup_key": event.dedup_key.as_str(),
                "outcome": event.outcome,
            }),
        }
    }
}

/// A SHA-256 hash in the audit log (a leaf or a subtree root).
pub type AuditHash = [u8; 32];

/// One sequenced entry of a log, as stored: its index, the clear columns
/// for browsing, the leaf (RFC 8785 canonical JSON) and its leaf hash
/// (`SHA-256(0x00 ‖ leaf)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its index in its log (0, 1, 2, …).
    pub idx: u64,
    /// When the change happened.
    pub at: OffsetDateTime,
    /// Who did it.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub subject: String,
    /// The canonical JSON the leaf hash is computed from.
    pub leaf: String,
    /// `SHA-256(0x00 ‖ leaf)`.
    pub leaf_hash: AuditHash,
}

/// The lowest height of subtree a store keeps as a node row. The levels
/// below are hashed from the entries' leaf hashes when asked for (at most
/// `2^(AUDIT_STORED_LEVEL - 1)` = 4 of them, one range of the entries'
/// primary key): level 0 would repeat every entry's `leaf_hash`, and levels
/// 1 and 2 cost three rows per four entries. Storing from level 3 writes
/// about one node row per four entries (`n/8 + n/16 + …`) instead of two
/// per entry.
pub const AUDIT_STORED_LEVEL: u8 = 3;

/// A completed perfect subtree of a log's Merkle tree: `level` 0 is a leaf,
/// level `l` covers leaves `index << l .. (index + 1) << l`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditNode {
    /// Height of the subtree.
    pub level: u8,
    /// Its position among the subtrees of that height.
    pub index: u64,
    /// Its hash.
    pub hash: AuditHash,
}

/// Where a log stands: its size and the subtrees of its frontier, largest
/// first (what `gatehouse_audit::Frontier::restore` takes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditHead {
    /// Entries appended so far.
    pub size: u64,
    /// One node per set bit of `size`, largest first.
    pub frontier: Vec<AuditNode>,
}

/// A checkpoint (a signed note) of a log at a size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    /// The log.
    pub log: String,
    /// The tree size it signs.
    pub size: u64,
    /// The signed note, as issued.
    pub note: String,
    /// When it was stored.
    pub created_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{EventId, WorkflowId};
    use crate::workflow::{DedupKey, EventKind, EventSource, InstanceState};

    #[test]
    fn provenance_names_the_token_or_the_system_reason() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let token = TokenId::generate(now);
        let operator = Provenance {
            actor: "op_x".into(),
            token: Some(token),
            reason: None,
            at: now,
        };
        let tenant = TenantId::generate(now);
        let record = operator.record(
            Some(tenant),
            action::GATE_SET,
            "joiner_access",
            json!({"area": "joiner_access"}),
        );
        assert_eq!(record.log(), tenant.to_string());
        assert_eq!(
            (record.actor.as_str(), record.action.as_str()),
            ("op_x", "gate.set")
        );
        assert_eq!(
            record.details,
            json!({"area": "joiner_access", "token": token.to_string()})
        );

        let later = now + time::Duration::seconds(5);
        let system = Provenance::system("local cli", now).at(later);
        let record = system.record(None, action::KEK_ROTATED, "local:2", json!({}));
        assert_eq!(record.log(), SYSTEM_LOG);
        assert_eq!(record.at, later);
        assert_eq!(record.actor, "system");
        assert_eq!(record.details, json!({"system_reason": "local cli"}));
    }

    #[test]
    fn records_go_to_their_tenants_log_or_the_system_log() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let tenant = TenantId::generate(now);
        let event = InboundEvent {
            id: EventId::generate(now),
            tenant_id: Some(tenant),
            source: EventSource::parse("psa.connectwise").unwrap(),
            kind: EventKind::parse("psa.opportunity.won").unwrap(),
            dedup_key: DedupKey::parse("deal-1").unwrap(),
            payload: json!({"secret": "not recorded"}),
            received_at: now,
            outcome: Some(json!({"instances": []})),
        };
        let record = AuditRecord::of_event(&event);
        assert_eq!(record.log(), tenant.to_string());
        assert_eq!(record.action, "event.received");
        assert_eq!(record.actor, "psa.connectwise");
        assert!(
            record.details.get("payload").is_none(),
            "the payload stays in the inbox"
        );

        let instance = Instance {
            id: WorkflowId::generate(now),
            tenant_id: None,
            template: "t".into(),
            template_version: 2,
            definition: json!({}),
            state: InstanceState::Running,
            context: json!({}),
            started_by: None,
            created_by: "system".into(),
            created_at: now,
            updated_at: now,
            next_run_at: None,
            version: 1,
        };
        let entry = HistoryEntry {
            instance_id: instance.id,
            seq: 7,
            at: now,
            kind: "approval.approved".into(),
            step_id: Some("grant".into()),
            actor: "op_x".into(),
            detail: json!({"reason": "ok"}),
        };
        let record = AuditRecord::of_history(&entry, &instance);
        assert_eq!(record.log(), SYSTEM_LOG);
        assert_eq!(record.action, "workflow.approval.approved");
        assert_eq!(record.actor, "op_x");
        assert_eq!(record.details["step"], "grant");
        assert_eq!(record.details["history_seq"], 7);
    }
}
