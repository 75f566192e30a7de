//! The runtime: takes events in, starts instances, and moves them forward.
//!
//! One *wave* advances an instance as far as it can go without waiting:
//! the steps whose dependencies are met run (concurrently), and their
//! results are committed. `tick` runs one wave for every due instance and
//! commits all of them in one transaction (group commit): that is what
//! keeps the journal durable without one commit per step. A crash between
//! an action and the commit re-runs the action with the same idempotency
//! key on the next wave (see `docs/engine.md` for the exact guarantee).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::approval::{
    Approval, ApprovalRequest, ApprovalState, Decision, HumanTask, Verdict, plan as approval_plan,
    plan_with_diff,
};
use gatehouse_core::clock::Clock;
use gatehouse_core::gate::{GateLevel, GatePolicy};
use gatehouse_core::id::{ApprovalId, HumanTaskId};
use gatehouse_core::id::{EventId, TenantId, WorkflowId};
use gatehouse_core::notify::Notification;
use gatehouse_core::operator::{Operator, Role};
use gatehouse_core::store::StoreError;
pub use gatehouse_core::store::WorkflowStore;
use gatehouse_core::workflow::{
    DedupKey, EventKind, EventSource, HistoryEntry, InboundEvent, Instance, InstanceState,
    Progress, StepRun, StepState,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast};

use crate::action::{ActionCall, ActionError, ActionRegistry, Plan};
use crate::breaker::BreakerRegistry;
use crate::notify::review_request;
use crate::retry::random_unit;
use crate::stats::EngineStats;
use crate::template::{OnFailure, Step, Template};

mod compensate;
mod escalation;
mod plans;
mod rollback;
mod timers;

pub use escalation::ESCALATION_INTERVAL;

/// Why the engine could not do something.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A person's request was refused by a rule (separation of duties, a
    /// decision already made, a missing reason, …).
    #[error("{0}")]
    Refused(#[from] gatehouse_core::DomainError),
    /// A pinned template could not be read back (a bug or corrupt data).
    #[error("instance {instance}: its pinned template is unreadable: {reason}")]
    PinnedTemplate {
        /// The instance.
        instance: WorkflowId,
        /// Why.
        reason: String,
    },
}

/// How long an approval may wait before it escalates to an admin.
pub const APPROVAL_DEADLINE: time::Duration = time::Duration::hours(4);

/// Where templates come from, for the router and for new instances.
pub trait Templates: Send + Sync {
    /// The latest version of every template triggered by this event.
    fn triggered_by(&self, event_type: &str, event: &Value) -> Vec<Template>;
}

impl Templates for crate::template::TemplateSet {
    fn triggered_by(&self, event_type: &str, event: &Value) -> Vec<Template> {
        crate::template::TemplateSet::triggered_by(self, event_type, event)
            .into_iter()
            .map(|t| (**t).clone())
            .collect()
    }
}

impl Templates for Vec<Template> {
    fn triggered_by(&self, event_type: &str, event: &Value) -> Vec<Template> {
        // The highest version of each name wins.
        let mut latest: BTreeMap<&str, &Template> = BTreeMap::new();
        for template in self.iter().filter(|t| t.is_triggered_by(event_type, event)) {
            let name = template.name.as_str();
            if latest
                .get(name)
                .is_none_or(|t| t.version < template.version)
            {
                latest.insert(name, template);
            }
        }
        latest.into_values().cloned().collect()
    }
}

/// An event to submit.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The tenant it concerns, if known.
    pub tenant_id: Option<TenantId>,
    /// Where it came from.
    pub source: EventSource,
    /// What happened.
    pub kind: EventKind,
    /// The sender's deduplication key.
    pub dedup_key: DedupKey,
    /// The event's data.
    pub payload: Value,
}

/// What submitting an event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The stored event (the original one, for a duplicate).
    pub event: InboundEvent,
    /// Whether this delivery was a duplicate of an earlier one.
    pub duplicate: bool,
    /// The instances the event started (the same list for a duplicate).
    pub instances: Vec<WorkflowId>,
}

/// Tuning.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Instances advanced (and committed together) per tick.
    pub batch: u32,
    /// How long an idle worker sleeps before looking for due work again
    /// when nothing wakes it.
    pub idle_poll: Duration,
    /// This node's name in leases. Nodes sharing a database need distinct
    /// names; a node restarted under the same name takes its own leases
    /// back at once instead of waiting for them to expire.
    pub node: String,
    /// How long a claim on an instance lasts. Another node takes over an
    /// instance whose node died once its lease expires. A wave that outlives
    /// its lease is still safe (the version check on commit refuses the
    /// second writer) but may run an action twice, with the same
    /// idempotency key: keep it above the longest step timeout.
    pub lease: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            idle_poll: Duration::from_millis(500),
            node: "local".to_owned(),
            lease: Duration::from_secs(300),
        }
    }
}

/// The workflow engine.
pub struct Engine {
    store: Arc<dyn WorkflowStore>,
    templates: Arc<dyn Templates>,
    actions: Arc<ActionRegistry>,
    breakers: Arc<BreakerRegistry>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    wake: Notify,
    stats: Arc<EngineStats>,
    finished: broadcast::Sender<(WorkflowId, InstanceState)>,
    /// Concurrent submissions, committed together.
    submissions: Arc<Submissions>,
    /// Set when work this node does not hold may have become due (a new
    /// event, a decision, another node's signal): the next tick claims.
    fresh_work: std::sync::atomic::AtomicBool,
    /// When this node last claimed.
    last_claim: std::sync::Mutex<Option<OffsetDateTime>>,
    /// Instances this node is driving, as it last committed them: the next
    /// wave starts from here instead of reading them back. The version
    /// check on commit still catches any other writer; a failed commit
    /// evicts the batch.
    hot: std::sync::Mutex<HashMap<WorkflowId, Hot>>,
}

/// An instance as this node last committed it, with its pinned template
/// already parsed.
struct Hot {
    instance: Instance,
    steps: Vec<StepRun>,
    template: Option<Arc<Template>>,
    /// When this node committed it.
    committed_at: OffsetDateTime,
    /// Until when this node's lease on it holds, as last claimed.
    leased_until: OffsetDateTime,
}

/// However busy a node is with the instances it holds, it claims (and so
/// renews its leases and sees new work) at least this often.
const CLAIM_EVERY: time::Duration = time::Duration::milliseconds(100);

/// At most this many instances are kept hot; beyond it they are read back.
const HOT_LIMIT: usize = 10_000;

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("actions", &self.actions)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const SYSTEM: &str = "system";

/// History positions are `version × HISTORY_STRIDE + n`: the commit that
/// writes version v numbers its entries from v × stride + 1, so a wave never
/// reads the history to continue it, and the order is kept.
const HISTORY_STRIDE: i64 = 1_000_000;

fn history(
    instance: &Instance,
    seq: &mut i64,
    at: OffsetDateTime,
    kind: &str,
    step: Option<&str>,
    detail: Value,
) -> HistoryEntry {
    *seq += 1;
    HistoryEntry {
        instance_id: instance.id,
        seq: *seq,
        at,
        kind: kind.to_owned(),
        step_id: step.map(str::to_owned),
        actor: SYSTEM.to_owned(),
        detail,
    }
}

