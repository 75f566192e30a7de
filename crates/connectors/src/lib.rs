//! Clients of the systems Gatehouse acts on, behind vendor-neutral traits.
//!
//! - [`ports`]: what the engine's actions need from each kind of system
//!   (a PSA, an RMM, Microsoft 365, a documentation platform), as traits
//!   with plain data types. Actions and plans are written against these;
//!   each vendor module implements one.
//! - [`http`]: the shared HTTP plumbing: one error type that says whether a
//!   retry can help (honouring `Retry-After`), status mapping, and a cache
//!   of OAuth client-credentials tokens.
//! - The vendors: PSAs [`connectwise`], [`autotask`], [`halopsa`]
//!   (implementing [`ports::Psa`]); RMMs [`ninjaone`], [`dattormm`]
//!   ([`ports::Rmm`]); documentation platforms [`itglue`], [`hudu`]
//!   ([`ports::DocsPlatform`]); Microsoft [`graph`] ([`ports::M365`]).
//! - [`directory`]: the [`AccountDirectory`] port the identity reconciler
//!   drives, over any SCIM 2.0 application ([`scim`]) or Microsoft 365.
//!
//! Every client forwards the engine's idempotency key as `Idempotency-Key`
//! where it creates something, and the actions also look for what an earlier
//! attempt created before creating it again (most vendor APIs ignore the
//! header). Secrets (passwords, client secrets, API keys) never appear in an
//! error message or a log line.

pub mod autotask;
pub mod connectwise;
pub mod dattormm;
pub mod directory;
pub mod error;
pub mod graph;
pub mod halopsa;
pub mod http;
pub mod hudu;
pub mod itglue;
pub mod ninjaone;
pub mod ports;
mod psa_common;
mod rest;
pub mod scim;
pub mod webhook;

pub use directory::{
    AccountChange, AccountDirectory, AccountRef, GraphDirectory, Holdings, ScimDirectory,
};
pub use error::ConnectorError;
