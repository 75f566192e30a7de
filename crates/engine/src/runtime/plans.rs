//! Plans as diffs (gate L2): prepared when the approval opens, re-checked
//! just before the approved step runs.
//!
//! When an L2 step reaches its gate, the wave asks the action for its plan
//! ([`crate::action::Action::plan`]): the changes it would make, as a diff
//! against the target's state read through the connector, and a fingerprint
//! of that state. The approval holds it (`plan.diff`). Once approved, the
//! instance's context remembers the fingerprint the people saw
//! (`approved_plans.<step>`). The wave that runs the step prepares the plan
//! again, with the approved (possibly modified) parameters and the same
//! idempotency key, and compares:
//!
//! - same fingerprint: the action runs;
//! - another one: the action does **not** run. The history gets
//!   `plan.changed` (the two fingerprints and the fields of the observed
//!   state that differ), the approval is superseded, and a new approval
//!   with the fresh plan is opened in the same commit;
//! - the plan cannot be prepared: an attempt that failed, retried by the
//!   step's retry policy (or failing the step when permanent).
//!
//! Once a re-check has passed and the action has run, later attempts (after
//! a retryable failure) are not re-checked: the state they would read may
//! hold the action's own partial change. A crash between the re-check and
//! the commit of the run's result loses the mark; the next wave re-checks,
//! and if the action had already changed the target, people are asked again
//! rather than anything being applied blindly. Either way the action runs
//! with the same idempotency key, so nothing is done twice.

use std::time::Duration;

use gatehouse_core::approval::Approval;
use gatehouse_core::id::ApprovalId;
use serde_json::{Map, Value, json};

use super::{Call, Wave};
use crate::action::{Action, ActionCall, ActionError, ActionRegistry, Plan};

/// Where the approved plans' fingerprints are kept in an instance's context.
const APPROVED_PLANS: &str = "approved_plans";

/// Records, in an instance's `context`, the fingerprint of the plan that
/// `approval` (approved) showed; forgets an older one when it had no diff.
pub(super) fn remember_approved(context: &mut Map<String, Value>, approval: &Approval) {
    let step = approval.step_id.clone();
    let entry = approval.plan_fingerprint().map(|fingerprint| {
        json!({
            "approval": approval.id,
            "fingerprint": fingerprint,
            "observed": approval.plan.pointer("/diff/observed").cloned().unwrap_or(Value::Null),
            "rechecked": false,
        })
    });
    let plans = context.entry(APPROVED_PLANS).or_insert_with(|| json!({}));
    if let Some(plans) = plans.as_object_mut() {
        match entry {
            Some(entry) => {
                plans.insert(step, entry);
            }
            None => {
                plans.remove(&step);
            }
        }
    }
}

/// Prepares `action`'s plan again and compares it with the fingerprint the
/// approvers saw: `Ok(None)` when the step may run (same fingerprint, or
/// the action shows no plan now), `Ok(Some(fresh))` when the target changed.
pub(super) async fn recheck(
    action: &dyn Action,
    call: ActionCall<'_>,
    timeout: Duration,
    approved: &str,
) -> Result<Option<Plan>, ActionError> {
    let fresh = match tokio::time::timeout(timeout, action.plan(call)).await {
        Ok(result) => result.map_err(|err| preparing(&err))?,
        Err(_) => {
            return Err(ActionError::retryable(format!(
                "re-checking the plan timed out after {timeout:?}"
            )));
        }
    };
    Ok(fresh.filter(|plan| plan.fingerprint != approved))
}

/// `err`, said to have happened while preparing a plan.
fn preparing(err: &ActionError) -> ActionError {
    match err {
        ActionError::Retryable {
            message,
            retry_after,
        } => ActionError::Retryable {
            message: format!("preparing the plan: {message}"),
            retry_after: *retry_after,
        },
        ActionError::Permanent { message } => {
            ActionError::permanent(format!("preparing the plan: {message}"))
        }
    }
}

/// The paths at which `before` and `after` differ, each with both values
/// (objects are compared key by key; anything else as a whole).
pub(crate) fn observed_changes(before: &Value, after: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    walk("", before, after, &mut out);
    out
}

fn walk(path: &str, before: &Value, after: &Value, out: &mut Vec<Value>) {
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(
                    &sub,
                    b.get(key).unwrap_or(&Value::Null),
                    a.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if before != after => out.push(json!({
            "path": if path.is_empty() { "." } else { path },
            "before": before,
            "after": after,
        })),
        _ => {}
    }
}

