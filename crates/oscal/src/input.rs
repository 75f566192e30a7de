//! What an export is made of: the audit facts of one tenant over a period,
//! in a shape that knows nothing of storage.
//!
//! The audit log fills these types (one [`RunEntry`] per leaf, in leaf
//! order) and [`crate::export`] turns them into an OSCAL document. Every
//! fact carries the index of the audit-log leaf that records it: the index
//! is the fact's stable identity (OSCAL UUIDs are derived from it) and the
//! evidence an auditor checks against a checkpoint.

use gatehouse_core::GateLevel;
use gatehouse_core::approval::Verdict;
use gatehouse_core::id::{
    ApprovalId, EventId, HumanTaskId, NotificationId, OperatorId, TenantId, WorkflowId,
};
use gatehouse_core::operator::{OperatorName, Role};
use gatehouse_core::tenant::{DisplayName, TenantSlug};
use gatehouse_core::workflow::InstanceState;
use time::{Duration, OffsetDateTime};

/// Everything one export covers.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportInput {
    /// The tenant whose audit facts these are.
    pub tenant: TenantRef,
    /// The period the caller selected the runs for (`--since`, `--until`).
    /// The export records it; it does not filter by it.
    pub period: Period,
    /// When the export was made (from the caller's `Clock`): the document's
    /// `last-modified`. Passing it in keeps the export a pure function.
    pub generated_at: OffsetDateTime,
    /// The workflow runs, one OSCAL result each, in the order given.
    pub runs: Vec<WorkflowRun>,
    /// Signed checkpoints (tree heads) of the audit log, in any order.
    pub checkpoints: Vec<CheckpointRef>,
}

/// The tenant an export is for.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRef {
    /// Its id.
    pub id: TenantId,
    /// Its slug.
    pub slug: TenantSlug,
    /// Its display name.
    pub name: DisplayName,
}

/// The period an export covers; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    /// From this instant (inclusive), if bounded.
    pub since: Option<OffsetDateTime>,
    /// Until this instant (exclusive), if bounded.
    pub until: Option<OffsetDateTime>,
}

/// An MSP operator as the audit log recorded them when they acted.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorRef {
    /// Their id: their OSCAL party is derived from it.
    pub id: OperatorId,
    /// Their sign-in handle.
    pub name: OperatorName,
    /// Their display name.
    pub display_name: DisplayName,
    /// Their Gatehouse role when they acted.
    pub role: Role,
}

/// Who did something: Gatehouse itself or an operator.
#[derive(Debug, Clone, PartialEq)]
pub enum Actor {
    /// Gatehouse (the engine, a timer, an inbound event).
    System,
    /// An operator.
    Operator(OperatorRef),
}

impl Actor {
    /// The operator's id, if an operator acted.
    pub fn operator_id(&self) -> Option<OperatorId> {
        match self {
            Self::System => None,
            Self::Operator(op) => Some(op.id),
        }
    }
}

/// One run of a workflow (an instance), with the audit facts it produced.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRun {
    /// The instance.
    pub instance_id: WorkflowId,
    /// The template's name.
    pub template: String,
    /// The template version the instance pinned.
    pub template_version: u32,
    /// When the instance started.
    pub started_at: OffsetDateTime,
    /// When it reached a final state, if it has.
    pub ended_at: Option<OffsetDateTime>,
    /// Its state at export time.
    pub state: InstanceState,
    /// Who started it: an operator (API, CLI) or Gatehouse (webhook, timer).
    pub initiated_by: Actor,
    /// The event that started it.
    pub trigger: Trigger,
    /// What happened, in audit-log order.
    pub entries: Vec<RunEntry>,
    /// For a run that revokes access (a leaver): the SLA and when revocation
    /// completed. Gives the AC-2 "revoked within its SLA" finding.
    pub revocation: Option<Revocation>,
}

/// The inbound event that started a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// The event's id.
    pub event_id: EventId,
    /// Where it came from (`api`, `psa`, `hris`, `timer`, …).
    pub source: String,
    /// Its type (`client.onboarding_requested`, `person.left`, …).
    pub event_type: String,
    /// When Gatehouse received (and persisted) it.
    pub received_at: OffsetDateTime,
    /// The audit-log leaf recording it.
    pub leaf_index: u64,
}

/// The revocation service level of a run that removes access.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Revocation {
    /// From when access had to go (the leaver's effective time).
    pub required_from: OffsetDateTime,
    /// How long revocation may take after that.
    pub sla: Duration,
    /// When the last grant was revoked; `None` while some remain.
    pub completed_at: Option<OffsetDateTime>,
}

