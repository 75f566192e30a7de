//! Gates L2 and L3 as durable records: approvals and human tasks.
//!
//! An L2 step opens an [`Approval`] that holds the plan (the action and its
//! parameters, with room for a diff and a recommendation); nothing runs
//! until enough people approve it. An L3 step opens a [`HumanTask`] with
//! decision support; the engine never runs the action, a person does and
//! records the outcome.
//!
//! The rules of who may decide are pure functions here
//! ([`Approval::may_decide`], [`Approval::apply`]), so the engine, the API
//! and the tests share one reading of them:
//! - **Separation of duties**: whoever initiated the workflow or prepared
//!   the plan cannot decide on it — not even an admin. The store repeats
//!   this rule as a guarded insert, so a bug above cannot record a
//!   self-approval.
//! - **N of M**: `required` distinct people must approve (or approve with a
//!   modification); one rejection decides at once. When several approvers
//!   modify the plan, the last modification is what runs.
//! - **Escalation**: past its deadline an approval escalates to
//!   `escalate_to`, and from then on that role (and admins) decide.
//!
//! The store also counts decisions and checks the count, so two approvers
//! deciding at the same moment cannot both believe they were the first.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::DomainError;
use crate::id::{ApprovalId, HumanTaskId, OperatorId, TenantId, WorkflowId};
use crate::operator::{Operator, Role};

/// The longest reason a decision may give, in characters.
pub const MAX_REASON_CHARS: usize = 2000;
/// The longest evidence a human task may record, in characters.
pub const MAX_EVIDENCE_CHARS: usize = 10_000;
/// The longest step id, and the longest `initiated_by` / `prepared_by`.
const MAX_NAME_CHARS: usize = 200;

/// Finds the value of `all` whose name is `text`.
fn parse_named<T: Copy>(
    all: &[T],
    name: fn(T) -> &'static str,
    field: &'static str,
    text: &str,
) -> Result<T, DomainError> {
    all.iter()
        .copied()
        .find(|v| name(*v) == text)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|v| name(*v)).collect();
            DomainError::invalid(
                field,
                format!("`{text}` is not one of {}", names.join(", ")),
            )
        })
}

/// `a` or `an`, for a role's name.
fn article(role: Role) -> &'static str {
    match role {
        Role::Admin | Role::Auditor => "an",
        Role::Lead | Role::Technician => "a",
    }
}

