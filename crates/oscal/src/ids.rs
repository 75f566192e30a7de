//! Deterministic OSCAL UUIDs.
//!
//! OSCAL accepts only version 4 or 5 UUIDs and asks that one subject keep
//! its UUID across revisions of a document. Every UUID here is a version 5
//! (SHA-1, RFC 9562 §5.5) UUID in [`NAMESPACE`] of a name built from the
//! stable ids of the fact it stands for: an instance id, an operator id, a
//! tenant id and an audit-leaf index. The same input therefore exports the
//! same document, and a later export of a longer log keeps the UUIDs of the
//! facts it shares with an earlier one.
//!
//! The names (see `docs/oscal.md`) are `gatehouse/oscal/<kind>/<ids…>`.

use std::fmt;

use gatehouse_core::id::{OperatorId, TenantId, WorkflowId};
use uuid::Uuid;

/// The namespace of every Gatehouse OSCAL UUID, chosen at random once:
/// `3f0578e1-5811-414c-8fd1-bdd349526743`.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x3f05_78e1_5811_414c_8fd1_bdd3_4952_6743);

fn v5(name: fmt::Arguments<'_>) -> Uuid {
    let name = format!("gatehouse/oscal/{name}");
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// The document: one per tenant and period.
pub fn document(tenant: TenantId, since: &str, until: &str) -> Uuid {
    v5(format_args!("document/{tenant}/{since}/{until}"))
}

/// The Gatehouse system party.
pub fn system_party() -> Uuid {
    v5(format_args!("party/system"))
}

/// The tenant's party.
pub fn tenant_party(tenant: TenantId) -> Uuid {
    v5(format_args!("party/tenant/{tenant}"))
}

/// An operator's party.
pub fn operator_party(operator: OperatorId) -> Uuid {
    v5(format_args!("party/operator/{operator}"))
}

/// The Gatehouse engine as a component (the `tool` of automated facts).
pub fn engine_component() -> Uuid {
    v5(format_args!("component/engine"))
}

/// The assessment-plan resource of a tenant.
pub fn assessment_plan(tenant: TenantId) -> Uuid {
    v5(format_args!("assessment-plan/{tenant}"))
}

/// A checkpoint resource.
pub fn checkpoint(origin: &str, tree_size: u64) -> Uuid {
    v5(format_args!("checkpoint/{origin}/{tree_size}"))
}

/// A workflow run's result.
pub fn result(instance: WorkflowId) -> Uuid {
    v5(format_args!("result/{instance}"))
}

/// The one result of an export without runs.
pub fn empty_result(tenant: TenantId, since: &str, until: &str) -> Uuid {
    v5(format_args!("result/none/{tenant}/{since}/{until}"))
}

/// A finding of a run about a control.
pub fn finding(instance: WorkflowId, control: &str) -> Uuid {
    v5(format_args!("finding/{instance}/{control}"))
}

/// What one audit leaf becomes; a leaf can give one of each.
#[derive(Debug, Clone, Copy)]
pub enum LeafPart {
    /// An assessment-log entry.
    LogEntry,
    /// An observation.
    Observation,
    /// A risk.
    Risk,
    /// A risk's remediation.
    Remediation,
}

/// The element that leaf `leaf` of the tenant's log becomes.
pub fn leaf(tenant: TenantId, leaf: u64, part: LeafPart) -> Uuid {
    let part = match part {
        LeafPart::LogEntry => "log-entry",
        LeafPart::Observation => "observation",
        LeafPart::Risk => "risk",
        LeafPart::Remediation => "remediation",
    };
    v5(format_args!("{part}/{tenant}/{leaf}"))
}
