//! Workflow templates: the checklists the engine runs, kept as data.
//!
//! An MSP must be able to read a workflow and change it without a release,
//! so a template is a TOML file of stages and steps (see
//! `docs/workflow-templates.md`), and the engine interprets it; what a step
//! *does* is an action implemented in Rust and named by the template.
//!
//! The design choices, and why:
//! - **Validate everything at load.** A mistake found when the tenth client
//!   reaches stage four is a stuck onboarding; the same mistake found when the
//!   file is loaded is a line number. Loading checks syntax, unknown fields,
//!   ids, the dependency graph, actions against the engine's catalog, gates
//!   against their area's floor, and that every `{{ steps.<id>… }}`
//!   expression refers to a step certain to have completed. Every problem is
//!   reported with file, line, column and field, all at once.
//! - **Stages in order, a DAG inside each stage.** Stages read like the
//!   sections of a checklist; inside a stage, steps without `needs` run in
//!   parallel. [`Stage::ready_steps`] is the scheduler's whole question.
//! - **Instances pin what they started with.** Versions are integers and
//!   (name, version) is a [`TemplateId`]; the model serializes to JSON, so an
//!   instance stores the exact template it runs and is unaffected by later
//!   edits, even an edit in place that forgot to bump the version.
//! - **A deliberately tiny expression language** ([`expr`]): paths only, no
//!   logic, and a missing value is an error, never an empty string.

pub mod expr;

mod error;
mod load;
mod model;
mod set;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashSet};

pub use error::{TemplateError, TemplateErrors};
pub use expr::{Path, RenderError, render};
pub use load::{DEFAULT_TIMEOUT, MAX_TIMEOUT};
pub use model::{
    ActionName, Compensation, Condition, EventType, OnFailure, Stage, StageId, Step, StepId,
    TIMER_ACTION, Template, TemplateId, TemplateName, Trigger, Wait, parse_timestamp,
};
pub use set::{TemplateOrigin, TemplateSet};

/// The actions a template may name: the engine passes its action registry,
/// tests pass a set of names.
pub trait ActionCatalog {
    /// Whether an action called `action` exists.
    fn knows(&self, action: &str) -> bool;
}

impl ActionCatalog for BTreeSet<&str> {
    fn knows(&self, action: &str) -> bool {
        self.contains(action)
    }
}

impl ActionCatalog for BTreeSet<String> {
    fn knows(&self, action: &str) -> bool {
        self.contains(action)
    }
}

impl ActionCatalog for HashSet<&str> {
    fn knows(&self, action: &str) -> bool {
        self.contains(action)
    }
}

impl ActionCatalog for HashSet<String> {
    fn knows(&self, action: &str) -> bool {
        self.contains(action)
    }
}

impl ActionCatalog for crate::action::ActionRegistry {
    fn knows(&self, action: &str) -> bool {
        self.contains(action)
    }
}

impl Template {
    /// Parses and validates a template. `source` names the file in errors
    /// (a path, or `builtin/<file>`); `actions` decides which action names
    /// exist. Returns every problem found, not only the first.
    pub fn from_toml(
        source: &str,
        text: &str,
        actions: &dyn ActionCatalog,
    ) -> Result<Template, TemplateErrors> {
        load::parse(source, text, actions)
    }
}

/// Every action name the built-in templates use, compensations included,
/// and the generic actions any template may use ([`GENERIC_ACTIONS`]).
/// The engine must implement each of them; tests use this set as the catalog.
pub fn builtin_actions() -> BTreeSet<&'static str> {
    [
        // client-onboarding: intake
        "tenant.create",
        "tenant.delete",
        "psa.link_company",
        "psa.unlink_company",
        "onboarding.assign_owner",
        // documentation collection
        "checklist.request",
        "checklist.cancel",
        "human.signoff",
        // access provisioning
        "rmm.create_organization",
        "rmm.delete_organization",
        "rmm.create_location",
        "rmm.create_installer_link",
        "graph.resolve_customer_tenant",
        "graph.request_gdap",
        "graph.await_gdap",
        "graph.terminate_gdap",
        "graph.create_admin_accounts",
        "graph.delete_admin_accounts",
        "docs.create_organization",
        "docs.delete_organization",
        "psa.update_company",
        // knowledge transfer
        "kb.publish",
        "rmm.verify_agents",
        "graph.review_privileged_access",
        // go-live
        "sla.start",
        "sla.stop",
        "psa.update_opportunity",
        // engine-bench
        "sandbox.noop",
        // identity-revocation, -joiner, -sensitive, -elevation
        "identity.apply",
        "identity.elevation_grant",
        "identity.elevation_end",
    ]
    .into_iter()
    .chain(GENERIC_ACTIONS)
    .collect()
}

/// Actions no built-in template uses but any template may: `http.post`.
pub const GENERIC_ACTIONS: [&str; 1] = [crate::http_action::NAME];
