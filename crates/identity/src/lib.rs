//! Identity lifecycle rules (issue 6): who each person is, what their role
//! and attributes justify, and what a system must change to match.
//!
//! Everything here is pure: no storage, no HTTP, no clock. The server feeds
//! it stored events and what the target systems hold, and executes the
//! operations it answers through the engine.
//!
//! - [`person`]: people, their canonical attributes and each attribute's
//!   lineage (which source set it, when).
//! - [`event`]: lifecycle events (hire, update, leave, return, termination,
//!   contract end) and their deterministic application: the same events,
//!   in any arrival order, give the same person.
//! - [`policy`]: role templates (RBAC) with attribute rules (ABAC) and the
//!   entitlements eligible for just-in-time elevation.
//! - [`plan`]: a person's desired grants, the operations that bring one
//!   system in line with them, a template change's impact, and drift.
//! - [`import`]: CSV import with a per-row error report.

pub mod event;
pub mod import;
pub mod person;
pub mod plan;
pub mod policy;
mod rule;

pub use event::{EventError, EventKind, LifecycleEvent};
pub use person::{Lineage, Person, PersonKind, PersonStatus};
pub use plan::{
    AccountChange, Desired, Drift, Elevation, Held, Impact, Operation, Reason, SystemDesire,
    desired, diff, drift, impact,
};
pub use policy::{Entitlement, GrantSpec, Policy, PolicyError, RoleTemplate};
