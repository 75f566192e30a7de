//! The OSCAL assessment-results export of Gatehouse's audit facts.
//!
//! A pure library: the audit log fills an [`ExportInput`] (the runs of one
//! tenant over a period, each fact with its audit-leaf index, and the
//! log's signed checkpoints) and [`export`] maps it to an OSCAL
//! assessment-results [`Document`] valid against NIST's OSCAL JSON schema
//! (the tests validate every generated document against the vendored 1.2.3
//! schema). The mapping is deterministic: UUIDs are version 5, derived from
//! stable ids (see [`ids`]), and the only time in the document that is not
//! a fact's own is the caller's `generated_at`.
//!
//! What each fact becomes is documented in `docs/oscal.md`.

mod export;
pub mod ids;
pub mod input;
pub mod model;
mod text;

pub use export::{DEFAULT_OSCAL_VERSION, ExportOptions, NS, export, export_json, role};
pub use input::*;
pub use model::Document;

use time::OffsetDateTime;

/// The official NIST OSCAL 1.2.3 assessment-results JSON schema, vendored
/// (public domain / CC0), for callers that want to validate what they emit.
pub const ASSESSMENT_RESULTS_SCHEMA_1_2_3: &str =
    include_str!("../schema/oscal_assessment-results_schema-1.2.3.json");

/// Why an export could not be made. Each names the fact at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// OSCAL date-times have years 1900 to 2999.
    #[error("{what}: {at} is outside the years 1900 to 2999 that OSCAL date-times allow")]
    TimeOutOfRange {
        /// Which time.
        what: &'static str,
        /// The instant.
        at: OffsetDateTime,
    },
    /// A leaf index identifies one fact; two facts share one.
    #[error("audit leaf {leaf} is given for more than one fact")]
    DuplicateLeaf {
        /// The leaf index.
        leaf: u64,
    },
    /// A confidence must lie between 0 and 1.
    #[error("the analysis at audit leaf {leaf} has confidence {confidence}, not between 0 and 1")]
    Confidence {
        /// The analysis's leaf.
        leaf: u64,
        /// The value given.
        confidence: f64,
    },
    /// A checkpoint cannot be cited.
    #[error("checkpoint {origin:?} at tree size {tree_size}: {reason}")]
    Checkpoint {
        /// Its origin.
        origin: String,
        /// Its tree size.
        tree_size: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// An option is not a one-line string without surrounding spaces.
    #[error("option {option} must be a non-empty single line without leading or trailing spaces")]
    InvalidOption {
        /// The option.
        option: &'static str,
    },
    /// Writing the JSON failed.
    #[error("writing the OSCAL document failed: {0}")]
    Write(#[source] serde_json::Error),
}