/// One audit fact of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEntry {
    /// The engine executed a step (L0, L1, or L2 after approval).
    StepExecuted(StepExecuted),
    /// A person decided on an approval (L2).
    GateDecision(GateDecision),
    /// A person performed a human-only step (L3) and recorded it.
    HumanTaskCompleted(HumanTaskCompleted),
    /// A step was undone: compensation after a failure or rejection, or an
    /// L1 reviewer's rollback.
    Compensation(Compensation),
    /// Automated analysis: a recommendation, a risk score.
    Analysis(Analysis),
    /// A review notification was sent (L1).
    Notification(NotificationSent),
}

impl RunEntry {
    /// The audit-log leaf recording this fact.
    pub fn leaf_index(&self) -> u64 {
        match self {
            Self::StepExecuted(e) => e.leaf_index,
            Self::GateDecision(e) => e.leaf_index,
            Self::HumanTaskCompleted(e) => e.leaf_index,
            Self::Compensation(e) => e.leaf_index,
            Self::Analysis(e) => e.leaf_index,
            Self::Notification(e) => e.leaf_index,
        }
    }

    /// When it happened.
    pub fn at(&self) -> OffsetDateTime {
        match self {
            Self::StepExecuted(e) => e.at,
            Self::GateDecision(e) => e.at,
            Self::HumanTaskCompleted(e) => e.at,
            Self::Compensation(e) => e.at,
            Self::Analysis(e) => e.at,
            Self::Notification(e) => e.at,
        }
    }
}

/// Whether something worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did.
    Succeeded,
    /// It did not.
    Failed,
}

impl Outcome {
    /// `succeeded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// The engine executed a step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepExecuted {
    /// The step's id in the template.
    pub step_id: String,
    /// The action it ran (`http.post`, `scim.create_user`, …).
    pub action: String,
    /// The gate level it ran under.
    pub gate: GateLevel,
    /// Which attempt this was (1 for the first).
    pub attempt: u32,
    /// Whether it worked.
    pub outcome: Outcome,
    /// The error or a short result, if any.
    pub detail: Option<String>,
    /// When.
    pub at: OffsetDateTime,
    /// The audit-log leaf.
    pub leaf_index: u64,
}

/// A person's decision on an approval.
#[derive(Debug, Clone, PartialEq)]
pub struct GateDecision {
    /// The approval.
    pub approval_id: ApprovalId,
    /// The gated step.
    pub step_id: String,
    /// Who prepared the plan decided on (for separation of duties).
    pub prepared_by: Actor,
    /// Who decided.
    pub decided_by: OperatorRef,
    /// What they decided; `modify` is an override of the plan.
    pub verdict: Verdict,
    /// Why, in their words (may span lines).
    pub reason: String,
    /// When.
    pub at: OffsetDateTime,
    /// The audit-log leaf.
    pub leaf_index: u64,
}

/// A person performed a human-only (L3) step.
#[derive(Debug, Clone, PartialEq)]
pub struct HumanTaskCompleted {
    /// The task.
    pub task_id: HumanTaskId,
    /// The step.
    pub step_id: String,
    /// Who performed it.
    pub by: OperatorRef,
    /// The outcome they recorded.
    pub outcome: String,
    /// The evidence they recorded (a ticket, a link, a description).
    pub evidence: String,
    /// When.
    pub at: OffsetDateTime,
    /// The audit-log leaf.
    pub leaf_index: u64,
}

/// A step was undone.
#[derive(Debug, Clone, PartialEq)]
pub struct Compensation {
    /// The step undone.
    pub step_id: String,
    /// Who undid it: the engine (after a failure or rejection) or a reviewer.
    pub by: Actor,
    /// Why.
    pub reason: String,
    /// Whether the undo worked; a failed undo leaves the risk open.
    pub outcome: Outcome,
    /// When.
    pub at: OffsetDateTime,
    /// The audit-log leaf.
    pub leaf_index: u64,
}

/// Automated analysis: a recommendation or a risk score.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// The step it is about, if any.
    pub step_id: Option<String>,
    /// What the analysis says (may span lines).
    pub text: String,
    /// Confidence between 0 and 1, if the analysis gives one.
    pub confidence: Option<f64>,
    /// When.
    pub at: OffsetDateTime,
    /// The audit-log leaf.
    pub leaf_index: u64,
}

/// A review notification was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationSent {
    /// The notification.
    pub notification_id: NotificationId,
    /// The step it is about.
    pub step_id: String,
    /// How (`webhook`, `email`).
    pub channel: String,
    /// When.
    pub at: OffsetDateTime,
    /// The audit-log leaf.
    pub leaf_index: u64,
}

/// A signed checkpoint (tree head) of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointRef {
    /// The log's origin line (its name).
    pub origin: String,
    /// How many leaves the tree had.
    pub tree_size: u64,
    /// The Merkle tree root hash (SHA-256, RFC 6962).
    pub root_hash: [u8; 32],
    /// The signed note as published (origin, size, root, signatures).
    pub note: String,
    /// Where the checkpoint is published, a URI reference; relative is fine.
    pub href: String,
}