/// Checks a short, required, single-line text (a step id, an actor).
fn short_text(field: &'static str, text: &str) -> Result<(), DomainError> {
    if text.trim().is_empty()
        || text.chars().count() > MAX_NAME_CHARS
        || text.chars().any(char::is_control)
    {
        return Err(DomainError::invalid(
            field,
            format!("must be 1 to {MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(())
}

/// Trims and checks a free text a person wrote (a reason, evidence):
/// required, at most `max` characters, no control characters but line
/// breaks and tabs.
fn prose(field: &'static str, text: &str, max: usize) -> Result<String, DomainError> {
    let text = text.trim();
    let printable = text
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    if text.is_empty() || text.chars().count() > max || !printable {
        return Err(DomainError::invalid(
            field,
            format!("must be 1 to {max} characters of text"),
        ));
    }
    Ok(text.to_owned())
}

/// Where an approval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for decisions.
    Pending,
    /// Enough people approved: the plan (as last modified) may run.
    Approved,
    /// Someone rejected it: the workflow compensates or stops.
    Rejected,
    /// The workflow was cancelled before the approval was decided.
    Cancelled,
}

impl ApprovalState {
    /// All states.
    pub const ALL: [Self; 4] = [
        Self::Pending,
        Self::Approved,
        Self::Rejected,
        Self::Cancelled,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// Decided one way or another: nothing about it changes any more.
    pub fn is_final(self) -> bool {
        self != Self::Pending
    }
}

impl FromStr for ApprovalState {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_named(&Self::ALL, Self::as_str, "state", text)
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one person decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Approve the plan as prepared.
    Approve,
    /// Refuse it; decides the approval at once.
    Reject,
    /// Approve it with other parameters (recorded as an override).
    Modify,
}

impl Verdict {
    /// All verdicts.
    pub const ALL: [Self; 3] = [Self::Approve, Self::Reject, Self::Modify];

    /// The verdict's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
            Self::Modify => "modify",
        }
    }

    /// Counts towards the approvals an approval requires.
    pub fn approves(self) -> bool {
        self != Self::Reject
    }
}

impl FromStr for Verdict {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_named(&Self::ALL, Self::as_str, "verdict", text)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One person's decision on an approval, with the reason they gave.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Decision {
    /// The approval decided on.
    pub approval_id: ApprovalId,
    /// Who decided.
    pub operator_id: OperatorId,
    /// What they decided.
    pub verdict: Verdict,
    /// Why, in their words (1 to 2,000 characters).
    pub reason: String,
    /// The parameters they approved instead of the plan's; present exactly
    /// when the verdict is `modify`.
    pub modified_params: Option<Value>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Decision {
    /// A decision, checked: the reason is required (it is trimmed, and at
    /// most [`MAX_REASON_CHARS`] long), and modified parameters are given
    /// with `modify` and only with it.
    pub fn new(
        approval_id: ApprovalId,
        operator_id: OperatorId,
        verdict: Verdict,
        reason: &str,
        modified_params: Option<Value>,
        at: OffsetDateTime,
    ) -> Result<Self, DomainError> {
        let reason = prose("reason", reason, MAX_REASON_CHARS)?;
        match (verdict, &modified_params) {
            (Verdict::Modify, None | Some(Value::Null)) => {
                return Err(DomainError::invalid(
                    "modified_params",
                    "a modification must give the parameters to run instead",
                ));
            }
            (Verdict::Approve | Verdict::Reject, Some(_)) => {
                return Err(DomainError::invalid(
                    "modified_params",
                    format!("only a modification carries parameters, not `{verdict}`"),
                ));
            }
            _ => {}
        }
        Ok(Self {
            approval_id,
            operator_id,
            verdict,
            reason,
            modified_params,
            at,
        })
    }
}

/// The plan an approval holds, in the shape every approval shares:
/// `{"action": …, "params": …, "diff": null, "recommendation": null}`. The
/// diff against the target's current state and the recommendation are
/// filled in by later parts.
pub fn plan(action: &str, params: Value) -> Value {
    json!({"action": action, "params": params, "diff": null, "recommendation": null})
}

/// A plan with its diff against the target's current state: `diff` is
/// `{"summary", "changes": [{"target", "field", "before", "after"}],
/// "observed", "fingerprint"}`, as the engine's actions prepare it.
/// `supersedes` names the approval this one replaces, when the target
/// changed after that one was approved.
pub fn plan_with_diff(
    action: &str,
    params: Value,
    diff: Value,
    supersedes: Option<ApprovalId>,
) -> Value {
    let mut plan = plan(action, params);
    if let Some(object) = plan.as_object_mut() {
        object.insert("diff".to_owned(), diff);
        if let Some(old) = supersedes {
            object.insert("supersedes".to_owned(), json!(old));
        }
    }
    plan
}

/// What an L2 step asks for when it opens an approval.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalRequest {
    /// The workflow instance waiting for it.
    pub instance_id: WorkflowId,
    /// The step waiting for it (one approval per step).
    pub step_id: String,
    /// The tenant the change is for, if known.
    pub tenant_id: Option<TenantId>,
    /// The plan: see [`plan`].
    pub plan: Value,
    /// How many distinct people must approve (at least 1).
    pub required: u32,
    /// Who may approve (admins always may); not `auditor`.
    pub approver_role: Role,
    /// Who started the workflow: an operator id or `system`.
    pub initiated_by: String,
    /// Who prepared the plan: an operator id or `system`.
    pub prepared_by: String,
    /// When it escalates, if it is still pending.
    pub deadline: Option<OffsetDateTime>,
    /// To whom it escalates; needs a deadline; not `auditor`.
    pub escalate_to: Option<Role>,
}

/// A request for approval of a gated (L2) step, and the decisions on it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Approval {
    /// The approval's id.
    pub id: ApprovalId,
    /// The workflow instance waiting for it.
    pub instance_id: WorkflowId,
    /// The step waiting for it.
    pub step_id: String,
    /// The tenant the change is for, if known.
    pub tenant_id: Option<TenantId>,
    /// Where it is.
    pub state: ApprovalState,
    /// What will run once approved: `{"action", "params", "diff", "recommendation"}`.
    pub plan: Value,
    /// How many distinct people must approve.
    pub required: u32,
    /// Who may approve until it escalates (admins always may).
    pub approver_role: Role,
    /// Who started the workflow (an operator id or `system`); may not decide.
    pub initiated_by: String,
    /// Who prepared the plan (an operator id or `system`); may not decide.
    pub prepared_by: String,
    /// When it escalates, if it is still pending.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deadline: Option<OffsetDateTime>,
    /// The role it escalates to.
    pub escalate_to: Option<Role>,
    /// When it escalated.
    #[serde(with = "time::serde::rfc3339::option")]
    pub escalated_at: Option<OffsetDateTime>,
    /// When it was opened.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was approved, rejected or cancelled.
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
    /// The decisions so far, oldest first.
    pub decisions: Vec<Decision>,
}

impl Approval {
    /// A new, pending approval for `request`, checked: a step id, a plan
    /// with an `action` and `params`, at least one approval required,
    /// approver and escalation roles that may change things (not
    /// `auditor`), a deadline in the future, and no escalation without a
    /// deadline.
    pub fn open(request: ApprovalRequest, now: OffsetDateTime) -> Result<Self, DomainError> {
        short_text("step_id", &request.step_id)?;
        short_text("initiated_by", &request.initiated_by)?;
        short_text("prepared_by", &request.prepared_by)?;
        let shaped = request
            .plan
            .get("action")
            .is_some_and(|a| a.as_str().is_some_and(|a| !a.is_empty()))
            && request.plan.get("params").is_some();
        if !shaped {
            return Err(DomainError::invalid(
                "plan",
                "must be an object with an `action` name and `params`",
            ));
        }
        if request.required == 0 {
            return Err(DomainError::invalid(
                "required",
                "at least one approval must be required",
            ));
        }
        for (field, role) in [
            ("approver_role", Some(request.approver_role)),
            ("escalate_to", request.escalate_to),
        ] {
            if role == Some(Role::Auditor) {
                return Err(DomainError::invalid(
                    field,
                    "auditors read everything and change nothing, so they cannot approve",
                ));
            }
        }
        if request.deadline.is_some_and(|d| d <= now) {
            return Err(DomainError::invalid("deadline", "must be in the future"));
        }
        if request.escalate_to.is_some() && request.deadline.is_none() {
            return Err(DomainError::invalid(
                "escalate_to",
                "an approval escalates at its deadline, so it needs one",
            ));
        }
        Ok(Self {
            id: ApprovalId::generate(now),
            instance_id: request.instance_id,
            step_id: request.step_id,
            tenant_id: request.tenant_id,
            state: ApprovalState::Pending,
            plan: request.plan,
            required: request.required,
            approver_role: request.approver_role,
            initiated_by: request.initiated_by,
            prepared_by: request.prepared_by,
            deadline: request.deadline,
            escalate_to: request.escalate_to,
            escalated_at: None,
            created_at: now,
            decided_at: None,
            decisions: Vec::new(),
        })
    }

    /// Whether the escalation is in effect at `now`: once it is recorded,
    /// and already from the deadline on when there is a role to escalate
    /// to (so that the authority moves at the deadline, not when the
    /// engine's sweep gets round to recording it).
    pub fn is_escalated(&self, now: OffsetDateTime) -> bool {
        self.escalated_at.is_some()
            || (self.escalate_to.is_some() && self.deadline.is_some_and(|d| d <= now))
    }

    /// The role that decides at `now` (admins aside): `escalate_to` once
    /// escalated, `approver_role` before.
    pub fn deciding_role(&self, now: OffsetDateTime) -> Role {
        match self.escalate_to {
            Some(role) if self.is_escalated(now) => role,
            _ => self.approver_role,
        }
    }

    /// How many approvals (plain or modified) it has so far.
    pub fn approvals_given(&self) -> usize {
        self.decisions
            .iter()
            .filter(|d| d.verdict.approves())
            .count()
    }

    /// Whether `operator` may decide on this approval at `now`. Refused: an
    /// approval that is no longer pending; the person who initiated the
    /// workflow or prepared the plan (separation of duties, which binds
    /// admins too); someone who has decided already; a disabled operator;
    /// and anyone whose role is not the deciding role (see
    /// [`Approval::deciding_role`]), except admins.
    pub fn may_decide(&self, operator: &Operator, now: OffsetDateTime) -> Result<(), DomainError> {
        if self.state != ApprovalState::Pending {
            return Err(DomainError::invalid(
                "approval",
                format!(
                    "is {}, not pending: there is nothing left to decide",
                    self.state
                ),
            ));
        }
        let me = operator.id.to_string();
        for (who, did) in [
            (&self.initiated_by, "initiated the workflow"),
            (&self.prepared_by, "prepared the plan"),
        ] {
            if *who == me {
                return Err(DomainError::invalid(
                    "operator",
                    format!(
                        "separation of duties: {} {did} and so cannot decide on it",
                        operator.name
                    ),
                ));
            }
        }
        if self.decisions.iter().any(|d| d.operator_id == operator.id) {
            return Err(DomainError::invalid(
                "operator",
                format!("{} has decided on this approval already", operator.name),
            ));
        }
        if operator.disabled {
            return Err(DomainError::invalid(
                "operator",
                format!("{} is disabled", operator.name),
            ));
        }
        let role = self.deciding_role(now);
        if operator.role != Role::Admin && operator.role != role {
            let when = if role == self.approver_role {
                ""
            } else {
                " since it escalated"
            };
            let who = if role == Role::Admin {
                "an admin".to_owned()
            } else {
                format!("{} {role} or an admin", article(role))
            };
            return Err(DomainError::invalid(
                "operator",
                format!(
                    "only {who} may decide on this approval{when}; {} is {} {}",
                    operator.name,
                    article(operator.role),
                    operator.role
                ),
            ));
        }
        Ok(())
    }

    /// Records `decision` (checked with [`Approval::may_decide`] first) and
    /// returns the new state: a rejection decides at once; an approval or a
    /// modification decides once `required` distinct people have approved.
    /// A decision that cannot count (the approval is not pending, the
    /// decision is for another approval, or its author decided already)
    /// changes nothing.
    pub fn apply(&mut self, decision: Decision) -> ApprovalState {
        let counts = self.state == ApprovalState::Pending
            && decision.approval_id == self.id
            && !self
                .decisions
                .iter()
                .any(|d| d.operator_id == decision.operator_id);
        if !counts {
            return self.state;
        }
        let (verdict, at) = (decision.verdict, decision.at);
        self.decisions.push(decision);
        let decided = match verdict {
            Verdict::Reject => Some(ApprovalState::Rejected),
            Verdict::Approve | Verdict::Modify => {
                let required = usize::try_from(self.required).unwrap_or(usize::MAX);
                (self.approvals_given() >= required).then_some(ApprovalState::Approved)
            }
        };
        if let Some(state) = decided {
            self.state = state;
            self.decided_at = Some(at);
        }
        self.state
    }

    /// The parameters to run with, once approved: those of the latest
    /// modification, or the plan's. `None` while the approval is not
    /// approved (or the plan has no parameters).
    pub fn approved_params(&self) -> Option<&Value> {
        if self.state != ApprovalState::Approved {
            return None;
        }
        self.decisions
            .iter()
            .rev()
            .find_map(|d| d.modified_params.as_ref())
            .or_else(|| self.plan.get("params"))
    }

    /// The fingerprint of the target state the plan's diff was prepared
    /// from, if the plan has a diff.
    pub fn plan_fingerprint(&self) -> Option<&str> {
        self.plan.pointer("/diff/fingerprint")?.as_str()
    }

    /// Still pending at `now`, past its deadline, and not escalated yet:
    /// the engine should escalate it (and tell `escalate_to`).
    pub fn is_overdue(&self, now: OffsetDateTime) -> bool {
        self.state == ApprovalState::Pending
            && self.deadline.is_some_and(|d| d <= now)
            && self.escalated_at.is_none()
    }

    /// Records the escalation at `now`, if the approval is pending and not
    /// escalated yet (it may be escalated before its deadline by hand).
    /// Returns whether it did.
    pub fn escalate(&mut self, now: OffsetDateTime) -> bool {
        if self.state != ApprovalState::Pending || self.escalated_at.is_some() {
            return false;
        }
        self.escalated_at = Some(now);
        true
    }

    /// Cancels a pending approval (its workflow was cancelled). Returns
    /// whether it did.
    pub fn cancel(&mut self, now: OffsetDateTime) -> bool {
        if self.state != ApprovalState::Pending {
            return false;
        }
        self.state = ApprovalState::Cancelled;
        self.decided_at = Some(now);
        true
    }
}

/// Where a human task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a person to act and record the outcome.
    Open,
    /// Done, with the outcome recorded.
    Done,
    /// The workflow was cancelled first.
    Cancelled,
}

