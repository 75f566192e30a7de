//! A person's "undo this workflow": the compensation of every completed
//! step, asked for after the instance stopped.
//!
//! A template with `on_failure = "park"` (the client onboarding) undoes
//! nothing by itself: a step that fails for good parks the instance, and a
//! rejected approval cancels it. Whoever then decides that what was done
//! must go (the deal fell through, the plan was wrong) asks for the
//! instance's compensation. The request is one commit: open approvals and
//! tasks are cancelled, steps that had not run are skipped, the instance
//! becomes `compensating`, due now, with an `instance.compensating` entry
//! naming who asked and why. From there the waves do what a template with
//! `on_failure = "compensate"` does after a failure: each completed step's
//! compensation, one at a time in reverse template order, with its own
//! idempotency key (`{instance}:{step}:undo`), retried per the step's
//! policy; the instance ends `compensated`, or parked if a compensation
//! fails for good.
//!
//! Allowed for a running, waiting, parked or cancelled instance that has
//! something to undo; refused for a completed one (undoing a finished
//! onboarding is an offboarding, a workflow of its own) and for one that
//! is compensating or compensated already.

use gatehouse_core::DomainError;
use gatehouse_core::approval::{ApprovalState, TaskState};
use gatehouse_core::id::WorkflowId;
use gatehouse_core::store::{ApprovalQuery, TaskQuery};
use gatehouse_core::workflow::{Instance, InstanceState, Progress, StepState};
use serde_json::json;

use super::{Engine, EngineError, next_version};
use crate::template::Template;

fn refused(reason: String) -> EngineError {
    DomainError::Invalid {
        field: "workflow",
        reason,
    }
    .into()
}

impl Engine {
    /// Asks for the compensation of every completed step of instance `id`
    /// (see the module's notes); `actor` (an operator id or `system`) and
    /// `reason` are recorded. Returns the instance as committed.
    pub async fn compensate(
        &self,
        id: WorkflowId,
        actor: &str,
        reason: &str,
    ) -> Result<Instance, EngineError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 2000 {
            return Err(DomainError::Invalid {
                field: "reason",
                reason: "a compensation needs a reason of 1 to 2000 characters".into(),
            }
            .into());
        }
        let now = self.clock.now();
        let (mut instance, steps) = self.store.get_instance(id).await?;
        let template: Template =
            serde_json::from_value(instance.definition.clone()).map_err(|e| {
                EngineError::PinnedTemplate {
                    instance: id,
                    reason: e.to_string(),
                }
            })?;
        match instance.state {
            InstanceState::Running
            | InstanceState::Waiting
            | InstanceState::Parked
            | InstanceState::Cancelled => {}
            InstanceState::Completed => {
                return Err(refused(format!(
                    "workflow {id} is completed: undo its effects with a workflow of their own (an offboarding), not by compensating it"
                )));
            }
            InstanceState::Compensating | InstanceState::Compensated => {
                return Err(refused(format!(
                    "workflow {id} is {}: its completed steps are being undone already",
                    instance.state
                )));
            }
        }
        let undoable = steps.iter().any(|run| {
            matches!(run.state, StepState::Succeeded | StepState::Compensating)
                && template
                    .step(&run.step_id)
                    .is_some_and(|s| s.compensate.is_some())
        });
        if !undoable {
            return Err(refused(format!(
                "workflow {id} has no completed step with a compensation: there is nothing to undo"
            )));
        }
        let mut approvals = self
            .store
            .list_approvals(&ApprovalQuery {
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
            .list_tasks(&TaskQuery {
                within: None,
                instance: Some(id),
                state: Some(TaskState::Open),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        tasks.retain_mut(|t| t.cancel(now));
        let changed = steps
            .into_iter()
            .filter_map(|mut run| match run.state {
                StepState::Pending
                | StepState::Retrying
                | StepState::AwaitingApproval
                | StepState::AwaitingHuman => {
                    run.state = StepState::Skipped;
                    run.next_attempt_at = None;
                    run.updated_at = now;
                    Some(run)
                }
                // A rollback in flight is finished by the compensation.
                StepState::Compensating => {
                    run.next_attempt_at = Some(now);
                    run.updated_at = now;
                    Some(run)
                }
                _ => None,
            })
            .collect();
        let was = instance.state;
        instance.state = InstanceState::Compensating;
        instance.next_run_at = Some(now);
        let entry = next_version(
            &mut instance,
            now,
            "instance.compensating",
            None,
            actor,
            json!({ "by": actor, "reason": reason, "instance_was": was, "requested": true }),
        );
        let progress = Progress {
            approvals,
            tasks,
            ..Progress::new(instance.clone(), changed, vec![entry])
        };
        self.store.commit_progress(&[progress]).await?;
        self.forget(id);
        self.nudge();
        Ok(instance)
    }
}