impl Wave {
    /// The fingerprint `step` was approved with, when it must be re-checked
    /// before running (its approved plan had a diff and no attempt has run
    /// since the re-check passed).
    pub(super) fn recheck_of(&self, step: &str) -> Option<String> {
        let entry = self.instance.context.get(APPROVED_PLANS)?.get(step)?;
        if entry.get("rechecked").and_then(Value::as_bool) == Some(true) {
            return None;
        }
        entry
            .get("fingerprint")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// Notes that `step`'s re-check passed and the action ran.
    pub(super) fn mark_rechecked(&mut self, step: &str) {
        if let Some(entry) = self
            .instance
            .context
            .get_mut(APPROVED_PLANS)
            .and_then(|plans| plans.get_mut(step))
            .and_then(Value::as_object_mut)
        {
            entry.insert("rechecked".to_owned(), Value::Bool(true));
        }
    }

    /// Prepares the plans of the L2 steps this wave gates (concurrently,
    /// each within its step's timeout) and opens their approvals. A plan
    /// that cannot be prepared counts as a failed attempt of the step.
    pub(super) async fn prepare_plans(&mut self, actions: &ActionRegistry) {
        let pending = std::mem::take(&mut self.to_plan);
        if pending.is_empty() {
            return;
        }
        let mut set = tokio::task::JoinSet::new();
        for (index, (step, params)) in pending.iter().enumerate() {
            let Some(action) = actions.get(step.action.as_str()).cloned() else {
                // Nothing to plan with; running it will say so.
                set.spawn(async move { (index, Ok(None)) });
                continue;
            };
            let call = self.forward_call(step, params.clone());
            let (instance, tenant) = (self.instance.id, self.instance.tenant_id);
            let timeout = step.timeout;
            set.spawn(async move {
                let action_call = ActionCall {
                    instance,
                    tenant,
                    step_id: call.step.id.as_str(),
                    idempotency_key: &call.key,
                    params: &call.params,
                    attempt: call.attempt,
                };
                let result = match tokio::time::timeout(timeout, action.plan(action_call)).await {
                    Ok(result) => result.map_err(|err| preparing(&err)),
                    Err(_) => Err(ActionError::retryable(format!(
                        "preparing the plan timed out after {timeout:?}"
                    ))),
                };
                (index, result)
            });
        }
        let mut results = Vec::with_capacity(pending.len());
        while let Some(joined) = set.join_next().await {
            if let Ok(result) = joined {
                results.push(result);
            }
        }
        results.sort_by_key(|(index, _)| *index);
        for (index, result) in results {
            let Some((step, params)) = pending.get(index) else {
                continue;
            };
            match result {
                Ok(plan) => self.open_approval(step, params.clone(), plan.as_ref(), None),
                Err(err) => {
                    let call = self.forward_call(step, params.clone());
                    self.record(&call, Err(err));
                }
            }
        }
    }

    /// The target changed after `call`'s step was approved: the step does
    /// not run; the change is recorded and people are asked again with the
    /// fresh plan (and the parameters they approved).
    pub(super) fn plan_changed(&mut self, call: &Call, fresh: Plan) {
        let id = call.step.id.as_str().to_owned();
        let old = self
            .instance
            .context
            .get_mut(APPROVED_PLANS)
            .and_then(Value::as_object_mut)
            .and_then(|plans| plans.remove(&id))
            .unwrap_or(Value::Null);
        if let Some(approved) = self
            .instance
            .context
            .get_mut("approved")
            .and_then(Value::as_object_mut)
        {
            approved.remove(&id);
        }
        let superseded: Option<ApprovalId> = old
            .get("approval")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok());
        let changed =
            observed_changes(old.get("observed").unwrap_or(&Value::Null), &fresh.observed);
        self.note(
            "plan.changed",
            Some(&id),
            json!({
                "approval": superseded,
                "approved_fingerprint": old.get("fingerprint"),
                "fingerprint": fresh.fingerprint,
                "changed": changed,
                "changes": fresh.changes,
            }),
        );
        if let Some(superseded) = superseded {
            self.note(
                "approval.superseded",
                Some(&id),
                json!({ "approval": superseded, "reason": "the target changed after it was approved" }),
            );
        }
        self.open_approval(&call.step, call.params.clone(), Some(&fresh), superseded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observed_changes_name_each_differing_path() {
        let before = json!({"status": "Prospect", "contract": null, "nested": {"a": 1, "b": 2}});
        let after = json!({"status": "Active", "contract": null, "nested": {"a": 1, "c": 3}});
        let changes = observed_changes(&before, &after);
        assert_eq!(
            changes,
            vec![
                json!({"path": "nested.b", "before": 2, "after": null}),
                json!({"path": "nested.c", "before": null, "after": 3}),
                json!({"path": "status", "before": "Prospect", "after": "Active"}),
            ]
        );
        assert!(observed_changes(&before, &before).is_empty());
        assert_eq!(
            observed_changes(&json!(1), &json!(2)),
            vec![json!({"path": ".", "before": 1, "after": 2})]
        );
    }
}