impl TaskState {
    /// All states.
    pub const ALL: [Self; 3] = [Self::Open, Self::Done, Self::Cancelled];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
        }
    }
}

impl FromStr for TaskState {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_named(&Self::ALL, Self::as_str, "state", text)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A human-only (L3) step: the engine prepares decision support and
/// waits; a person performs the action and records what happened.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HumanTask {
    /// The task's id.
    pub id: HumanTaskId,
    /// The workflow instance waiting for it.
    pub instance_id: WorkflowId,
    /// The step waiting for it (one task per step).
    pub step_id: String,
    /// The tenant it is for, if known.
    pub tenant_id: Option<TenantId>,
    /// Where it is.
    pub state: TaskState,
    /// What the person should weigh: `{"risk", "blast_radius",
    /// "reversibility", "history"}` (and regulatory notes, when known).
    pub decision_support: Value,
    /// What the person recorded as the outcome.
    pub outcome: Option<Value>,
    /// Evidence of it: a note, a ticket, a link.
    pub evidence: Option<String>,
    /// Who did it.
    pub completed_by: Option<OperatorId>,
    /// When it was opened.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it was completed or cancelled.
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

impl HumanTask {
    /// A new, open task for a step, with its decision support (a JSON object).
    pub fn open(
        instance_id: WorkflowId,
        step_id: &str,
        tenant_id: Option<TenantId>,
        decision_support: Value,
        now: OffsetDateTime,
    ) -> Result<Self, DomainError> {
        short_text("step_id", step_id)?;
        if !decision_support.is_object() {
            return Err(DomainError::invalid(
                "decision_support",
                "must be an object (risk, blast radius, reversibility, history)",
            ));
        }
        Ok(Self {
            id: HumanTaskId::generate(now),
            instance_id,
            step_id: step_id.to_owned(),
            tenant_id,
            state: TaskState::Open,
            decision_support,
            outcome: None,
            evidence: None,
            completed_by: None,
            created_at: now,
            completed_at: None,
        })
    }

