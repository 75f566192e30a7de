//! The Gatehouse application: its services and its HTTP edge.
//!
//! - [`app`] is the service layer. Every operation takes the [`app::Actor`]
//!   performing it and checks authorization itself ([`authz`]), so the HTTP
//!   API and the CLI go through the same rules.
//! - [`http`] is the only place that speaks HTTP: routes, extractors, the
//!   OpenAPI document, health and metrics.
//! - [`error::AppError`] is the one error type of this layer; its HTTP
//!   status and stable `code` are decided in one place.

pub mod actions;
pub mod app;
pub mod audit;
pub mod audit_verify;
pub mod authz;
pub mod console;
pub mod demo;
pub mod error;
pub mod http;
pub mod identity;
pub mod intake_poll;
pub mod kb;
pub mod kb_action;
pub mod metrics;
pub mod onboarding;
pub mod scim;
pub mod signin;

pub use app::{Actor, App};
pub use error::AppError;
