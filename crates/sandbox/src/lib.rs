//! Loopback emulators of the external systems Gatehouse talks to.
//!
//! Tests of Gatehouse's integrations should exercise the real HTTP client
//! code, not a mock of it, yet must not need a live vendor system. Each
//! emulator here serves the vendor's wire format on `127.0.0.1` with a random
//! port, keeps its state in memory, and exposes two things a real system
//! cannot give a test: fault knobs (to force outages and errors on demand)
//! and side-effect counters (to assert how many calls actually took effect).
//!
//! Emulators so far: [`vault_transit`] (HashiCorp Vault's Transit engine),
//! [`effects`] (a generic target that counts side effects by idempotency
//! key, for the engine's exactly-once tests), and two sinks for outbound
//! notifications: [`smtp`] (an SMTP server that keeps the mail it accepts)
//! and [`webhook`] (a receiver that records requests and answers with
//! scripted statuses).
//!
//! [`operator`] is the other side: a scripted MSP operator that takes
//! onboardings to go-live through Gatehouse's HTTP API (approvals, sign-offs,
//! the checklist), for the end-to-end tests and `gatehouse bench onboarding`.
//!
//! Vendor emulators, all built on [`emulator`] (fault knobs, side-effect
//! counters, idempotency keys) and all of the same shape (`start`, `url`,
//! `harness`, seeding helpers, state readers, `shutdown`): the PSAs in
//! [`psa`] (ConnectWise PSA, Autotask, HaloPSA, each able to deliver its
//! signed webhooks), the RMMs [`ninjaone`] and [`dattormm`], the
//! documentation platforms [`itglue`] and [`hudu`], and Microsoft [`graph`]
//! (with the identity platform's token endpoint), and [`scim`], a generic
//! SCIM 2.0 application (a SaaS product that accepts provisioning), built on
//! the `gatehouse-scim` protocol core.

pub mod dattormm;
pub mod effects;
pub mod emulator;
pub mod enroll;
pub mod graph;
pub mod hudu;
pub mod itglue;
pub mod ninjaone;
pub mod operator;
pub mod psa;
pub mod scim;
pub mod smtp;
pub mod suite;
pub mod vault_transit;
pub mod webhook;

pub use effects::{EffectsServer, KeyCounts};
pub use enroll::AutoEnroll;
pub use graph::GraphEmulator;
pub use scim::ScimAppEmulator;
pub use smtp::{ReceivedMail, SmtpSink};
pub use suite::{Sandbox, SandboxCredentials};
pub use vault_transit::{TransitOp, VaultTransitEmulator};
pub use webhook::{ReceivedHook, WebhookSink};