impl Engine {
    /// An engine over `store`, starting instances from `templates` and
    /// running `actions`.
    pub fn new(
        store: Arc<dyn WorkflowStore>,
        templates: Arc<dyn Templates>,
        actions: Arc<ActionRegistry>,
        clock: Arc<dyn Clock>,
        config: EngineConfig,
    ) -> Self {
        let breakers = Arc::new(BreakerRegistry::new(Default::default(), clock.clone()));
        let submissions = Arc::new(Submissions::new(store.clone()));
        Self {
            store,
            templates,
            actions,
            breakers,
            clock,
            config,
            wake: Notify::new(),
            stats: Arc::new(EngineStats::default()),
            finished: broadcast::channel(65_536).0,
            submissions,
            fresh_work: std::sync::atomic::AtomicBool::new(true),
            last_claim: std::sync::Mutex::new(None),
            hot: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn hot(&self) -> std::sync::MutexGuard<'_, HashMap<WorkflowId, Hot>> {
        self.hot.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn keep_hot(
        &self,
        instance: &Instance,
        steps: Vec<StepRun>,
        template: Option<Arc<Template>>,
        committed_at: OffsetDateTime,
        leased_until: OffsetDateTime,
    ) {
        let mut hot = self.hot();
        if hot.len() >= HOT_LIMIT {
            // Entries this node has not run for a lease's length were taken
            // over by another node (or wait far ahead): make room.
            let lease = time::Duration::try_from(self.config.lease).unwrap_or(time::Duration::MAX);
            hot.retain(|_, h| committed_at - h.committed_at < lease);
        }
        let runnable = matches!(
            instance.state,
            InstanceState::Running | InstanceState::Compensating
        );
        if runnable
            && instance.next_run_at.is_some()
            && (hot.len() < HOT_LIMIT || hot.contains_key(&instance.id))
        {
            hot.insert(
                instance.id,
                Hot {
                    instance: instance.clone(),
                    steps,
                    template,
                    committed_at,
                    leased_until,
                },
            );
        } else {
            hot.remove(&instance.id);
        }
    }

    /// Work may be due: wake the worker.
    fn nudge(&self) {
        self.fresh_work
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    /// The instances this node holds that are due at `now` and still leased
    /// to it for at least half a lease, earliest due first, at most `limit`.
    fn hot_due(&self, now: OffsetDateTime, limit: usize) -> Vec<(WorkflowId, i64, OffsetDateTime)> {
        let margin = time::Duration::try_from(self.config.lease / 2).unwrap_or(time::Duration::MAX);
        let mut due: Vec<(OffsetDateTime, WorkflowId, i64, OffsetDateTime)> = self
            .hot()
            .values()
            .filter_map(|h| {
                let at = h.instance.next_run_at.filter(|at| *at <= now)?;
                (h.leased_until - now >= margin).then_some((
                    at,
                    h.instance.id,
                    h.instance.version,
                    h.leased_until,
                ))
            })
            .collect();
        due.sort_unstable_by_key(|(at, id, _, _)| (*at, *id));
        due.into_iter()
            .take(limit)
            .map(|(_, id, version, until)| (id, version, until))
            .collect()
    }

    /// Drops what this node holds about an instance, after something other
    /// than its waves changed it (an approval, a cancellation).
    pub fn forget(&self, id: WorkflowId) {
        self.hot().remove(&id);
    }

    /// Counters and the step-latency histogram.
    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// The circuit breakers of the connectors this node has called.
    pub fn breakers(&self) -> &Arc<BreakerRegistry> {
        &self.breakers
    }

    /// Instances that reach a state where they stop (completed, compensated,
    /// parked, waiting for people), as this node commits them.
    pub fn subscribe(&self) -> broadcast::Receiver<(WorkflowId, InstanceState)> {
        self.finished.subscribe()
    }

    /// Persists an event (deduplicated by source and key) and starts the
    /// instances its triggers name, in one transaction with recording the
    /// outcome. A duplicate delivery gets the first delivery's answer.
    pub async fn submit(&self, new: NewEvent, actor: &str) -> Result<Submitted, EngineError> {
        let now = self.clock.now();
        let event = InboundEvent {
            id: EventId::generate(now),
            tenant_id: new.tenant_id,
            source: new.source,
            kind: new.kind,
            dedup_key: new.dedup_key,
            payload: new.payload,
            received_at: now,
            outcome: None,
        };
        // Route first, then store the event, its outcome and the instances it
        // starts in one transaction: one commit per new event, and a
        // duplicate writes nothing.
        let (started, ids, outcome) = self.route(&event, actor, now);
        let event = InboundEvent {
            outcome: Some(outcome),
            ..event
        };
        let (stored, is_new) = self.submissions.submit(event, started.clone()).await?;
        if is_new {
            self.started(&started);
            return Ok(Submitted {
                event: stored,
                duplicate: false,
                instances: ids,
            });
        }
        if stored.outcome.is_some() {
            return Ok(Self::answer(stored, true));
        }
        // Stored by an older delivery that stopped before routing: route it now.
        let (started, ids, outcome) = self.route(&stored, actor, now);
        match self.store.route_event(stored.id, &outcome, &started).await {
            Ok(()) => {
                self.started(&started);
                let event = InboundEvent {
                    outcome: Some(outcome),
                    ..stored
                };
                Ok(Submitted {
                    event,
                    duplicate: true,
                    instances: ids,
                })
            }
            // Another delivery of the same event routed it first.
            Err(StoreError::Stale(_)) => {
                Ok(Self::answer(self.store.get_event(stored.id).await?, true))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// The instances `event` starts, their ids and the outcome to record.
    fn route(
        &self,
        event: &InboundEvent,
        actor: &str,
        now: OffsetDateTime,
    ) -> (Vec<Progress>, Vec<WorkflowId>, Value) {
        let started = self.start_instances(event, actor, now);
        let ids: Vec<WorkflowId> = started.iter().map(|p| p.instance.id).collect();
        let outcome = json!({ "instances": ids, "routed_at": now.unix_timestamp() });
        (started, ids, outcome)
    }

    /// After new instances are committed: keep them (unleased: the worker
    /// claims them first, and the claim's version check decides whether this
    /// copy is still current) and wake the worker. An instance another node
    /// runs instead is evicted once the hot set is full and it is older than
    /// a lease.
    fn started(&self, started: &[Progress]) {
        for progress in started {
            let at = progress.instance.created_at;
            self.keep_hot(&progress.instance, progress.steps.clone(), None, at, at);
        }
        self.nudge();
    }

    fn answer(event: InboundEvent, duplicate: bool) -> Submitted {
        let instances = event
            .outcome
            .as_ref()
            .and_then(|o| o.get("instances"))
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        Submitted {
            event,
            duplicate,
            instances,
        }
    }

    fn start_instances(
        &self,
        event: &InboundEvent,
        actor: &str,
        now: OffsetDateTime,
    ) -> Vec<Progress> {
        let event_json = json!({
            "id": event.id, "source": event.source, "type": event.kind, "payload": event.payload,
            "tenant_id": event.tenant_id,
        });
        self.templates
            .triggered_by(event.kind.as_str(), &event_json)
            .into_iter()
            .filter_map(|template| {
                let definition = serde_json::to_value(&template).ok()?;
                let id = WorkflowId::generate(now);
                let instance = Instance {
                    id,
                    tenant_id: event.tenant_id,
                    template: template.name.as_str().to_owned(),
                    template_version: template.version,
                    definition,
                    state: InstanceState::Running,
                    context: json!({
                        "event": event_json,
                        "instance": { "id": id, "template": template.name.as_str(), "version": template.version },
                        "tenant": { "id": event.tenant_id },
                        "steps": {},
                    }),
                    started_by: Some(event.id),
                    created_by: actor.to_owned(),
                    created_at: now,
                    updated_at: now,
                    next_run_at: Some(now),
                    version: 1,
                };
                let steps = template.steps().map(|s| StepRun::pending(id, s.id.as_str(), now)).collect();
                let mut seq = HISTORY_STRIDE;
                let started = history(&instance, &mut seq, now, "instance.started", None, json!({
                    "template": template.name.as_str(), "version": template.version, "event": event.id, "actor": actor,
                }));
                Some(Progress::new(instance, steps, vec![started]))
            })
            .collect()
    }

    /// Records a person's decision on an approval. The decision that
    /// settles it (the N-th approval, or any rejection) moves the workflow
    /// in the same transaction: approved, the step runs with the approved
    /// (or modified) parameters; rejected, the instance compensates or is
    /// cancelled, as its template says.
    pub async fn decide(
        &self,
        approval: ApprovalId,
        operator: &Operator,
        verdict: Verdict,
        reason: &str,
        modified_params: Option<Value>,
    ) -> Result<Approval, EngineError> {
        let now = self.clock.now();
        let mut approval = self.store.get_approval(approval).await?;
        approval.may_decide(operator, now)?;
        let decision = Decision::new(
            approval.id,
            operator.id,
            verdict,
            reason,
            modified_params,
            now,
        )?;
        let state = approval.apply(decision.clone());
        let progress = match state {
            ApprovalState::Approved | ApprovalState::Rejected => {
                Some(self.settle(&approval, operator, reason, now).await?)
            }
            ApprovalState::Pending | ApprovalState::Cancelled => None,
        };
        self.store
            .record_decision(&approval, &decision, progress.as_ref())
            .await?;
        self.forget(approval.instance_id);
        self.nudge();
        Ok(approval)
    }

    /// The instance's move after `approval` was settled.
    async fn settle(
        &self,
        approval: &Approval,
        operator: &Operator,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Progress, EngineError> {
        let (mut instance, steps) = self.store.get_instance(approval.instance_id).await?;
        let template: Template =
            serde_json::from_value(instance.definition.clone()).map_err(|e| {
                EngineError::PinnedTemplate {
                    instance: instance.id,
                    reason: e.to_string(),
                }
            })?;
        let mut seq = (instance.version + 1) * HISTORY_STRIDE;
        let mut changed = Vec::new();
        let mut notes = Vec::new();
        let step_id = approval.step_id.as_str();
        let mut run = steps
            .into_iter()
            .find(|s| s.step_id == step_id)
            .ok_or(StoreError::NotFound("step run"))?;
        run.updated_at = now;
        let overridden = approval
            .decisions
            .iter()
            .any(|d| d.verdict == Verdict::Modify);
        if let Some(params) = approval.approved_params() {
            if let Some(context) = instance.context.as_object_mut() {
                let approved = context.entry("approved").or_insert_with(|| json!({}));
                if let Some(approved) = approved.as_object_mut() {
                    approved.insert(step_id.to_owned(), params.clone());
                }
                plans::remember_approved(context, approval);
            }
            run.state = StepState::Pending;
            instance.state = InstanceState::Running;
            notes.push(("approval.approved", json!({ "approval": approval.id, "by": operator.id, "reason": reason, "override": overridden })));
        } else {
            run.state = StepState::Failed;
            run.error = Some(format!("rejected by {}: {reason}", operator.name));
            instance.state = match template.on_failure {
                OnFailure::Compensate => InstanceState::Compensating,
                OnFailure::Park => InstanceState::Cancelled,
            };
            notes.push((
                "approval.rejected",
                json!({ "approval": approval.id, "by": operator.id, "reason": reason }),
            ));
            let kind = if instance.state == InstanceState::Cancelled {
                "instance.cancelled"
            } else {
                "instance.compensating"
            };
            notes.push((kind, json!({ "reason": "the approval was rejected" })));
        }
        changed.push(run);
        instance.next_run_at = (!instance.state.is_final()).then_some(now);
        instance.version += 1;
        instance.updated_at = now;
        let history = notes
            .into_iter()
            .map(|(kind, detail)| {
                let mut entry = history(&instance, &mut seq, now, kind, Some(step_id), detail);
                entry.actor = operator.id.to_string();
                entry
            })
            .collect();
        Ok(Progress::new(instance, changed, history))
    }

    /// Records the outcome of a human task (L3): the person did the work;
    /// the step succeeds with the outcome as its output and the workflow
    /// moves on, in one transaction.
    pub async fn complete_task(
        &self,
        task: HumanTaskId,
        operator: &Operator,
        outcome: Value,
        evidence: Option<&str>,
    ) -> Result<HumanTask, EngineError> {
        let now = self.clock.now();
        let mut task = self.store.get_task(task).await?;
        task.complete(operator, outcome.clone(), evidence, now)?;
        let (mut instance, steps) = self.store.get_instance(task.instance_id).await?;
        let mut run = steps
            .into_iter()
            .find(|s| s.step_id == task.step_id)
            .ok_or(StoreError::NotFound("step run"))?;
        run.state = StepState::Succeeded;
        run.output = Some(outcome.clone());
        run.updated_at = now;
        if let Some(outputs) = instance
            .context
            .get_mut("steps")
            .and_then(Value::as_object_mut)
        {
            outputs.insert(task.step_id.clone(), json!({ "output": outcome }));
        }
        instance.state = InstanceState::Running;
        instance.next_run_at = Some(now);
        let entry = next_version(
            &mut instance,
            now,
            "human_task.completed",
            Some(&task.step_id),
            &operator.id.to_string(),
            json!({ "task": task.id, "by": operator.id, "outcome": outcome, "evidence": evidence }),
        );
        let progress = Progress::new(instance, vec![run], vec![entry]);
        self.store.complete_task(&task, &progress).await?;
        self.forget(task.instance_id);
        self.nudge();
        Ok(task)
    }

    /// Cancels an instance that has not finished: its pending steps are
    /// skipped, its pending approvals and open tasks cancelled, in one
    /// commit. Completed steps are not undone (a rejection compensates; a
    /// cancellation stops). Cancelling a finished instance is refused.
    pub async fn cancel(
        &self,
        id: WorkflowId,
        actor: &str,
        reason: &str,
    ) -> Result<Instance, EngineError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 2000 {
            return Err(gatehouse_core::DomainError::Invalid {
                field: "reason",
                reason: "a cancellation needs a reason of 1 to 2000 characters".into(),
            }
            .into());
        }
        let now = self.clock.now();
        let (mut instance, steps) = self.store.get_instance(id).await?;
        if instance.state.is_final() {
            return Err(gatehouse_core::DomainError::Invalid {
                field: "workflow",
                reason: format!("the workflow is already {}", instance.state),
            }
            .into());
        }
        // A rollback a reviewer asked for must finish: cancelling now would
        // leave its compensation half done and never run again.
        if let Some(undoing) = steps.iter().find(|s| s.state == StepState::Compensating) {
            return Err(gatehouse_core::DomainError::Invalid {
                field: "workflow",
                reason: format!(
                    "step `{}` is being rolled back; cancel the workflow once its compensation has finished",
                    undoing.step_id
                ),
            }
            .into());
        }
        let mut approvals = self
            .store
            .list_approvals(&gatehouse_core::store::ApprovalQuery {
                within: None,
                instance: Some(id),
                state: Some(ApprovalState::Pending),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        approvals.retain_mut(|a| a.cancel(now));
        let mut tasks = self
            .store
            .list_tasks(&gatehouse_core::store::TaskQuery {
                within: None,
                instance: Some(id),
                state: Some(gatehouse_core::approval::TaskState::Open),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        tasks.retain_mut(|t| t.cancel(now));
        let changed: Vec<StepRun> = steps
            .into_iter()
            .filter(|s| {
                matches!(
                    s.state,
                    StepState::Pending
                        | StepState::Retrying
                        | StepState::AwaitingApproval
                        | StepState::AwaitingHuman
                )
            })
            .map(|mut s| {
                s.state = StepState::Skipped;
                s.next_attempt_at = None;
                s.updated_at = now;
                s
            })
            .collect();
        instance.state = InstanceState::Cancelled;
        instance.next_run_at = None;
        let entry = next_version(
            &mut instance,
            now,
            "instance.cancelled",
            None,
            actor,
            json!({ "by": actor, "reason": reason }),
        );
        let progress = Progress {
            approvals,
            tasks,
            ..Progress::new(instance.clone(), changed, vec![entry])
        };
        self.store.commit_progress(&[progress]).await?;
        self.forget(id);
        let _ = self.finished.send((id, InstanceState::Cancelled));
        Ok(instance)
    }

    /// Advances every due instance this node can claim by one wave and
    /// commits them together. Returns how many instances it advanced.
    pub async fn tick(&self) -> Result<usize, EngineError> {
        let now = self.clock.now();
        // A lease too long to represent is as good as a day longer than
        // any wave.
        let lease_until = time::Duration::try_from(self.config.lease)
            .ok()
            .and_then(|lease| now.checked_add(lease))
            .unwrap_or_else(|| now + time::Duration::days(1));
        // A tick claims (a write) when work this node does not hold may be
        // due, when it holds nothing due, and at least every `CLAIM_EVERY`;
        // the claim renews its leases and reports each instance's stored
        // version. Otherwise it runs the instances it holds under a live
        // lease, after one read of their stored versions. Either way an
        // instance that anyone else changed (a cancellation, a decision,
        // another node) is read back before any of its actions runs.
        let batch_size = usize::try_from(self.config.batch).unwrap_or(usize::MAX);
        let held = self.hot_due(now, batch_size);
        let fresh = self
            .fresh_work
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        let claim_due_now = {
            let mut last = self.last_claim.lock().unwrap_or_else(|p| p.into_inner());
            let due = fresh
                || held.is_empty()
                || last.is_none_or(|at| now - at >= CLAIM_EVERY || at > now);
            if due {
                *last = Some(now);
            }
            due
        };
        let due: Vec<(WorkflowId, i64, OffsetDateTime)> = if claim_due_now {
            match self
                .store
                .claim_due(&self.config.node, now, lease_until, self.config.batch)
                .await
            {
                Ok(claimed) => claimed
                    .into_iter()
                    .map(|(id, version)| (id, version, lease_until))
                    .collect(),
                Err(err) => {
                    self.fresh_work
                        .store(true, std::sync::atomic::Ordering::Release);
                    return Err(err.into());
                }
            }
        } else {
            let ids: Vec<WorkflowId> = held.iter().map(|(id, _, _)| *id).collect();
            let stored: HashMap<WorkflowId, i64> = self
                .store
                .runnable_versions(&ids)
                .await?
                .into_iter()
                .collect();
            let mut hot = self.hot();
            held.into_iter()
                .filter(|(id, version, _)| {
                    let current = stored.get(id) == Some(version);
                    if !current {
                        hot.remove(id);
                    }
                    current
                })
                .collect()
        };
        if due.is_empty() {
            return Ok(0);
        }
        let leased: HashMap<WorkflowId, OffsetDateTime> =
            due.iter().map(|(id, _, until)| (*id, *until)).collect();
        let mut waves = tokio::task::JoinSet::new();
        let mut policies = crate::gates::TickPolicies::default();
        for (id, version, _) in due {
            // What this node holds is current only if nobody (another node,
            // a person's decision) committed since.
            let cached = self
                .hot()
                .remove(&id)
                .filter(|h| h.instance.version == version);
            let (instance, steps, template) = match cached {
                Some(hot) => (hot.instance, hot.steps, hot.template),
                None => {
                    let (instance, steps) = self.store.get_instance(id).await?;
                    (instance, steps, None)
                }
            };
            let due_at = instance.next_run_at.unwrap_or(now);
            let policy = policies.of(self.store.as_ref(), instance.tenant_id).await?;
            let wave = match Wave::prepare(instance, steps, template, policy, now) {
                Ok(wave) => wave,
                Err(unreadable) => {
                    // One broken instance must not stop the others: it is
                    // parked, with the reason, in this tick's commit.
                    tracing::error!(instance = %id, reason = %unreadable.reason, "parking an instance whose pinned template is unreadable");
                    let progress = unreadable.park(now);
                    waves.spawn(async move { (progress, 0, due_at, Vec::new(), None) });
                    continue;
                }
            };
            let actions = self.actions.clone();
            let breakers = self.breakers.clone();
            waves.spawn(async move {
                let (progress, calls, all, template) = wave.run(&actions, &breakers).await;
                (progress, calls, due_at, all, Some(template))
            });
        }
        let mut batch = Vec::with_capacity(waves.len());
        let mut timings = Vec::with_capacity(waves.len());
        let mut after = Vec::with_capacity(waves.len());
        let mut keep = Vec::new();
        while let Some(done) = waves.join_next().await {
            match done {
                Ok((progress, calls, due_at, all, template)) => {
                    timings.push((calls, due_at));
                    batch.push(progress);
                    after.push((all, template));
                }
                Err(err) => {
                    tracing::error!(%err, "a wave task failed; its instance is retried on the next tick")
                }
            }
        }
        let count = batch.len();
        let committed = match self.store.commit_progress(&batch).await {
            Ok(()) => vec![true; count],
            // Someone else (a person's decision, a cancellation, a node whose
            // lease had expired) changed an instance of the batch meanwhile.
            // Nothing was written: commit the others one by one, and leave
            // the stale ones to be read back.
            Err(StoreError::Stale(_)) if count > 1 => {
                let mut committed = Vec::with_capacity(count);
                for progress in &batch {
                    let result = self
                        .store
                        .commit_progress(std::slice::from_ref(progress))
                        .await;
                    match result {
                        Ok(()) => committed.push(true),
                        Err(StoreError::Stale(_)) => committed.push(false),
                        Err(err) => {
                            self.hot().clear();
                            return Err(err.into());
                        }
                    }
                }
                committed
            }
            Err(err) => {
                // Nothing of the batch was written: read it all back next time.
                let mut hot = self.hot();
                for progress in &batch {
                    hot.remove(&progress.instance.id);
                }
                return Err(err.into());
            }
        };
        if committed.iter().any(|ok| !ok) {
            batch = batch
                .into_iter()
                .zip(after)
                .zip(&committed)
                .filter_map(|(item, ok)| ok.then_some(item))
                .map(|(progress, all)| {
                    keep.push(all);
                    progress
                })
                .collect();
            after = std::mem::take(&mut keep);
        }
        for (progress, (all, template)) in batch.iter().zip(after) {
            let until = leased.get(&progress.instance.id).copied().unwrap_or(now);
            self.keep_hot(&progress.instance, all, template, now, until);
        }
        let committed = self.clock.now();
        self.stats.record_commit(count as u64);
        let retries = batch
            .iter()
            .flat_map(|p| &p.history)
            .filter(|h| matches!(h.kind.as_str(), "step.retrying" | "compensation.retrying"))
            .count();
        self.stats.record_retries(retries as u64);
        for (calls, due_at) in timings {
            let latency = (committed - due_at).max(time::Duration::ZERO);
            self.stats
                .record_steps(calls as u64, latency.try_into().unwrap_or_default());
        }
        for progress in &batch {
            let state = progress.instance.state;
            if state.is_final() || matches!(state, InstanceState::Parked | InstanceState::Waiting) {
                // Nobody listening is fine.
                let _ = self.finished.send((progress.instance.id, state));
            }
        }
        Ok(count)
    }

    /// Runs until `shutdown` completes: ticks while there is due work,
    /// sleeps until woken (a new event) or the idle poll otherwise.
    ///
    /// Other processes' signals (PostgreSQL `LISTEN`) wake it too. On
    /// shutdown it gives up its leases so other nodes need not wait for
    /// them to expire.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut listener = match self.store.listen_for_work().await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(%err, "cannot listen for other nodes' signals; polling only");
                None
            }
        };
        let mut swept = None;
        loop {
            swept = self.escalate_if_due(swept).await;
            let advanced = match self.tick().await {
                Ok(n) => n,
                Err(err) => {
                    tracing::error!(%err, "engine tick failed; retrying after the idle poll");
                    0
                }
            };
            if advanced > 0 {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.config.idle_poll) => {}
                signal = next_signal(&mut listener) => {
                    self.fresh_work.store(true, std::sync::atomic::Ordering::Release);
                    if let Err(err) = signal {
                        tracing::warn!(%err, "lost the subscription to other nodes' signals; polling only");
                        listener = None;
                    }
                }
            }
        }
        match self.store.release_leases(&self.config.node).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, node = %self.config.node, "released leases"),
            Err(err) => tracing::warn!(%err, "could not release leases; they expire by themselves"),
        }
    }
}

/// The next signal from `listener`; never, without one.
async fn next_signal(
    listener: &mut Option<Box<dyn gatehouse_core::store::WorkListener>>,
) -> Result<(), StoreError> {
    match listener {
        Some(listener) => listener.recv().await,
        None => std::future::pending().await,
    }
}

type SubmitAnswer = Result<(InboundEvent, bool), StoreError>;

/// Group commit of concurrent submissions: the first caller to find no
/// commit under way starts one (on its own task, so a caller that goes away
/// cannot strand the others); everything that queues meanwhile goes into
/// the next commit. One caller alone commits at once.
struct Submissions {
    store: Arc<dyn WorkflowStore>,
    queue: std::sync::Mutex<SubmitQueue>,
}

#[derive(Default)]
struct SubmitQueue {
    pending: Vec<(
        InboundEvent,
        Vec<Progress>,
        tokio::sync::oneshot::Sender<SubmitAnswer>,
    )>,
    flushing: bool,
}

/// At most this many events per submission commit.
const SUBMIT_BATCH: usize = 512;

impl Submissions {
    fn new(store: Arc<dyn WorkflowStore>) -> Self {
        Self {
            store,
            queue: std::sync::Mutex::new(SubmitQueue::default()),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, SubmitQueue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn submit(self: &Arc<Self>, event: InboundEvent, started: Vec<Progress>) -> SubmitAnswer {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lead = {
            let mut queue = self.queue();
            queue.pending.push((event, started, reply));
            !std::mem::replace(&mut queue.flushing, true)
        };
        if lead {
            let this = self.clone();
            tokio::spawn(async move { this.flush().await });
        }
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Backend {
                context: "submitting an event",
                source: "the commit task stopped before answering".into(),
            })
        })
    }

    async fn flush(&self) {
        // Should this task die (a panic in the store), the next submission
        // must start a new commit, and the callers waiting on this one must
        // hear that it failed rather than wait for ever.
        struct Unstick<'a>(&'a Submissions);
        impl Drop for Unstick<'_> {
            fn drop(&mut self) {
                let mut queue = self.0.queue();
                if queue.flushing {
                    queue.flushing = false;
                    // Dropping the reply senders answers each caller with an error.
                    queue.pending.clear();
                }
            }
        }
        let _unstick = Unstick(self);
        loop {
            let batch = {
                let mut queue = self.queue();
                if queue.pending.is_empty() {
                    queue.flushing = false;
                    return;
                }
                let take = queue.pending.len().min(SUBMIT_BATCH);
                queue.pending.drain(..take).collect::<Vec<_>>()
            };
            let (items, replies): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .map(|(event, started, reply)| ((event, started), reply))
                .unzip();
            match self.store.submit_events(&items).await {
                Ok(answers) => {
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                // One bad item must not fail the others: nothing was
                // written, so each is committed on its own.
                Err(_) => {
                    for ((event, started), reply) in items.into_iter().zip(replies) {
                        let _ = reply.send(self.store.submit_event(&event, &started).await);
                    }
                }
            }
        }
    }
}

/// Moves `instance` to its next version at `now` and returns the one
/// history entry that says why, by `actor`: for the changes people (or the
/// escalation sweep) make outside a wave.
fn next_version(
    instance: &mut Instance,
    now: OffsetDateTime,
    kind: &str,
    step: Option<&str>,
    actor: &str,
    detail: Value,
) -> HistoryEntry {
    instance.version += 1;
    instance.updated_at = now;
    let mut seq = instance.version * HISTORY_STRIDE;
    let mut entry = history(instance, &mut seq, now, kind, step, detail);
    entry.actor = actor.to_owned();
    entry
}

/// An instance whose pinned template cannot be read back (corrupt data, or
/// a definition from a newer release): it is parked rather than retried.
struct Unreadable {
    instance: Instance,
    reason: String,
    seq: i64,
}

impl Unreadable {
    fn park(self, now: OffsetDateTime) -> Progress {
        let Self {
            mut instance,
            reason,
            mut seq,
        } = self;
        let entry = history(
            &instance,
            &mut seq,
            now,
            "instance.parked",
            None,
            json!({ "reason": format!("its pinned template is unreadable: {reason}") }),
        );
        instance.state = InstanceState::Parked;
        instance.next_run_at = None;
        instance.version += 1;
        instance.updated_at = now;
        Progress::new(instance, Vec::new(), vec![entry])
    }
}

/// One instance's wave: computed, run and turned into a `Progress`.
struct Wave {
    instance: Instance,
    template: Arc<Template>,
    steps: HashMap<String, StepRun>,
    changed: HashSet<String>,
    history: Vec<HistoryEntry>,
    approvals: Vec<Approval>,
    tasks: Vec<HumanTask>,
    notifications: Vec<Notification>,
    seq: i64,
    now: OffsetDateTime,
    /// The tenant's gate policy, as read at the start of this tick.
    policy: Arc<GatePolicy>,
    /// L2 steps whose approval waits for their plan (prepared, through
    /// the action, when the wave runs).
    to_plan: Vec<(Step, Value)>,
}

/// What came of one call of a wave.
enum Outcome {
    /// The action ran (or could not be called); `checked` when its plan was
    /// re-checked, unchanged, just before.
    Ran {
        result: Result<Value, ActionError>,
        checked: bool,
    },
    /// The approved step did not run: the target changed since its plan was
    /// prepared. This is the fresh plan.
    Changed(Box<Plan>),
}

impl Outcome {
    fn ran(result: Result<Value, ActionError>) -> Self {
        Self::Ran {
            result,
            checked: false,
        }
    }
}

/// What to run in this wave.
struct Call {
    step: Step,
    undo: bool,
    params: Value,
    key: String,
    attempt: u32,
}

impl Wave {
    /// A wave over `instance`, whose pinned template is `template` when
    /// this node parsed it already.
    fn prepare(
        instance: Instance,
        steps: Vec<StepRun>,
        template: Option<Arc<Template>>,
        policy: Arc<GatePolicy>,
        now: OffsetDateTime,
    ) -> Result<Self, Box<Unreadable>> {
        let seq = (instance.version + 1) * HISTORY_STRIDE;
        let template = match template {
            Some(template) => template,
            None => match <Template as serde::Deserialize>::deserialize(&instance.definition) {
                Ok(template) => Arc::new(template),
                Err(err) => {
                    return Err(Box::new(Unreadable {
                        reason: err.to_string(),
                        instance,
                        seq,
                    }));
                }
            },
        };
        let steps = steps.into_iter().map(|s| (s.step_id.clone(), s)).collect();
        Ok(Self {
            instance,
            template,
            steps,
            changed: HashSet::new(),
            approvals: Vec::new(),
            tasks: Vec::new(),
            notifications: Vec::new(),
            history: Vec::new(),
            seq,
            now,
            policy,
            to_plan: Vec::new(),
        })
    }

    fn note(&mut self, kind: &str, step: Option<&str>, detail: Value) {
        let entry = history(&self.instance, &mut self.seq, self.now, kind, step, detail);
        self.history.push(entry);
    }

    fn step_mut(&mut self, id: &str) -> Option<&mut StepRun> {
        self.changed.insert(id.to_owned());
        let now = self.now;
        let run = self.steps.get_mut(id)?;
        run.updated_at = now;
        Some(run)
    }

    fn state_of(&self, id: &str) -> StepState {
        self.steps.get(id).map_or(StepState::Pending, |s| s.state)
    }

    fn due(&self, id: &str) -> bool {
        self.steps
            .get(id)
            .is_some_and(|s| s.next_attempt_at.is_none_or(|at| at <= self.now))
    }

    /// The calls this wave makes, after moving gated steps to waiting.
    fn plan(&mut self) -> Vec<Call> {
        match self.instance.state {
            InstanceState::Running => self.plan_running(),
            InstanceState::Compensating => self.plan_undo().into_iter().collect(),
            _ => Vec::new(),
        }
    }

    fn plan_forward(&mut self) -> Vec<Call> {
        // A step rolled back (or being rolled back) by a reviewer has run.
        let done: HashSet<String> = self
            .steps
            .values()
            .filter(|s| {
                matches!(
                    s.state,
                    StepState::Succeeded
                        | StepState::Skipped
                        | StepState::Compensating
                        | StepState::Compensated
                )
            })
            .map(|s| s.step_id.clone())
            .collect();
        let done_ref: HashSet<&str> = done.iter().map(String::as_str).collect();
        let Some(stage) = self
            .template
            .stages
            .iter()
            .find(|stage| !stage.is_complete(&done_ref))
            .cloned()
        else {
            return Vec::new();
        };
        let mut calls = Vec::new();
        for step in stage.ready_steps(&done_ref) {
            let id = step.id.as_str().to_owned();
            let state = self.state_of(&id);
            if !matches!(state, StepState::Pending | StepState::Retrying) || !self.due(&id) {
                continue;
            }
            if let Some(wait) = &step.wait {
                self.timer(step, wait);
                continue;
            }
            // The tenant's policy as it is now; never below the area's floor.
            let level = step.gate_level(&self.policy).unwrap_or(GateLevel::L3);
            match level {
                // An approved step runs with the parameters the approvers saw
                // (or changed); it is not gated again, even if the tenant's
                // level was lowered since. (Raised to L3 since: a person acts.)
                GateLevel::L0 | GateLevel::L1 | GateLevel::L2
                    if self.approved_params(&id).is_some() =>
                {
                    let params = self.approved_params(&id).cloned().unwrap_or_default();
                    calls.push(self.forward_call(step, params));
                }
                GateLevel::L2 => match step.render_params(&self.instance.context) {
                    // The approval is opened once the plan is prepared.
                    Ok(params) => self.to_plan.push((step.clone(), params)),
                    Err(err) => self.fail_step(&id, &format!("parameters: {err}")),
                },
                GateLevel::L3 => match step.render_params(&self.instance.context) {
                    Ok(params) => self.gate(step, level, params),
                    Err(err) => self.fail_step(&id, &format!("parameters: {err}")),
                },
                GateLevel::L0 | GateLevel::L1 => match step.render_params(&self.instance.context) {
                    Ok(params) => calls.push(self.forward_call(step, params)),
                    Err(err) => self.fail_step(&id, &format!("parameters: {err}")),
                },
            }
        }
        calls
    }

    /// The call that runs `step` forward: its journal's idempotency key and
    /// the next attempt number.
    fn forward_call(&self, step: &Step, params: Value) -> Call {
        let id = step.id.as_str();
        let run = self.steps.get(id);
        Call {
            step: step.clone(),
            undo: false,
            params,
            key: run.map_or_else(
                || format!("{}:{id}", self.instance.id),
                |r| r.idempotency_key.clone(),
            ),
            attempt: run.map_or(1, |r| r.attempts + 1),
        }
    }

    /// The next compensation to run: the last completed step (in template
    /// order, which respects dependencies) that has one.
    fn plan_undo(&mut self) -> Option<Call> {
        let order: Vec<Step> = self.template.steps().cloned().collect();
        for step in order.iter().rev() {
            let id = step.id.as_str();
            let state = self.state_of(id);
            if !matches!(state, StepState::Succeeded | StepState::Compensating) {
                continue;
            }
            let Some(compensation) = &step.compensate else {
                continue;
            };
            if !self.due(id) {
                return None;
            }
            let run = self.steps.get(id);
            let attempt = if state == StepState::Succeeded {
                1
            } else {
                run.map_or(1, |r| r.attempts + 1)
            };
            let key = format!("{}:{id}:undo", self.instance.id);
            return match compensation.render_params(&self.instance.context) {
                Ok(params) => Some(Call {
                    step: step.clone(),
                    undo: true,
                    params,
                    key,
                    attempt,
                }),
                Err(err) => {
                    self.park(&format!(
                        "the compensation of `{id}` cannot be prepared: {err}"
                    ));
                    None
                }
            };
        }
        None
    }

    fn approved_params(&self, step: &str) -> Option<&Value> {
        self.instance.context.get("approved")?.get(step)
    }

    /// Stops a gated step for people: an approval (L2) holding the plan, or
    /// a human task (L3) with decision support. Both are committed with
    /// this wave, so a step never waits without its request existing.
    fn gate(&mut self, step: &Step, level: GateLevel, params: Value) {
        let id = step.id.as_str().to_owned();
        let now = self.now;
        if level == GateLevel::L2 {
            self.open_approval(step, params, None, None);
        } else {
            let support = json!({
                "action": step.action.as_str(),
                "params": params,
                "area": step.area,
                "risk": "human only: the engine never performs this action",
                "blast_radius": { "tenants": usize::from(self.instance.tenant_id.is_some()) },
                "reversibility": if step.compensate.is_some() { "a compensation exists" } else { "no automatic compensation" },
                "history": Value::Null,
            });
            match HumanTask::open(self.instance.id, &id, self.instance.tenant_id, support, now) {
                Ok(task) => {
                    self.note(
                        "human_task.created",
                        Some(&id),
                        json!({ "task": task.id, "gate": level }),
                    );
                    self.tasks.push(task);
                    if let Some(run) = self.step_mut(&id) {
                        run.state = StepState::AwaitingHuman;
                    }
                }
                Err(err) => self.fail_step(&id, &format!("cannot create the human task: {err}")),
            }
        }
    }

    /// Opens the approval of an L2 step: its plan holds the parameters
    /// and, when the action prepared one, the diff against the target's
    /// current state. `supersedes` names the approval it replaces (the
    /// target changed after that one was approved).
    fn open_approval(
        &mut self,
        step: &Step,
        params: Value,
        prepared: Option<&Plan>,
        supersedes: Option<ApprovalId>,
    ) {
        let id = step.id.as_str().to_owned();
        let now = self.now;
        let action = step.action.as_str();
        let plan = match prepared {
            Some(prepared) => plan_with_diff(action, params, prepared.to_diff(), supersedes),
            None => approval_plan(action, params),
        };
        let request = ApprovalRequest {
            instance_id: self.instance.id,
            step_id: id.clone(),
            tenant_id: self.instance.tenant_id,
            plan,
            required: 1,
            approver_role: Role::Lead,
            initiated_by: self.instance.created_by.clone(),
            prepared_by: SYSTEM.to_owned(),
            deadline: Some(now + APPROVAL_DEADLINE),
            escalate_to: Some(Role::Admin),
        };
        match Approval::open(request, now) {
            Ok(approval) => {
                let mut detail = json!({ "approval": approval.id, "gate": GateLevel::L2 });
                if let Some(prepared) = prepared {
                    detail["changes"] = json!(prepared.changes.len());
                    detail["fingerprint"] = json!(prepared.fingerprint);
                }
                if let Some(old) = supersedes {
                    detail["supersedes"] = json!(old);
                }
                self.note("approval.requested", Some(&id), detail);
                self.approvals.push(approval);
                if let Some(run) = self.step_mut(&id) {
                    run.state = StepState::AwaitingApproval;
                    run.next_attempt_at = None;
                }
            }
            Err(err) => self.fail_step(&id, &format!("cannot request approval: {err}")),
        }
    }

    fn fail_step(&mut self, id: &str, reason: &str) {
        if let Some(run) = self.step_mut(id) {
            run.state = StepState::Failed;
            run.error = Some(reason.to_owned());
            run.next_attempt_at = None;
        }
        let action = self.template.step(id).map(|s| s.action.as_str().to_owned());
        self.note(
            "step.failed",
            Some(id),
            json!({ "error": reason, "action": action }),
        );
        match self.template.on_failure {
            OnFailure::Park => self.park(&format!("step `{id}` failed: {reason}")),
            OnFailure::Compensate => {
                self.instance.state = InstanceState::Compensating;
                self.note(
                    "instance.compensating",
                    Some(id),
                    json!({ "reason": reason }),
                );
            }
        }
    }

    fn park(&mut self, reason: &str) {
        self.instance.state = InstanceState::Parked;
        self.note("instance.parked", None, json!({ "reason": reason }));
    }

    /// Runs the wave; returns its progress and how many actions it ran.
    async fn run(
        mut self,
        actions: &ActionRegistry,
        breakers: &BreakerRegistry,
    ) -> (Progress, usize, Vec<StepRun>, Arc<Template>) {
        let calls = self.plan();
        self.prepare_plans(actions).await;
        // The steps whose (forward) action creates the workflow's tenant.
        let creates_tenant: HashSet<usize> = calls
            .iter()
            .enumerate()
            .filter(|(_, call)| {
                actions
                    .get(call.step.action.as_str())
                    .is_some_and(|a| a.creates_workflow_tenant())
            })
            .map(|(index, _)| index)
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for (index, call) in calls.iter().enumerate() {
            let action_name = if call.undo {
                call.step
                    .compensate
                    .as_ref()
                    .map(|c| c.action.as_str().to_owned())
                    .unwrap_or_default()
            } else {
                call.step.action.as_str().to_owned()
            };
            let Some(action) = actions.get(&action_name).cloned() else {
                set.spawn(async move {
                    (
                        index,
                        Outcome::ran(Err(ActionError::permanent(format!(
                            "no action `{action_name}` is implemented"
                        )))),
                    )
                });
                continue;
            };
            let breaker_key = format!(
                "{}/{}",
                self.instance
                    .tenant_id
                    .map_or_else(|| "-".to_owned(), |t| t.to_string()),
                action_name.split('.').next().unwrap_or_default()
            );
            let breaker = breakers.get(&breaker_key);
            let (instance, tenant) = (self.instance.id, self.instance.tenant_id);
            let (step_id, key, params, attempt, timeout) = (
                call.step.id.as_str().to_owned(),
                call.key.clone(),
                call.params.clone(),
                call.attempt,
                call.step.timeout,
            );
            // An approved step whose plan had a diff is checked against the
            // target once more before it runs.
            let recheck = if call.undo {
                None
            } else {
                self.recheck_of(call.step.id.as_str())
            };
            set.spawn(async move {
                let permit = match breaker.try_acquire() {
                    Ok(permit) => permit,
                    Err(rejected) => {
                        return (
                            index,
                            Outcome::ran(Err(ActionError::Retryable {
                                message: format!("circuit open for `{breaker_key}`"),
                                retry_after: Some(rejected.retry_in),
                            })),
                        );
                    }
                };
                let call = ActionCall {
                    instance,
                    tenant,
                    step_id: &step_id,
                    idempotency_key: &key,
                    params: &params,
                    attempt,
                };
                let checked = recheck.is_some();
                if let Some(approved) = recheck {
                    match plans::recheck(action.as_ref(), call.clone(), timeout, &approved).await {
                        Ok(None) => {}
                        Ok(Some(changed)) => {
                            permit.success();
                            return (index, Outcome::Changed(Box::new(changed)));
                        }
                        Err(err) => {
                            if matches!(err, ActionError::Retryable { .. }) {
                                permit.failure();
                            } else {
                                permit.success();
                            }
                            return (index, Outcome::ran(Err(err)));
                        }
                    }
                }
                let result = match tokio::time::timeout(timeout, action.run(call)).await {
                    Ok(result) => result,
                    Err(_) => Err(ActionError::retryable(format!(
                        "timed out after {timeout:?}"
                    ))),
                };
                match &result {
                    Ok(_) => permit.success(),
                    Err(ActionError::Retryable { .. }) => permit.failure(),
                    // The target answered: it is up, the request was wrong.
                    Err(ActionError::Permanent { .. }) => permit.success(),
                }
                (index, Outcome::Ran { result, checked })
            });
        }
        let mut results = Vec::with_capacity(calls.len());
        while let Some(joined) = set.join_next().await {
            if let Ok(result) = joined {
                results.push(result);
            }
        }
        results.sort_by_key(|(index, _)| *index);
        for (index, outcome) in results {
            if let Some(call) = calls.get(index) {
                match outcome {
                    Outcome::Ran { result, checked } => {
                        if checked && result.is_err() {
                            // The re-check passed and the action ran: a
                            // retry must not take its own partial change
                            // for someone else's.
                            self.mark_rechecked(call.step.id.as_str());
                        }
                        let tenant_change = match &result {
                            Ok(output) if creates_tenant.contains(&index) => Some(output.clone()),
                            _ => None,
                        };
                        self.record(call, result);
                        if let Some(output) = tenant_change {
                            self.move_tenant(call, &output);
                        }
                    }
                    Outcome::Changed(changed) => self.plan_changed(call, *changed),
                }
            }
        }
        let template = self.template.clone();
        let (progress, all) = self.finish();
        (progress, calls.len(), all, template)
    }

    /// After a step that created the workflow's tenant: the workflow
    /// belongs to the tenant (the step ran) or to the installation again
    /// (its undo ran and the tenant is gone). A workflow that belonged to a
    /// tenant before the step keeps it.
    fn move_tenant(&mut self, call: &Call, output: &Value) {
        let id = call.step.id.as_str();
        if call.undo {
            let created = self
                .steps
                .get(id)
                .and_then(|run| run.output.as_ref())
                .and_then(|out| out.get("id"))
                .and_then(Value::as_str)
                .and_then(|text| text.parse::<TenantId>().ok());
            if created.is_some() && self.instance.tenant_id == created {
                self.instance.tenant_id = None;
                self.note(
                    "instance.tenant_released",
                    Some(id),
                    json!({ "tenant": created }),
                );
            }
            return;
        }
        if self.instance.tenant_id.is_some() {
            return;
        }
        match output
            .get("id")
            .and_then(Value::as_str)
            .map(str::parse::<TenantId>)
        {
            Some(Ok(tenant)) => {
                self.instance.tenant_id = Some(tenant);
                self.note(
                    "instance.tenant_adopted",
                    Some(id),
                    json!({ "tenant": tenant }),
                );
            }
            _ => self.note(
                "instance.tenant_not_adopted",
                Some(id),
                json!({ "reason": "the step's output has no tenant `id`" }),
            ),
        }
    }

    fn record(&mut self, call: &Call, result: Result<Value, ActionError>) {
        let id = call.step.id.as_str().to_owned();
        let now = self.now;
        match (call.undo, result) {
            (false, Ok(output)) => {
                if let Some(run) = self.step_mut(&id) {
                    run.state = StepState::Succeeded;
                    run.attempts = call.attempt;
                    run.output = Some(output.clone());
                    run.error = None;
                    run.next_attempt_at = None;
                }
                if let Some(steps) = self
                    .instance
                    .context
                    .get_mut("steps")
                    .and_then(Value::as_object_mut)
                {
                    steps.insert(id.clone(), json!({ "output": output }));
                }
                let level = call.step.gate_level(&self.policy).unwrap_or(GateLevel::L0);
                self.note(
                    "step.succeeded",
                    Some(&id),
                    json!({ "attempt": call.attempt, "gate": level, "action": call.step.action.as_str() }),
                );
                if level == GateLevel::L1 {
                    // The review request is queued in this wave's commit.
                    let (notification, note) =
                        review_request(&self.instance, &call.step, &call.params, now);
                    self.note("notification.queued", Some(&id), note);
                    self.notifications.push(notification);
                }
            }
            (true, Ok(_)) => {
                if let Some(run) = self.step_mut(&id) {
                    run.state = StepState::Compensated;
                    run.error = None;
                    run.next_attempt_at = None;
                }
                self.note(
                    "step.compensated",
                    Some(&id),
                    json!({ "attempt": call.attempt }),
                );
            }
            (undo, Err(err)) => {
                let (message, retry_after, retryable) = match &err {
                    ActionError::Retryable {
                        message,
                        retry_after,
                    } => (message.clone(), *retry_after, true),
                    ActionError::Permanent { message } => (message.clone(), None, false),
                };
                let delay = if retryable {
                    call.step
                        .retry
                        .delay(call.attempt, retry_after, random_unit())
                } else {
                    None
                };
                match delay {
                    Some(delay) => {
                        let at =
                            now + time::Duration::try_from(delay).unwrap_or(time::Duration::MAX);
                        if let Some(run) = self.step_mut(&id) {
                            run.state = if undo {
                                StepState::Compensating
                            } else {
                                StepState::Retrying
                            };
                            run.attempts = call.attempt;
                            run.error = Some(message.clone());
                            run.next_attempt_at = Some(at);
                        }
                        let kind = if undo {
                            "compensation.retrying"
                        } else {
                            "step.retrying"
                        };
                        self.note(kind, Some(&id), json!({ "attempt": call.attempt, "error": message, "retry_at": at.unix_timestamp(), "action": call.step.action.as_str() }));
                    }
                    None if undo => {
                        if let Some(run) = self.step_mut(&id) {
                            run.state = StepState::Compensating;
                            run.attempts = call.attempt;
                            run.error = Some(message.clone());
                            run.next_attempt_at = None;
                        }
                        self.note(
                            "compensation.failed",
                            Some(&id),
                            json!({ "attempt": call.attempt, "error": message }),
                        );
                        self.park(&format!("the compensation of `{id}` failed: {message}"));
                    }
                    None => {
                        if let Some(run) = self.step_mut(&id) {
                            run.attempts = call.attempt;
                        }
                        self.fail_step(&id, &message);
                    }
                }
            }
        }
    }

    /// Decides the instance's next state and due time, and packs the wave.
    /// Decides the instance's next state; returns the progress to commit
    /// and every step run as it stands after it (for the hot set).
    fn finish(mut self) -> (Progress, Vec<StepRun>) {
        let now = self.now;
        let all_done = self.steps.values().all(|s| {
            matches!(
                s.state,
                StepState::Succeeded | StepState::Skipped | StepState::Compensated
            )
        });
        let next_retry = self
            .steps
            .values()
            .filter(|s| matches!(s.state, StepState::Retrying | StepState::Compensating))
            .filter_map(|s| s.next_attempt_at)
            .min();
        match self.instance.state {
            InstanceState::Running if all_done => {
                self.instance.state = InstanceState::Completed;
                self.note("instance.completed", None, json!({}));
                self.instance.next_run_at = None;
            }
            InstanceState::Running => {
                // Anything runnable now (newly unblocked or due)? Then at once.
                let runnable_now = self.steps.values().any(|s| s.state == StepState::Pending)
                    && !self.changed.is_empty();
                let waiting = self.steps.values().any(|s| {
                    matches!(
                        s.state,
                        StepState::AwaitingApproval | StepState::AwaitingHuman
                    )
                });
                self.instance.next_run_at = if runnable_now { Some(now) } else { next_retry };
                if self.instance.next_run_at.is_none() && waiting {
                    self.instance.state = InstanceState::Waiting;
                    self.note("instance.waiting", None, json!({}));
                }
            }
            InstanceState::Compensating => {
                let remaining = self.template.steps().any(|step| {
                    step.compensate.is_some()
                        && matches!(
                            self.state_of(step.id.as_str()),
                            StepState::Succeeded | StepState::Compensating
                        )
                });
                if remaining {
                    self.instance.next_run_at = Some(next_retry.unwrap_or(now));
                } else {
                    let pending: Vec<String> = self
                        .steps
                        .values()
                        .filter(|s| {
                            matches!(
                                s.state,
                                StepState::Pending
                                    | StepState::Retrying
                                    | StepState::AwaitingApproval
                                    | StepState::AwaitingHuman
                            )
                        })
                        .map(|s| s.step_id.clone())
                        .collect();
                    for id in pending {
                        if let Some(run) = self.step_mut(&id) {
                            run.state = StepState::Skipped;
                            run.next_attempt_at = None;
                        }
                    }
                    self.instance.state = InstanceState::Compensated;
                    self.instance.next_run_at = None;
                    self.note("instance.compensated", None, json!({}));
                }
            }
            _ => self.instance.next_run_at = None,
        }
        self.instance.version += 1;
        self.instance.updated_at = now;
        let steps = self
            .changed
            .iter()
            .filter_map(|id| self.steps.get(id).cloned())
            .collect();
        let all = self.steps.into_values().collect();
        let progress = Progress {
            instance: self.instance,
            steps,
            history: self.history,
            approvals: self.approvals,
            tasks: self.tasks,
            notifications: self.notifications,
        };
        (progress, all)
    }
}
