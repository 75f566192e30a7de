//! Gatehouse's domain: the words every other part speaks.
//!
//! This crate does no I/O. It holds typed ids, the [`clock::Clock`] through
//! which all "now" is read, the validated newtypes that the edges parse raw
//! input into, the lifecycle rules of tenants and operators, and the storage
//! traits that the SQLite and PostgreSQL back ends implement. Keeping the
//! traits here (and not in the store crate) lets the vault and later the
//! engine depend on storage without depending on SQL.

pub mod approval;
pub mod audit;
pub mod audit_key;
pub mod clock;
pub mod connector;
pub mod error;
pub mod gate;
pub mod hooks;
pub mod id;
pub mod identity;
pub mod kb;
pub mod keys;
pub mod notify;
pub mod onboarding;
pub mod operator;
pub mod retry_after;
pub mod scim;
pub mod secret;
pub mod signin;
pub mod store;
pub mod tenant;
pub mod tenant_group;
pub mod workflow;

pub use clock::{Clock, FakeClock, SystemClock};
pub use error::DomainError;
pub use gate::{GateLevel, GatePolicy, ProcessArea};