    /// Records that `operator` performed the task at `now`, with its
    /// outcome (required, not `null`) and evidence (optional; trimmed, at
    /// most [`MAX_EVIDENCE_CHARS`]). Only an open task can be completed,
    /// and only by an enabled operator who may change things (not an
    /// auditor).
    pub fn complete(
        &mut self,
        operator: &Operator,
        outcome: Value,
        evidence: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<(), DomainError> {
        if self.state != TaskState::Open {
            return Err(DomainError::invalid(
                "task",
                format!("is {}, not open: it cannot be completed", self.state),
            ));
        }
        if operator.disabled {
            return Err(DomainError::invalid(
                "operator",
                format!("{} is disabled", operator.name),
            ));
        }
        if operator.role == Role::Auditor {
            return Err(DomainError::invalid(
                "operator",
                format!(
                    "{} is an auditor: auditors read everything and change nothing",
                    operator.name
                ),
            ));
        }
        if outcome.is_null() {
            return Err(DomainError::invalid(
                "outcome",
                "record what was done and how it ended",
            ));
        }
        let evidence = evidence
            .map(|e| prose("evidence", e, MAX_EVIDENCE_CHARS))
            .transpose()?;
        self.state = TaskState::Done;
        self.outcome = Some(outcome);
        self.evidence = evidence;
        self.completed_by = Some(operator.id);
        self.completed_at = Some(now);
        Ok(())
    }

    /// Cancels an open task (its workflow was cancelled). Returns whether it did.
    pub fn cancel(&mut self, now: OffsetDateTime) -> bool {
        if self.state != TaskState::Open {
            return false;
        }
        self.state = TaskState::Cancelled;
        self.completed_at = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::OperatorName;
    use crate::tenant::DisplayName;
    use time::Duration;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_454)
    }

