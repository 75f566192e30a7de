//! The OSCAL assessment-results export of one tenant's audit log.
//!
//! The export is made from the audit log alone, not from the live tables:
//! what it states is what the log proves, each fact citing its leaf index.
//! [`App::export_oscal`] reads the tenant's log, opens the sealed details
//! with the tenant's key, and [`assemble`] turns the entries into the
//! `gatehouse_oscal` input (see docs/oscal.md for the mapping).

use std::collections::{BTreeMap, HashMap, HashSet};

use gatehouse_core::GateLevel;
use gatehouse_core::approval::Verdict;
use gatehouse_core::audit::AuditCheckpoint;
use gatehouse_core::id::{OperatorId, TenantId};
use gatehouse_core::operator::Operator;
use gatehouse_core::store::StoreError;
use gatehouse_core::workflow::InstanceState;
use gatehouse_oscal::{
    Actor as OscalActor, Analysis, CheckpointRef, Compensation, Document, ExportInput,
    ExportOptions, GateDecision, HumanTaskCompleted, NotificationSent, OperatorRef, Outcome,
    Period, RunEntry, StepExecuted, TenantRef as OscalTenant, Trigger, WorkflowRun,
};
use gatehouse_vault::{TenantSealer, VaultError};
use serde_json::Value;
use time::OffsetDateTime;

use super::{Actor, App, TenantRef};
use crate::audit::{Details, open_details_with};
use crate::authz::Permission;
use crate::error::AppError;

/// Entries read per query while exporting.
const EXPORT_PAGE: u32 = 5_000;

/// One audit entry of a tenant's log, with its details opened.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    /// Its index in the log.
    pub idx: u64,
    /// When it happened.
    pub at: OffsetDateTime,
    /// Who: an operator id, `system`, or an event source.
    pub actor: String,
    /// What, such as `workflow.step.succeeded`.
    pub action: String,
    /// The instance or event it concerns.
    pub subject: String,
    /// The details as recorded; `Null` when they cannot be read any more
    /// (the tenant's key was destroyed).
    pub details: Value,
}

