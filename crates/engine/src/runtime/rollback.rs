//! A reviewer's rollback of one completed step (gate L1: "executes, then
//! notifies the assigned human, who can roll it back where a compensation
//! exists").
//!
//! The request is journaled like everything else: the step becomes
//! `compensating`, due now, with a `step.rollback_requested` entry naming
//! who asked and why; the instance is made due (a waiting or completed one
//! runs again for this). The next wave runs the step's compensation with
//! its own idempotency key, `{instance}:{step}:undo`, retried like any
//! compensation, and ends with the step `compensated`. Nothing else of the
//! instance is touched: a running instance goes on with its other steps, a
//! completed one completes again, a waiting one waits again. A rolled-back
//! step counts as done for the steps after it (they have run or may run
//! with what it produced); a compensation that fails for good parks the
//! instance for a human.

use gatehouse_core::DomainError;
use gatehouse_core::id::WorkflowId;
use gatehouse_core::workflow::{Instance, InstanceState, Progress, StepRun, StepState};
use serde_json::json;

use super::{Call, Engine, EngineError, Wave, next_version};
use crate::template::Template;

fn refused(reason: String) -> EngineError {
    DomainError::Invalid {
        field: "step",
        reason,
    }
    .into()
}

impl Engine {
    /// Asks for the compensation of step `step` of instance `id`, which must
    /// have succeeded and have a `compensate` in its template; `actor` (an
    /// operator id or `system`) and `reason` are recorded. Refused for a
    /// step without a compensation or not succeeded, and for an instance
    /// that is cancelled, parked or compensating already. Returns the
    /// instance and the step as committed.
    pub async fn rollback_step(
        &self,
        id: WorkflowId,
        step: &str,
        actor: &str,
        reason: &str,
    ) -> Result<(Instance, StepRun), EngineError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 2000 {
            return Err(DomainError::Invalid {
                field: "reason",
                reason: "a rollback needs a reason of 1 to 2000 characters".into(),
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
        let Some(definition) = template.step(step) else {
            return Err(refused(format!("workflow {id} has no step `{step}`")));
        };
        match instance.state {
            InstanceState::Running | InstanceState::Waiting | InstanceState::Completed => {}
            InstanceState::Parked => {
                return Err(refused(format!(
                    "workflow {id} is parked: resolve what stopped it before rolling a step back"
                )));
            }
            InstanceState::Compensating | InstanceState::Compensated => {
                return Err(refused(format!(
                    "workflow {id} is {}: its completed steps are being undone already",
                    instance.state
                )));
            }
            InstanceState::Cancelled => {
                return Err(refused(format!(
                    "workflow {id} is cancelled: nothing of it runs any more"
                )));
            }
        }
        if definition.compensate.is_none() {
            return Err(refused(format!(
                "step `{step}` has no compensation in its template, so it cannot be rolled back automatically"
            )));
        }
        let Some(mut run) = steps.into_iter().find(|s| s.step_id == step) else {
            return Err(refused(format!(
                "workflow {id} has no journal entry for step `{step}`"
            )));
        };
        if run.state != StepState::Succeeded {
            return Err(refused(format!(
                "step `{step}` is {}, not succeeded: only a completed step can be rolled back",
                run.state.as_str()
            )));
        }
        run.state = StepState::Compensating;
        run.attempts = 0;
        run.error = None;
        run.next_attempt_at = Some(now);
        run.updated_at = now;
        let was = instance.state;
        instance.state = InstanceState::Running;
        instance.next_run_at = Some(now);
        let entry = next_version(
            &mut instance,
            now,
            "step.rollback_requested",
            Some(step),
            actor,
            json!({ "by": actor, "reason": reason, "instance_was": was }),
        );
        let progress = Progress::new(instance.clone(), vec![run.clone()], vec![entry]);
        self.store.commit_progress(&[progress]).await?;
        self.forget(id);
        self.nudge();
        Ok((instance, run))
    }
}

impl Wave {
    /// A running instance's calls: the rollbacks asked for, then the steps
    /// that can go forward (unless preparing a rollback parked it).
    pub(super) fn plan_running(&mut self) -> Vec<Call> {
        let mut calls = self.plan_rollbacks();
        if self.instance.state == InstanceState::Running {
            calls.extend(self.plan_forward());
        }
        calls
    }

    /// The compensations that rollbacks asked for in a running instance:
    /// every step journaled `compensating` and due. (In a compensating
    /// instance `plan_undo` runs them, one at a time, in reverse order.)
    pub(super) fn plan_rollbacks(&mut self) -> Vec<Call> {
        let mut calls = Vec::new();
        let steps: Vec<_> = self.template.steps().cloned().collect();
        for step in steps {
            let id = step.id.as_str();
            if self.state_of(id) != StepState::Compensating || !self.due(id) {
                continue;
            }
            let Some(compensation) = &step.compensate else {
                continue;
            };
            let attempt = self.steps.get(id).map_or(1, |r| r.attempts + 1);
            let key = format!("{}:{id}:undo", self.instance.id);
            match compensation.render_params(&self.instance.context) {
                Ok(params) => calls.push(Call {
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
                    return Vec::new();
                }
            }
        }
        calls
    }
}
