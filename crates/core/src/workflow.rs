//! The durable model of the workflow engine: inbound events, workflow
//! instances, the step journal and the history an instance accumulates.
//!
//! The engine computes an instance's next state in memory and commits it
//! with [`crate::store::EngineStore::commit_progress`]: the instance row
//! (guarded by its version), the changed step runs and the new history
//! entries, for many instances in one transaction. A step's idempotency key
//! is derived from (instance, step) and stays the same across attempts, so
//! a crash between "called the target" and "recorded the result" makes the
//! engine call again with the same key, and a target that honours keys
//! performs the effect once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::approval::{Approval, HumanTask};
use crate::error::DomainError;
use crate::id::{EventId, TenantId, WorkflowId};
use crate::notify::Notification;

/// Validates a dotted lowercase name: `psa.opportunity.won`, `api`.
fn dotted(field: &'static str, text: &str, max: usize) -> Result<String, DomainError> {
    let ok = !text.is_empty()
        && text.len() <= max
        && text.split('.').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(text.to_owned())
    } else {
        Err(DomainError::invalid(
            field,
            format!(
                "must be dot-separated lowercase words (a-z, 0-9, '_', '-'), at most {max} characters"
            ),
        ))
    }
}

macro_rules! dotted_name {
    ($(#[$meta:meta])* $name:ident, $field:literal, $max:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps the name.
            pub fn parse(text: &str) -> Result<Self, DomainError> {
                dotted($field, text, $max).map(Self)
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

dotted_name!(
    /// Where an event came from: `api`, `psa.connectwise`, `scim`, `timer`.
    EventSource, "source", 64
);
dotted_name!(
    /// What happened: `psa.opportunity.won`, `person.terminated`.
    EventKind, "type", 128
);

/// The sender's key for deduplication: the same (source, key) twice is the
/// same event. 1–200 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct DedupKey(String);

impl DedupKey {
    /// Validates and wraps a key.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        if text.is_empty() || text.len() > 200 || text.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "dedup_key",
                "must be 1 to 200 printable characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DedupKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// An event in the inbox, persisted before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundEvent {
    /// The event's id.
    pub id: EventId,
    /// The tenant it concerns, if it is known yet (a won deal precedes its tenant).
    pub tenant_id: Option<TenantId>,
    /// Where it came from.
    pub source: EventSource,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// The sender's deduplication key.
    pub dedup_key: DedupKey,
    /// The event's data.
    pub payload: Value,
    /// When it was received.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// What routing it did (the instances it started), once routed. A
    /// duplicate delivery is answered with this same outcome.
    pub outcome: Option<Value>,
}

/// Where an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Steps are being executed or are due.
    Running,
    /// Waiting for people: an approval (L2) or a human task (L3).
    Waiting,
    /// Every step succeeded.
    Completed,
    /// Undoing completed steps after a failure or a rejection.
    Compensating,
    /// Undone after a failure or a rejection.
    Compensated,
    /// Stopped for a human, with the reason in the history.
    Parked,
    /// Cancelled by an operator.
    Cancelled,
}

impl InstanceState {
    /// All states.
    pub const ALL: [Self; 7] = [
        Self::Running,
        Self::Waiting,
        Self::Completed,
        Self::Compensating,
        Self::Compensated,
        Self::Parked,
        Self::Cancelled,
    ];

    /// The state's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Waiting => "waiting",
            Self::Completed => "completed",
            Self::Compensating => "compensating",
            Self::Compensated => "compensated",
            Self::Parked => "parked",
            Self::Cancelled => "cancelled",
        }
    }

    /// No further step will run.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated | Self::Cancelled)
    }
}

impl FromStr for InstanceState {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                DomainError::invalid("state", format!("`{text}` is not an instance state"))
            })
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A running (or finished) workflow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    /// The instance's id.
    pub id: WorkflowId,
    /// The tenant it works for, once known.
    pub tenant_id: Option<TenantId>,
    /// The template's name.
    pub template: String,
    /// The template version it started with, and keeps.
    pub template_version: u32,
    /// The template as it was when the instance started (pinned).
    pub definition: Value,
    /// Where it is.
    pub state: InstanceState,
    /// Its data: the triggering event and what steps produced.
    pub context: Value,
    /// The event that started it.
    pub started_by: Option<EventId>,
    /// Who started it: an operator id or `system`.
    pub created_by: String,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the engine should look at it next (`None`: only an outside
    /// event, such as an approval, moves it).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_run_at: Option<OffsetDateTime>,
    /// Incremented by every committed change.
    pub version: i64,
}

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not started (or waiting for its dependencies).
    Pending,
    /// Failed at least once; retried at `next_attempt_at`.
    Retrying,
    /// Waiting for an approval (L2).
    AwaitingApproval,
    /// Waiting for a human to act and record the outcome (L3).
    AwaitingHuman,
    /// Done.
    Succeeded,
    /// Gave up after its attempts.
    Failed,
    /// Its compensation is being run (or retried) after a later failure.
    Compensating,
    /// Undone by its compensation.
    Compensated,
    /// Not run (the instance was cancelled, compensated or rejected first).
    Skipped,
}