impl App {
    /// The OSCAL assessment-results document of `tenant`'s workflow runs
    /// started in `period` (each with all of its facts up to now), citing
    /// the log's signed checkpoints. Needs `ReadAudit`.
    pub async fn export_oscal(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        period: Period,
    ) -> Result<Document, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ReadAudit, tenant)
            .await?;
        if let (Some(since), Some(until)) = (period.since, period.until)
            && since >= until
        {
            return Err(AppError::Invalid(format!(
                "the period is empty: --since {since} is not before --until {until}"
            )));
        }
        let log = tenant.id.to_string();
        let facts = self.read_facts(tenant.id).await?;
        let operators = self.operators_in(&facts).await?;
        let runs = assemble(&facts, &operators, period);
        let checkpoints = self
            .store
            .list_checkpoints(&log)
            .await?
            .into_iter()
            .map(|stored| checkpoint_ref(&log, stored))
            .collect::<Result<Vec<_>, _>>()?;
        let input = ExportInput {
            tenant: OscalTenant {
                id: tenant.id,
                slug: tenant.slug,
                name: tenant.display_name,
            },
            period,
            generated_at: self.clock.now(),
            runs,
            checkpoints,
        };
        gatehouse_oscal::export(&input, &ExportOptions::default())
            .map_err(|err| AppError::Internal(format!("the OSCAL export failed: {err}")))
    }

    /// Every workflow and event entry of `tenant`'s log, details opened
    /// with its key (fetched once; none if the tenant was deleted).
    async fn read_facts(&self, tenant: TenantId) -> Result<Vec<Fact>, AppError> {
        let log = tenant.to_string();
        let sealer = match self.keyring.sealer(tenant).await {
            Ok(sealer) => Some(sealer),
            Err(VaultError::KeyDestroyed(_)) => None,
            Err(err) => return Err(err.into()),
        };
        let mut facts = Vec::new();
        let mut from = 0;
        loop {
            let page = self.store.audit_entries(&log, from, EXPORT_PAGE).await?;
            let full = page.len() == EXPORT_PAGE as usize;
            for entry in page {
                from = entry.idx + 1;
                if !(entry.action.starts_with("workflow.") || entry.action == "event.received") {
                    continue;
                }
                let details = leaf_details(sealer.as_ref(), &entry.leaf)?;
                facts.push(Fact {
                    idx: entry.idx,
                    at: entry.at,
                    actor: entry.actor,
                    action: entry.action,
                    subject: entry.subject,
                    details,
                });
            }
            if !full {
                return Ok(facts);
            }
        }
    }

    /// The operators who acted in `facts`, by id. Operators are disabled,
    /// never deleted, so each is found; one that is not is reported rather
    /// than their decisions being left out of the export.
    async fn operators_in(
        &self,
        facts: &[Fact],
    ) -> Result<HashMap<OperatorId, Operator>, AppError> {
        let ids: HashSet<OperatorId> = facts.iter().filter_map(|f| f.actor.parse().ok()).collect();
        let mut operators = HashMap::with_capacity(ids.len());
        for id in ids {
            match self.store.get_operator(id).await {
                Ok(operator) => {
                    operators.insert(id, operator);
                }
                Err(StoreError::NotFound(_)) => {
                    return Err(AppError::Internal(format!(
                        "operator {id} acted in the audit log but is not stored"
                    )));
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(operators)
    }
}

/// The OSCAL reference of a stored checkpoint of `log`.
fn checkpoint_ref(log: &str, stored: AuditCheckpoint) -> Result<CheckpointRef, AppError> {
    let body = super::checkpoints::stored_body(&stored)?;
    Ok(CheckpointRef {
        origin: body.origin().to_owned(),
        tree_size: body.size(),
        root_hash: *body.root().as_bytes(),
        note: stored.note,
        href: format!("/api/v1/audit/logs/{log}/checkpoints"),
    })
}

/// A run being assembled.
struct Draft {
    run: WorkflowRun,
    /// Steps whose rollback a reviewer asked for: who and why.
    rollbacks: HashMap<String, (String, String)>,
    /// Why the instance is compensating, for compensations the engine ran.
    compensating: Option<String>,
}

/// Turns a tenant's facts, in log order, into the runs started in `period`.
/// Facts of runs started outside the period, and facts that name no run
/// started in the log, are left out.
pub fn assemble(
    facts: &[Fact],
    operators: &HashMap<OperatorId, Operator>,
    period: Period,
) -> Vec<WorkflowRun> {
    let in_period = |at: OffsetDateTime| {
        period.since.is_none_or(|since| at >= since) && period.until.is_none_or(|until| at < until)
    };
    let actor = |id: &str| match id.parse::<OperatorId>() {
        Ok(op) => operators.get(&op).map_or(OscalActor::System, |o| {
            OscalActor::Operator(operator_ref(o))
        }),
        Err(_) => OscalActor::System,
    };
    let mut triggers: HashMap<&str, Trigger> = HashMap::new();
    let mut drafts: BTreeMap<u64, Draft> = BTreeMap::new();
    let mut by_instance: HashMap<&str, u64> = HashMap::new();
    for fact in facts {
        let d = &fact.details;
        if fact.action == "event.received" {
            if let Ok(event_id) = fact.subject.parse() {
                triggers.insert(
                    &fact.subject,
                    Trigger {
                        event_id,
                        source: fact.actor.clone(),
                        event_type: text(&d["type"]).unwrap_or("unknown").to_owned(),
                        received_at: fact.at,
                        leaf_index: fact.idx,
                    },
                );
            }
            continue;
        }
        let Some(kind) = fact.action.strip_prefix("workflow.") else {
            continue;
        };
        let detail = &d["detail"];
        if kind == "instance.started" {
            let Ok(instance_id) = fact.subject.parse() else {
                continue;
            };
            if !in_period(fact.at) {
                continue;
            }
            let event = text(&detail["event"]).unwrap_or_default();
            let trigger = triggers.get(event).cloned().or_else(|| {
                // The event is not in this log (the log began later, or the
                // event was recorded elsewhere): cite the start instead.
                Some(Trigger {
                    event_id: event.parse().ok()?,
                    source: "unknown".into(),
                    event_type: "unknown".into(),
                    received_at: fact.at,
                    leaf_index: fact.idx,
                })
            });
            let Some(trigger) = trigger else { continue };
            let initiated_by = actor(text(&detail["actor"]).unwrap_or(&fact.actor));
            by_instance.insert(&fact.subject, fact.idx);
            drafts.insert(
                fact.idx,
                Draft {
                    run: WorkflowRun {
                        instance_id,
                        template: text(&d["template"]).unwrap_or("unknown").to_owned(),
                        template_version: d["template_version"]
                            .as_u64()
                            .and_then(|v| u32::try_from(v).ok())
                            .unwrap_or(0),
                        started_at: fact.at,
                        ended_at: None,
                        state: InstanceState::Running,
                        initiated_by,
                        trigger,
                        entries: Vec::new(),
                        revocation: None,
                    },
                    rollbacks: HashMap::new(),
                    compensating: None,
                },
            );
            continue;
        }
        let Some(draft) = by_instance
            .get(fact.subject.as_str())
            .and_then(|start| drafts.get_mut(start))
        else {
            continue;
        };
        let step = text(&d["step"]).unwrap_or_default().to_owned();
        let entry = match kind {
            "step.succeeded" | "step.failed" | "step.retrying" => {
                let succeeded = kind == "step.succeeded";
                let error = text(&detail["error"]).map(|e| {
                    if kind == "step.retrying" {
                        format!("{e} (will be retried)")
                    } else {
                        e.to_owned()
                    }
                });
                Some(RunEntry::StepExecuted(StepExecuted {
                    step_id: step,
                    action: text(&detail["action"]).unwrap_or("unknown").to_owned(),
                    gate: serde_json::from_value::<GateLevel>(detail["gate"].clone())
                        .unwrap_or(GateLevel::L0),
                    attempt: detail["attempt"]
                        .as_u64()
                        .and_then(|a| u32::try_from(a).ok())
                        .unwrap_or(1),
                    outcome: if succeeded {
                        Outcome::Succeeded
                    } else {
                        Outcome::Failed
                    },
                    detail: error,
                    at: fact.at,
                    leaf_index: fact.idx,
                }))
            }
            "approval.approved" | "approval.rejected" => {
                let decided_by = fact
                    .actor
                    .parse::<OperatorId>()
                    .ok()
                    .and_then(|id| operators.get(&id));
                let approval_id = text(&detail["approval"]).and_then(|a| a.parse().ok());
                match (decided_by, approval_id) {
                    (Some(op), Some(approval_id)) => {
                        let verdict = if kind == "approval.rejected" {
                            Verdict::Reject
                        } else if detail["override"].as_bool() == Some(true) {
                            Verdict::Modify
                        } else {
                            Verdict::Approve
                        };
                        Some(RunEntry::GateDecision(GateDecision {
                            approval_id,
                            step_id: step,
                            prepared_by: OscalActor::System,
                            decided_by: operator_ref(op),
                            verdict,
                            reason: text(&detail["reason"]).unwrap_or_default().to_owned(),
                            at: fact.at,
                            leaf_index: fact.idx,
                        }))
                    }
                    _ => None,
                }
            }
            "approval.requested" => Some(RunEntry::Analysis(Analysis {
                text: format!(
                    "The gate policy holds step `{step}` at {} for a person's approval before it runs.",
                    text(&detail["gate"]).unwrap_or("L2")
                ),
                step_id: Some(step),
                confidence: None,
                at: fact.at,
                leaf_index: fact.idx,
            })),
            "human_task.created" => Some(RunEntry::Analysis(Analysis {
                text: format!(
                    "Step `{step}` is for a person to perform (L3); Gatehouse prepared its decision support."
                ),
                step_id: Some(step),
                confidence: None,
                at: fact.at,
                leaf_index: fact.idx,
            })),
            "human_task.completed" => {
                let by = fact
                    .actor
                    .parse::<OperatorId>()
                    .ok()
                    .and_then(|id| operators.get(&id));
                let task = text(&detail["task"]).and_then(|t| t.parse().ok());
                match (by, task) {
                    (Some(op), Some(task_id)) => {
                        Some(RunEntry::HumanTaskCompleted(HumanTaskCompleted {
                            task_id,
                            step_id: step,
                            by: operator_ref(op),
                            outcome: match &detail["outcome"] {
                                Value::String(s) => s.clone(),
                                Value::Null => "recorded".to_owned(),
                                other => other.to_string(),
                            },
                            evidence: text(&detail["evidence"]).unwrap_or_default().to_owned(),
                            at: fact.at,
                            leaf_index: fact.idx,
                        }))
                    }
                    _ => None,
                }
            }
            "step.rollback_requested" => {
                draft.rollbacks.insert(
                    step,
                    (
                        fact.actor.clone(),
                        text(&detail["reason"]).unwrap_or_default().to_owned(),
                    ),
                );
                None
            }
            "step.compensated" | "compensation.failed" => {
                let (by, reason) = match draft.rollbacks.remove(&step) {
                    Some((by, reason)) => (actor(&by), reason),
                    None => (
                        OscalActor::System,
                        draft
                            .compensating
                            .clone()
                            .unwrap_or_else(|| "the workflow compensated".to_owned()),
                    ),
                };
                let outcome = if kind == "step.compensated" {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                };
                Some(RunEntry::Compensation(Compensation {
                    step_id: step,
                    by,
                    reason,
                    outcome,
                    at: fact.at,
                    leaf_index: fact.idx,
                }))
            }
            "notification.queued" => text(&detail["notification"])
                .and_then(|n| n.parse().ok())
                .map(|notification_id| {
                    RunEntry::Notification(NotificationSent {
                        notification_id,
                        step_id: step,
                        channel: "review request".to_owned(),
                        at: fact.at,
                        leaf_index: fact.idx,
                    })
                }),
            other => {
                if let Some(state) = other.strip_prefix("instance.").and_then(state_named) {
                    draft.run.state = state;
                    draft.run.ended_at = state.is_final().then_some(fact.at);
                    if state == InstanceState::Compensating {
                        draft.compensating = text(&detail["reason"]).map(str::to_owned);
                    }
                }
                None
            }
        };
        if let Some(entry) = entry {
            draft.run.entries.push(entry);
        }
    }
    drafts.into_values().map(|d| d.run).collect()
}

fn text(value: &Value) -> Option<&str> {
    value.as_str()
}

fn state_named(name: &str) -> Option<InstanceState> {
    InstanceState::ALL.into_iter().find(|s| s.as_str() == name)
}

fn operator_ref(operator: &Operator) -> OperatorRef {
    OperatorRef {
        id: operator.id,
        name: operator.name.clone(),
        display_name: operator.display_name.clone(),
        role: operator.role,
    }
}

/// The details of a leaf: in clear or opened; `Null` if they are withheld
/// or their key is destroyed.
fn leaf_details(sealer: Option<&TenantSealer>, leaf: &str) -> Result<Value, AppError> {
    match open_details_with(sealer, leaf) {
        Ok(Details::Clear(details) | Details::Opened(details)) => Ok(details),
        Ok(Details::Withheld(_) | Details::KeyDestroyed) => Ok(Value::Null),
        Err(err) => Err(AppError::Internal(format!(
            "an audit entry's details cannot be read: {err}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::id::{ApprovalId, EventId, WorkflowId};
    use gatehouse_core::operator::{OperatorName, Role};
    use gatehouse_core::tenant::DisplayName;
    use serde_json::json;

    struct Log {
        facts: Vec<Fact>,
        at: OffsetDateTime,
    }

    impl Log {
        fn push(&mut self, actor: &str, action: &str, subject: &str, details: Value) {
            self.at += time::Duration::seconds(1);
            self.facts.push(Fact {
                idx: self.facts.len() as u64,
                at: self.at,
                actor: actor.into(),
                action: action.into(),
                subject: subject.into(),
                details,
            });
        }

        fn step(&mut self, wf: &str, kind: &str, actor: &str, step: Option<&str>, detail: Value) {
            let details = json!({"template": "onboard", "template_version": 3, "step": step, "detail": detail});
            self.push(actor, &format!("workflow.{kind}"), wf, details);
        }
    }

    #[test]
    fn entries_of_a_log_become_runs_with_their_facts() -> Result<(), Box<dyn std::error::Error>> {
        let t0 = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let lead = Operator::new(
            OperatorName::parse("lea.lead")?,
            DisplayName::parse("Lea Lead")?,
            Role::Lead,
            t0,
        );
        let operators = HashMap::from([(lead.id, lead.clone())]);
        let lead_id = lead.id.to_string();
        let event = EventId::generate(t0).to_string();
        let wf = WorkflowId::generate(t0).to_string();
        let approval = ApprovalId::generate(t0).to_string();
        let mut log = Log {
            facts: Vec::new(),
            at: t0,
        };
        log.push(
            "psa.connectwise",
            "event.received",
            &event,
            json!({"type": "psa.opportunity.won"}),
        );
        log.step(
            &wf,
            "instance.started",
            "system",
            None,
            json!({"event": event, "actor": "system"}),
        );
        log.step(
            &wf,
            "approval.requested",
            "system",
            Some("m365"),
            json!({"approval": approval, "gate": "L2"}),
        );
        log.step(
            &wf,
            "approval.approved",
            &lead_id,
            Some("m365"),
            json!({"approval": approval, "by": lead_id, "reason": "ok", "override": true}),
        );
        log.step(
            &wf,
            "step.retrying",
            "system",
            Some("m365"),
            json!({"attempt": 1, "error": "429", "action": "graph.gdap"}),
        );
        log.step(
            &wf,
            "step.succeeded",
            "system",
            Some("m365"),
            json!({"attempt": 2, "gate": "L2", "action": "graph.gdap"}),
        );
        log.step(
            &wf,
            "step.rollback_requested",
            &lead_id,
            Some("m365"),
            json!({"by": lead_id, "reason": "wrong tenant"}),
        );
        log.step(
            &wf,
            "step.compensated",
            "system",
            Some("m365"),
            json!({"attempt": 1}),
        );
        log.step(&wf, "instance.completed", "system", None, json!({}));
        // A run of another instance that never started in this log.
        log.step(
            &WorkflowId::generate(t0).to_string(),
            "step.succeeded",
            "system",
            Some("x"),
            json!({}),
        );

        let runs = assemble(&log.facts, &operators, Period::default());
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!(run.template, "onboard");
        assert_eq!(run.template_version, 3);
        assert_eq!(run.trigger.leaf_index, 0);
        assert_eq!(run.trigger.source, "psa.connectwise");
        assert_eq!(run.state, InstanceState::Completed);
        assert_eq!(run.ended_at, Some(log.facts[8].at));
        let kinds: Vec<u64> = run.entries.iter().map(RunEntry::leaf_index).collect();
        assert_eq!(
            kinds,
            vec![2, 3, 4, 5, 7],
            "the rollback request is folded into its compensation"
        );
        let RunEntry::GateDecision(decision) = &run.entries[1] else {
            return Err(format!("{:?}", run.entries[1]).into());
        };
        assert_eq!(decision.verdict, Verdict::Modify);
        assert_eq!(decision.decided_by.id, lead.id);
        let RunEntry::StepExecuted(retry) = &run.entries[2] else {
            return Err(format!("{:?}", run.entries[2]).into());
        };
        assert_eq!(retry.outcome, Outcome::Failed);
        assert_eq!(retry.action, "graph.gdap");
        assert_eq!(retry.detail.as_deref(), Some("429 (will be retried)"));
        let RunEntry::Compensation(undo) = &run.entries[4] else {
            return Err(format!("{:?}", run.entries[4]).into());
        };
        assert_eq!(undo.reason, "wrong tenant");
        assert_eq!(undo.by.operator_id(), Some(lead.id));

        let later = Period {
            since: Some(log.facts[2].at),
            until: None,
        };
        assert!(
            assemble(&log.facts, &operators, later).is_empty(),
            "started before the period"
        );
        Ok(())
    }
}
