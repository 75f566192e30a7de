//! The durable workflow engine (work in progress).
//!
//! Everything Gatehouse does to the outside world runs through it. Today it
//! holds the pure parts: workflow templates as data ([`template`]), retry
//! policy with backoff ([`retry`]) and the per-connector circuit breaker
//! ([`breaker`]). The runtime (inbox, router, journaled steps, timers,
//! gates) is built on them next; see `docs/engine.md`.

pub mod action;
pub mod breaker;
mod gates;
pub mod http_action;
pub mod notify;
pub mod retry;
pub mod runtime;
pub mod stats;
pub mod template;
