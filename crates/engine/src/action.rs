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
