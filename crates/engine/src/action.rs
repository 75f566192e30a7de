//! Actions: what a step does, implemented in Rust and named by templates.
//!
//! An action receives the step's rendered parameters and its idempotency
//! key, and must make a repeated call with the same key harmless (forward
//! the key to the target, or find what an earlier attempt created). It
//! answers with a JSON output, which later steps can refer to as
//! `steps.<id>.output`, or with an error that says whether retrying can help.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::id::{TenantId, WorkflowId};
use serde_json::Value;

/// One call of an action.
#[derive(Debug, Clone)]
pub struct ActionCall<'a> {
    /// The instance.
    pub instance: WorkflowId,
    /// The tenant, once known.
    pub tenant: Option<TenantId>,
    /// The step.
    pub step_id: &'a str,
    /// Stable across attempts: forward it to the target.
    pub idempotency_key: &'a str,
    /// The step's parameters, rendered from the instance's context.
    pub params: &'a Value,
    /// This attempt's number, from 1.
    pub attempt: u32,
}

/// Why an action failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionError {
    /// A failure that may pass (timeout, 5xx, 429): retry per the policy,
    /// waiting at least `retry_after` when the target said so.
    #[error("{message}")]
    Retryable {
        /// What happened.
        message: String,
        /// The target's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// A failure retrying cannot fix (4xx, bad parameters): give up at once.
    #[error("{message}")]
    Permanent {
        /// What happened.
        message: String,
    },
}

impl ActionError {
    /// A retryable error.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }
}

/// Something a step can do.
#[async_trait]
pub trait Action: Send + Sync {
    /// Runs the action once.
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError>;

    /// Prepares the plan of `call` without changing anything: reads the
    /// target's current state through the connector and answers the changes
    /// `run` would make. Called when an L2 step opens its approval and
    /// again just before the approved step runs (with the approved
    /// parameters). `None` (the default): the action has no diff to show.
    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let _ = call;
        Ok(None)
    }

    /// Whether the action creates the tenant its workflow works for, and
    /// answers the tenant's id as its output's `id` (`tenant.create`). A
    /// workflow that belongs to no tenant yet (a won deal's onboarding)
    /// then belongs to that tenant from this step on: its later approvals,
    /// tasks and audit entries are the tenant's, and operators scoped to
    /// the tenant see them. Undoing the step gives the workflow back to
    /// the installation.
    fn creates_workflow_tenant(&self) -> bool {
        false
    }
}

/// The actions the engine knows, by name.
#[derive(Clone, Default)]
pub struct ActionRegistry {
    actions: BTreeMap<String, Arc<dyn Action>>,
}

impl std::fmt::Debug for ActionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.actions.keys()).finish()
    }
}

impl ActionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) an action under `name`.
    pub fn register(&mut self, name: &str, action: Arc<dyn Action>) -> &mut Self {
        self.actions.insert(name.to_owned(), action);
        self
    }

    /// The action called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Action>> {
        self.actions.get(name)
    }

    /// Whether an action called `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.actions.contains_key(name)
    }

    /// The registered names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.actions.keys().map(String::as_str)
    }
}

/// `sandbox.noop`: does nothing and says so. Used by the engine benchmark
/// and by templates under construction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Noop;

#[async_trait]
impl Action for Noop {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        Ok(serde_json::json!({ "step": call.step_id, "attempt": call.attempt }))
    }
}

/// One change a plan would make to a target system.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    /// What is changed (`psa company 42`, `rmm organization "Acme"`).
    pub target: String,
    /// The field or path changed (`status`, `locations[Main office]`).
    pub field: String,
    /// Its value now, as read (`null`: it does not exist).
    pub before: Value,
    /// Its value once the step has run (`null`: it is removed).
    pub after: Value,
}

/// A step's plan: the changes it would make, as a diff against the state of
/// the target that was read to prepare it.
///
/// The `fingerprint` identifies that state: the engine prepares the plan
/// again just before an approved step runs, and runs it only if the
/// fingerprint is the same; otherwise the people are asked again.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// One line for the approver (`Set company 42's status to Active`).
    pub summary: String,
    /// The changes; empty when the target already is as the step wants.
    pub changes: Vec<Change>,
    /// The target's state as read (only what the plan depends on; no
    /// secrets).
    pub observed: Value,
    /// A hash of `observed`.
    pub fingerprint: String,
}

impl Plan {
    /// A plan over the state `observed`; its fingerprint is computed here.
    pub fn new(summary: impl Into<String>, changes: Vec<Change>, observed: Value) -> Self {
        let fingerprint = fingerprint(&observed);
        Self {
            summary: summary.into(),
            changes,
            observed,
            fingerprint,
        }
    }

    /// The plan as an approval's `diff`.
    pub fn to_diff(&self) -> Value {
        serde_json::json!({
            "summary": self.summary,
            "changes": self.changes,
            "observed": self.observed,
            "fingerprint": self.fingerprint,
        })
    }
}

/// The SHA-256 (hex) of `observed` serialised as JSON with every object's
/// keys sorted, so the same state always gives the same fingerprint,
/// whatever order its keys were inserted or read in. (`serde_json` alone
/// does not promise that: with its `preserve_order` feature, which any
/// crate in the build may turn on, objects keep insertion order.)
pub fn fingerprint(observed: &Value) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(&sorted(observed)).unwrap_or_default();
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// `value` with every object rebuilt in key order.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}