    fn op(name: &str, role: Role) -> Operator {
        Operator::new(
            OperatorName::parse(name).unwrap(),
            DisplayName::parse(name).unwrap(),
            role,
            t0(),
        )
    }

    fn request(initiated_by: &Operator, prepared_by: &str) -> ApprovalRequest {
        ApprovalRequest {
            instance_id: WorkflowId::generate(t0()),
            step_id: "grant-admin".into(),
            tenant_id: Some(TenantId::generate(t0())),
            plan: plan("entra.grant_role", json!({"role": "Global Administrator"})),
            required: 1,
            approver_role: Role::Lead,
            initiated_by: initiated_by.id.to_string(),
            prepared_by: prepared_by.to_owned(),
            deadline: Some(t0() + Duration::hours(4)),
            escalate_to: Some(Role::Admin),
        }
    }

    fn approval(required: u32) -> Approval {
        let starter = op("starter", Role::Technician);
        Approval::open(
            ApprovalRequest {
                required,
                ..request(&starter, "system")
            },
            t0(),
        )
        .unwrap()
    }

    fn decide(a: &Approval, who: &Operator, verdict: Verdict, at: OffsetDateTime) -> Decision {
        let params =
            (verdict == Verdict::Modify).then(|| json!({"role": "Helpdesk Administrator"}));
        Decision::new(a.id, who.id, verdict, "  looks right  ", params, at).unwrap()
    }

    #[test]
    fn states_and_verdicts_round_trip_by_name() {
        for s in ApprovalState::ALL {
            assert_eq!(s.as_str().parse::<ApprovalState>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
        }
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>().unwrap(), v);
            assert_eq!(serde_json::to_value(v).unwrap(), json!(v.as_str()));
        }
        for s in TaskState::ALL {
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        let err = "maybe".parse::<Verdict>().unwrap_err().to_string();
        assert!(err.contains("approve, reject, modify"), "{err}");
        assert!("Pending".parse::<ApprovalState>().is_err());
        assert!(!ApprovalState::Pending.is_final());
        assert!(ApprovalState::Cancelled.is_final());
    }

