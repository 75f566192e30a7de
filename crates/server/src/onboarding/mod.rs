//! Client onboarding, Gatehouse's side: the actions the onboarding template
//! names that act inside Gatehouse (`tenant.create`, `checklist.request`,
//! `sla.start`, …), the documentation checklist (files sealed under the
//! tenant's key, secrets into the tenant's vault, waivers), its reminders
//! and overdue escalations, and tracking (stage, progress, what blocks).
//!
//! Stages and steps are not copied here: tracking reads them from the
//! workflow instance and its step journal, and adds what only Gatehouse
//! records (owner, checklist, PSA link, SLA clock; see
//! `gatehouse_core::onboarding`).
//!
//! The connector-backed actions of the same template (`rmm.*`, `graph.*`,
//! `psa.update_*`, `docs.*`) live in `crate::actions`, `kb.publish` with the
//! knowledge base.

mod actions;
mod checklist;
mod reminders;
mod tracking;

pub use actions::{AppSlot, register_actions};
pub use checklist::{ItemView, MAX_FILE_BYTES, Upload};
pub use reminders::{NoticeReport, REMIND_BEFORE, run_reminders};
pub use tracking::{
    Blocker, OnboardingDetail, OnboardingFilter, OnboardingSummary, StageProgress,
    TEMPLATE as ONBOARDING_TEMPLATE, stages as stage_progress,
};