impl StepState {
    /// All states.
    pub const ALL: [Self; 9] = [
        Self::Pending,
        Self::Retrying,
        Self::AwaitingApproval,
        Self::AwaitingHuman,
        Self::Succeeded,
        Self::Failed,
        Self::Compensating,
        Self::Compensated,
        Self::Skipped,
    ];

    /// The state's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::AwaitingApproval => "awaiting_approval",
            Self::AwaitingHuman => "awaiting_human",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Compensating => "compensating",
            Self::Compensated => "compensated",
            Self::Skipped => "skipped",
        }
    }
}

impl FromStr for StepState {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| DomainError::invalid("state", format!("`{text}` is not a step state")))
    }
}

/// The journal entry of one step of one instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRun {
    /// The instance.
    pub instance_id: WorkflowId,
    /// The step's id in the template.
    pub step_id: String,
    /// Where it is.
    pub state: StepState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Handed to the action (and by connectors to the target) on every
    /// attempt: `{instance}:{step}`, or `{instance}:{step}:undo` for the
    /// compensation.
    pub idempotency_key: String,
    /// What the action returned.
    pub output: Option<Value>,
    /// The last error.
    pub error: Option<String>,
    /// When the next attempt is due (`Retrying`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl StepRun {
    /// A fresh, pending journal entry.
    pub fn pending(instance: WorkflowId, step_id: &str, now: OffsetDateTime) -> Self {
        Self {
            instance_id: instance,
            step_id: step_id.to_owned(),
            state: StepState::Pending,
            attempts: 0,
            idempotency_key: format!("{instance}:{step_id}"),
            output: None,
            error: None,
            next_attempt_at: None,
            updated_at: now,
        }
    }
}

/// One entry of an instance's history (every transition, with who and why).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// The instance.
    pub instance_id: WorkflowId,
    /// Position in the instance's history, from 1.
    pub seq: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What: `instance.started`, `step.succeeded`, `step.retrying`, …
    pub kind: String,
    /// The step concerned, if any.
    pub step_id: Option<String>,
    /// Who: an operator id or `system`.
    pub actor: String,
    /// Details.
    pub detail: Value,
}

/// A batch of changes to one instance, committed atomically with others.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The instance's new row; stored only if the stored version is
    /// `instance.version - 1` (else the whole batch fails with `Stale`).
    pub instance: Instance,
    /// Step runs to insert or replace.
    pub steps: Vec<StepRun>,
    /// History entries to append (their `seq` continues the instance's history).
    pub history: Vec<HistoryEntry>,
    /// Approvals of this instance's steps (of no other instance). One whose
    /// id is not stored yet is inserted (pending or cancelled, without
    /// decisions). A stored one that is still pending gets this state
    /// (pending or cancelled), `escalated_at` (kept once set) and
    /// `decided_at`; one stored in the state given here already is left as
    /// it is; anything else fails the batch: `Stale("approval")` for a
    /// decided one, `Conflict` for an attempt to approve or reject here.
    /// Decisions are recorded with
    /// [`crate::store::GateStore::record_decision`], never here.
    pub approvals: Vec<Approval>,
    /// Human tasks of this instance's steps, in the same way: inserted when
    /// new (open or cancelled, without an outcome), cancelled while open,
    /// left alone when stored in the given state already, `Stale("human
    /// task")` when finished otherwise. Tasks are completed with
    /// [`crate::store::GateStore::complete_task`].
    pub tasks: Vec<HumanTask>,
    /// Notifications to queue (inserted; one whose id is stored already is
    /// left as it is). Written in the same transaction as the step they
    /// are about, so a recorded L1 step always has its review request.
    pub notifications: Vec<Notification>,
}

impl Progress {
    /// A change of `instance`: its changed step runs and history entries,
    /// with no approvals, tasks or notifications.
    pub fn new(instance: Instance, steps: Vec<StepRun>, history: Vec<HistoryEntry>) -> Self {
        Self {
            instance,
            steps,
            history,
            approvals: Vec::new(),
            tasks: Vec::new(),
            notifications: Vec::new(),
        }
    }
}