    #[test]
    fn a_decision_needs_a_reason_and_params_exactly_for_a_modification() {
        let (a, o, at) = (ApprovalId::generate(t0()), OperatorId::generate(t0()), t0());
        let d = Decision::new(a, o, Verdict::Approve, "  fine\nby me ", None, at).unwrap();
        assert_eq!(d.reason, "fine\nby me");
        for reason in ["", "   ", "\u{7}bell"] {
            assert!(Decision::new(a, o, Verdict::Approve, reason, None, at).is_err());
        }
        let long = "x".repeat(MAX_REASON_CHARS);
        assert!(Decision::new(a, o, Verdict::Reject, &long, None, at).is_ok());
        let longer = "é".repeat(MAX_REASON_CHARS + 1);
        assert!(Decision::new(a, o, Verdict::Reject, &longer, None, at).is_err());

        let p = Some(json!({"size": 2}));
        assert!(Decision::new(a, o, Verdict::Modify, "smaller", p.clone(), at).is_ok());
        for missing in [None, Some(Value::Null)] {
            let err = Decision::new(a, o, Verdict::Modify, "smaller", missing, at).unwrap_err();
            assert!(err.to_string().contains("modified_params"), "{err}");
        }
        for v in [Verdict::Approve, Verdict::Reject] {
            assert!(Decision::new(a, o, v, "why", p.clone(), at).is_err());
        }
    }

    #[test]
    fn opening_an_approval_checks_the_request() {
        let starter = op("starter", Role::Technician);
        let ok = request(&starter, "system");
        let a = Approval::open(ok.clone(), t0()).unwrap();
        assert_eq!(
            (a.state, a.decisions.len(), a.created_at),
            (ApprovalState::Pending, 0, t0())
        );
        assert!(a.id.to_string().starts_with("apr_"));

        let bad: Vec<(&str, ApprovalRequest)> = vec![
            (
                "required",
                ApprovalRequest {
                    required: 0,
                    ..ok.clone()
                },
            ),
            (
                "step_id",
                ApprovalRequest {
                    step_id: " ".into(),
                    ..ok.clone()
                },
            ),
            (
                "initiated_by",
                ApprovalRequest {
                    initiated_by: String::new(),
                    ..ok.clone()
                },
            ),
            (
                "prepared_by",
                ApprovalRequest {
                    prepared_by: "a\nb".into(),
                    ..ok.clone()
                },
            ),
            (
                "plan",
                ApprovalRequest {
                    plan: json!({"params": {}}),
                    ..ok.clone()
                },
            ),
            (
                "plan",
                ApprovalRequest {
                    plan: json!({"action": "x"}),
                    ..ok.clone()
                },
            ),
            (
                "plan",
                ApprovalRequest {
                    plan: json!([1]),
                    ..ok.clone()
                },
            ),
            (
                "approver_role",
                ApprovalRequest {
                    approver_role: Role::Auditor,
                    ..ok.clone()
                },
            ),
            (
                "escalate_to",
                ApprovalRequest {
                    escalate_to: Some(Role::Auditor),
                    ..ok.clone()
                },
            ),
            (
                "deadline",
                ApprovalRequest {
                    deadline: Some(t0()),
                    ..ok.clone()
                },
            ),
            (
                "escalate_to",
                ApprovalRequest {
                    deadline: None,
                    ..ok.clone()
                },
            ),
        ];
        for (field, req) in bad {
            let err = Approval::open(req, t0()).unwrap_err();
            assert!(
                matches!(&err, DomainError::Invalid { field: f, .. } if *f == field),
                "{field}: {err}"
            );
        }
        // No deadline and no escalation is fine.
        let open_ended = ApprovalRequest {
            deadline: None,
            escalate_to: None,
            ..ok
        };
        assert!(Approval::open(open_ended, t0()).is_ok());
    }

    #[test]
    fn whoever_initiated_or_prepared_it_cannot_decide_not_even_an_admin() {
        let starter = op("starter", Role::Admin);
        let preparer = op("preparer", Role::Lead);
        let a = Approval::open(request(&starter, &preparer.id.to_string()), t0()).unwrap();
        for (who, did) in [(&starter, "initiated"), (&preparer, "prepared")] {
            let err = a.may_decide(who, t0()).unwrap_err().to_string();
            assert!(err.contains("separation of duties"), "{err}");
            assert!(err.contains(did), "{err}");
        }
        assert!(a.may_decide(&op("other", Role::Lead), t0()).is_ok());
    }

    #[test]
    fn only_the_approver_role_or_an_admin_may_decide() {
        let a = approval(1);
        assert!(a.may_decide(&op("lead", Role::Lead), t0()).is_ok());
        assert!(a.may_decide(&op("admin", Role::Admin), t0()).is_ok());
        for (role, is) in [
            (Role::Technician, "is a technician"),
            (Role::Auditor, "is an auditor"),
        ] {
            let err = a
                .may_decide(&op("someone", role), t0())
                .unwrap_err()
                .to_string();
            assert!(err.contains("only a lead or an admin may"), "{err}");
            assert!(err.contains(is), "{err}");
        }
        let mut disabled = op("gone", Role::Lead);
        disabled.disabled = true;
        assert!(a.may_decide(&disabled, t0()).is_err());
    }

