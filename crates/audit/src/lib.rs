//! The audit log's math, with no storage and no I/O.
//!
//! - [`canonical`]: RFC 8785 canonical JSON, the bytes every entry is
//!   hashed as.
//! - [`merkle`]: RFC 9162 leaf and node hashes, roots, inclusion and
//!   consistency proofs (planned from sizes, assembled from fetched
//!   subtree hashes, verified step by step as the RFC says).
//! - [`tree`]: the O(log n) [`Frontier`] a writer appends to, the
//!   [`NodeSource`] trait a store implements to serve proofs, and
//!   [`MemoryTree`].
//! - [`note`] and [`checkpoint`]: C2SP signed notes with Ed25519 and the
//!   tlog-checkpoint body; the [`Signer`] trait lets the vault hold the key.
//! - [`verify`]: replays a stored log against its checkpoints and names the
//!   first entry or checkpoint that does not match.
//!
//! See docs/audit.md for the format and the design decisions.

pub mod canonical;
pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod tree;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use merkle::{
    Hash, HashError, NodeId, ProofError, ProofPlan, empty_root, leaf_hash, node_hash,
    verify_consistency, verify_inclusion,
};
pub use note::{
    Ed25519Signer, KeyId, KeyName, NoteError, NoteSignature, SignError, SignedNote, Signer,
    VerifierKey,
};
pub use tree::{Frontier, MemoryTree, NodeSource, SourceError, TreeError};
pub use verify::{
    CheckpointRef, EntryLeaf, Mismatch, Position, Progress, Report, StoredCheckpoint, StoredEntry,
    VerifyError, VerifyOptions, verify_log,
};