    #[test]
    fn no_one_decides_twice_and_a_decided_approval_takes_no_more_decisions() {
        let mut a = approval(2);
        let lead = op("lead", Role::Lead);
        assert_eq!(
            a.apply(decide(&a, &lead, Verdict::Approve, t0())),
            ApprovalState::Pending
        );
        let err = a.may_decide(&lead, t0()).unwrap_err().to_string();
        assert!(err.contains("already"), "{err}");
        // Applied anyway, a second decision by the same person does not count.
        assert_eq!(
            a.apply(decide(&a, &lead, Verdict::Approve, t0())),
            ApprovalState::Pending
        );
        assert_eq!(a.decisions.len(), 1);

        let other = op("other", Role::Lead);
        assert_eq!(
            a.apply(decide(&a, &other, Verdict::Reject, t0())),
            ApprovalState::Rejected
        );
        let late = op("late", Role::Admin);
        let err = a.may_decide(&late, t0()).unwrap_err().to_string();
        assert!(err.contains("rejected, not pending"), "{err}");
        assert_eq!(
            a.apply(decide(&a, &late, Verdict::Approve, t0())),
            ApprovalState::Rejected
        );
        assert_eq!(a.decisions.len(), 2);

        // A decision for another approval is not taken either.
        let mut b = approval(1);
        assert_eq!(
            b.apply(decide(&a, &late, Verdict::Approve, t0())),
            ApprovalState::Pending
        );
        assert!(b.decisions.is_empty());
    }

    #[test]
    fn n_distinct_approvals_approve_and_one_rejection_rejects() {
        let (x, y, z) = (
            op("xena", Role::Lead),
            op("yann", Role::Lead),
            op("zoe", Role::Admin),
        );
        let mut a = approval(2);
        let first = t0() + Duration::minutes(1);
        let second = t0() + Duration::minutes(2);
        assert_eq!(
            a.apply(decide(&a, &x, Verdict::Approve, first)),
            ApprovalState::Pending
        );
        assert_eq!((a.decided_at, a.approvals_given()), (None, 1));
        assert_eq!(a.approved_params(), None, "nothing runs before approval");
        assert_eq!(
            a.apply(decide(&a, &y, Verdict::Modify, second)),
            ApprovalState::Approved
        );
        assert_eq!(a.decided_at, Some(second));

        let mut r = approval(3);
        assert_eq!(
            r.apply(decide(&r, &x, Verdict::Approve, first)),
            ApprovalState::Pending
        );
        assert_eq!(
            r.apply(decide(&r, &z, Verdict::Reject, second)),
            ApprovalState::Rejected
        );
        assert_eq!(r.decided_at, Some(second));
        assert_eq!(r.approved_params(), None);
    }

    #[test]
    fn the_latest_modification_is_what_runs() {
        let (x, y, z) = (
            op("xena", Role::Lead),
            op("yann", Role::Lead),
            op("zoe", Role::Lead),
        );
        let mut plain = approval(1);
        plain.apply(decide(&plain, &x, Verdict::Approve, t0()));
        assert_eq!(
            plain.approved_params(),
            Some(&json!({"role": "Global Administrator"}))
        );

        let mut a = approval(3);
        let d1 = Decision::new(
            a.id,
            x.id,
            Verdict::Modify,
            "less",
            Some(json!({"n": 1})),
            t0(),
        )
        .unwrap();
        let d2 = Decision::new(
            a.id,
            y.id,
            Verdict::Modify,
            "even less",
            Some(json!({"n": 2})),
            t0(),
        )
        .unwrap();
        a.apply(d1);
        a.apply(d2);
        assert_eq!(
            a.apply(decide(&a, &z, Verdict::Approve, t0())),
            ApprovalState::Approved
        );
        assert_eq!(a.approved_params(), Some(&json!({"n": 2})));
    }

    #[test]
    fn overdue_approvals_escalate_once_and_then_the_escalation_role_decides() {
        let mut a = approval(1);
        let deadline = a.deadline.unwrap();
        let before = deadline - Duration::seconds(1);
        assert!(!a.is_overdue(before));
        assert!(a.is_overdue(deadline));
        let lead = op("lead", Role::Lead);
        let admin = op("admin", Role::Admin);
        assert!(a.may_decide(&lead, before).is_ok());
        // From the deadline on, the escalation role decides, recorded or not.
        let err = a.may_decide(&lead, deadline).unwrap_err().to_string();
        assert!(
            err.contains("only an admin may") && err.contains("since it escalated"),
            "{err}"
        );
        assert!(a.may_decide(&admin, deadline).is_ok());

        assert!(a.escalate(deadline));
        assert_eq!(a.escalated_at, Some(deadline));
        assert!(!a.is_overdue(deadline + Duration::hours(1)));
        assert!(!a.escalate(deadline + Duration::hours(1)), "escalates once");
        assert_eq!(a.deciding_role(before), Role::Admin);

        // Escalating to a lead hands a technician-approved step to leads.
        let starter = op("starter", Role::Admin);
        let mut t = Approval::open(
            ApprovalRequest {
                approver_role: Role::Technician,
                escalate_to: Some(Role::Lead),
                ..request(&starter, "system")
            },
            t0(),
        )
        .unwrap();
        let tech = op("tech", Role::Technician);
        assert!(t.may_decide(&tech, t0()).is_ok());
        assert!(t.may_decide(&lead, t0()).is_err());
        t.escalate(t0());
        assert!(t.may_decide(&tech, t0()).is_err());
        assert!(t.may_decide(&lead, t0()).is_ok());

        // Without a role to escalate to, the approver role keeps deciding.
        let mut n = approval(1);
        n.escalate_to = None;
        assert!(n.may_decide(&lead, deadline + Duration::days(1)).is_ok());

        // A decided approval is neither overdue nor escalated.
        let mut d = approval(1);
        d.apply(decide(&d, &lead, Verdict::Approve, t0()));
        assert!(!d.is_overdue(deadline));
        assert!(!d.escalate(deadline));
        // An approval without a deadline is never overdue.
        let mut open_ended = approval(1);
        open_ended.deadline = None;
        assert!(!open_ended.is_overdue(deadline + Duration::days(365)));
    }

    #[test]
    fn cancelling_ends_only_a_pending_approval() {
        let mut a = approval(1);
        assert!(a.cancel(t0()));
        assert_eq!(
            (a.state, a.decided_at),
            (ApprovalState::Cancelled, Some(t0()))
        );
        assert!(!a.cancel(t0() + Duration::seconds(1)));
        assert_eq!(a.decided_at, Some(t0()));
        assert!(a.may_decide(&op("lead", Role::Lead), t0()).is_err());
    }

    #[test]
    fn a_human_task_is_completed_once_with_an_outcome() {
        let inst = WorkflowId::generate(t0());
        let support = json!({"risk": "high", "blast_radius": {"tenants": 200}, "reversibility": "manual", "history": []});
        assert!(HumanTask::open(inst, "apply-standard", None, json!("risky"), t0()).is_err());
        assert!(HumanTask::open(inst, "", None, support.clone(), t0()).is_err());
        let mut task = HumanTask::open(inst, "apply-standard", None, support, t0()).unwrap();
        assert!(task.id.to_string().starts_with("tsk_"));
        assert_eq!(task.state, TaskState::Open);

        let admin = op("admin", Role::Admin);
        let err = task.complete(&admin, Value::Null, None, t0()).unwrap_err();
        assert!(err.to_string().contains("outcome"), "{err}");
        assert!(
            task.complete(&admin, json!({"done": true}), Some("  "), t0())
                .is_err()
        );
        assert!(
            task.complete(
                &op("auditor", Role::Auditor),
                json!({"done": true}),
                None,
                t0()
            )
            .is_err()
        );
        let mut disabled = op("gone", Role::Technician);
        disabled.disabled = true;
        assert!(
            task.complete(&disabled, json!({"done": true}), None, t0())
                .is_err()
        );
        assert_eq!(task.state, TaskState::Open, "refusals change nothing");

        let at = t0() + Duration::minutes(5);
        task.complete(&admin, json!({"applied": 200}), Some(" ticket #42 "), at)
            .unwrap();
        assert_eq!(task.state, TaskState::Done);
        assert_eq!(task.outcome, Some(json!({"applied": 200})));
        assert_eq!(task.evidence.as_deref(), Some("ticket #42"));
        assert_eq!(
            (task.completed_by, task.completed_at),
            (Some(admin.id), Some(at))
        );

        let err = task
            .complete(&admin, json!({"again": true}), None, at)
            .unwrap_err();
        assert!(err.to_string().contains("done, not open"), "{err}");
        assert!(!task.cancel(at));

        let mut other = HumanTask::open(inst, "b", None, json!({}), t0()).unwrap();
        assert!(other.cancel(at));
        assert_eq!(
            (other.state, other.completed_at),
            (TaskState::Cancelled, Some(at))
        );
        assert!(other.complete(&admin, json!(1), None, at).is_err());
    }

    #[test]
    fn approvals_serialize_with_their_decisions() {
        let mut a = approval(1);
        let lead = op("lead", Role::Lead);
        a.apply(decide(&a, &lead, Verdict::Modify, t0()));
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["state"], "approved");
        assert_eq!(v["approver_role"], "lead");
        assert_eq!(v["plan"]["action"], "entra.grant_role");
        assert_eq!(v["decisions"][0]["verdict"], "modify");
        assert_eq!(v["decisions"][0]["reason"], "looks right");
        assert!(v["id"].as_str().unwrap().starts_with("apr_"));
    }
}
