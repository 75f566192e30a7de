//! RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing and proofs.
//!
//! The tree is the one of RFC 6962 / RFC 9162 §2.1.1: a leaf hashes as
//! `SHA-256(0x00 ‖ entry)`, an interior node as `SHA-256(0x01 ‖ left ‖ right)`,
//! and a tree of `n > 1` leaves splits at the largest power of two smaller
//! than `n`. The empty tree's root is `SHA-256("")`.
//!
//! Proof *generation* is split in two so that the leaves may live in a
//! database: a [`ProofPlan`] says, from the sizes alone, which perfect
//! subtrees ([`NodeId`]) it needs; the caller fetches their hashes however it
//! likes (one SQL query, an in-memory [`crate::MemoryTree`], …) and
//! [`ProofPlan::assemble`] turns them into the proof. Every range a proof or
//! a root needs is aligned, so it is covered by at most 64 perfect subtrees;
//! a store that keeps every perfect subtree it completes (see
//! [`crate::Frontier::push_with`]) answers any proof with O(log² n) rows.
//!
//! Proof *verification* follows the algorithms of RFC 9162 §2.1.3.2 and
//! §2.1.4.2 step by step, with one error per way a proof can be wrong.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// A SHA-256 hash: a leaf hash, an interior node or a tree root.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, std::hash::Hash, Default)]
pub struct Hash([u8; 32]);

impl Hash {
    /// Length of a hash in bytes.
    pub const LEN: usize = 32;

    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a hash from a slice that must be exactly 32 bytes long
    /// (a database column, a decoded proof element).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, HashError> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| HashError::Length(bytes.len()))
    }

    /// Lower-case hexadecimal, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hexadecimal characters.
    pub fn from_hex(text: &str) -> Result<Self, HashError> {
        let bytes = hex::decode(text).map_err(|_| HashError::Hex)?;
        Self::from_slice(&bytes)
    }

    /// Standard base64 with padding (RFC 4648 §4), as checkpoints write it.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// Parses standard base64 (padding and canonical trailing bits required).
    pub fn from_base64(text: &str) -> Result<Self, HashError> {
        let bytes = BASE64.decode(text).map_err(|_| HashError::Base64)?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A hash that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashError {
    #[error("a hash is 32 bytes, got {0}")]
    Length(usize),
    #[error("a hash in hexadecimal must be 64 hexadecimal digits")]
    Hex,
    #[error("a hash in base64 must be standard, padded base64 of 32 bytes")]
    Base64,
}

/// `SHA-256(0x00 ‖ entry)`: the hash of one log entry.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left.0);
    h.update(right.0);
    Hash(h.finalize().into())
}

/// `SHA-256()`: the root of the empty tree.
pub fn empty_root() -> Hash {
    Hash(Sha256::digest([]).into())
}

/// The root of the tree whose leaf hashes are `leaves` (RFC 9162 MTH), in
/// one pass with O(log n) memory.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut frontier = crate::Frontier::new();
    for leaf in leaves {
        // Cannot fail: a slice never holds u64::MAX hashes.
        let _ = frontier.push(*leaf);
    }
    frontier.root()
}

/// A perfect subtree: the `2^level` leaves starting at leaf
/// `index × 2^level`. Level 0 nodes are the leaf hashes themselves.
///
/// This is the key a store uses for the hashes it keeps: `(level, index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, std::hash::Hash)]
pub struct NodeId {
    /// Height above the leaves: the subtree holds `2^level` leaves.
    pub level: u8,
    /// Position among the subtrees of this level, from the left.
    pub index: u64,
}

impl NodeId {
    /// The leaf at `index`.
    pub const fn leaf(index: u64) -> Self {
        Self { level: 0, index }
    }

    /// The first leaf the subtree covers, or `None` if that overflows u64.
    pub fn first_leaf(&self) -> Option<u64> {
        self.index.checked_mul(1u64.checked_shl(self.level.into())?)
    }
}

/// A proof or a root that cannot be produced or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    #[error("leaf index {index} is not inside a tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {requested} is larger than the tree ({size} leaves)")]
    SizeBeyondTree { requested: u64, size: u64 },
    #[error("a consistency proof goes from a smaller to a larger tree; got {old} → {new}")]
    SizesOutOfOrder { old: u64, new: u64 },
    #[error("the proof has more hashes than a proof for these sizes can have")]
    ProofTooLong,
    #[error("the proof has fewer hashes than a proof for these sizes needs")]
    ProofTooShort,
    #[error("a proof between equal sizes, or from the empty tree, must be empty")]
    ProofNotEmpty,
    #[error("the proof leads to root {computed}, not the expected {expected}")]
    RootMismatch { expected: Hash, computed: Hash },
    #[error("the proof does not lead to the old root: expected {expected}, computed {computed}")]
    OldRootMismatch { expected: Hash, computed: Hash },
    #[error("{expected} subtree hashes were planned, {got} were given")]
    WrongHashCount { expected: usize, got: usize },
    #[error("subtree {0:?} is not (yet) complete in this tree")]
    MissingNode(NodeId),
}

/// The largest power of two strictly smaller than `n`, for `n ≥ 2`.
fn split_point(n: u64) -> u64 {
    // n ≥ 2, so n - 1 ≥ 1 and leading_zeros ≤ 63.
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Appends the perfect subtrees covering `[start, end)` to `out`, largest
/// first. `start` is a multiple of the largest power of two ≤ `end - start`,
/// which holds for every range a root or an RFC 9162 proof needs.
fn push_range(start: u64, end: u64, out: &mut Vec<NodeId>) {
    let mut cur = start;
    let mut len = end - start;
    while len > 0 {
        let level = 63 - len.leading_zeros();
        let width = 1u64 << level;
        out.push(NodeId {
            level: level as u8,
            index: cur >> level,
        });
        cur += width;
        len -= width;
    }
}

/// What to fetch, and how to combine it, to produce a proof or a root.
///
/// Build one with [`ProofPlan::inclusion`], [`ProofPlan::consistency`] or
/// [`ProofPlan::root`]; fetch the hashes of [`ProofPlan::nodes`] in that
/// order; call [`ProofPlan::assemble`] (or [`ProofPlan::assemble_root`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPlan {
    nodes: Vec<NodeId>,
    /// For every proof element, how many consecutive entries of `nodes`
    /// fold (right to left) into it.
    parts: Vec<u8>,
}

impl ProofPlan {
    fn from_ranges(ranges: &[(u64, u64)]) -> Self {
        let mut nodes = Vec::with_capacity(ranges.len() * 2);
        let mut parts = Vec::with_capacity(ranges.len());
        for &(start, end) in ranges {
            let before = nodes.len();
            push_range(start, end, &mut nodes);
            // At most 64 pieces: one per bit of a u64 length.
            parts.push((nodes.len() - before) as u8);
        }
        Self { nodes, parts }
    }

    /// The inclusion proof (audit path) of leaf `index` in the tree of
    /// `size` leaves, RFC 9162 §2.1.3.1.
    pub fn inclusion(index: u64, size: u64) -> Result<Self, ProofError> {
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size });
        }
        let mut ranges = Vec::new();
        let (mut lo, mut hi) = (0u64, size);
        while hi - lo > 1 {
            let mid = lo + split_point(hi - lo);
            if index < mid {
                ranges.push((mid, hi));
                hi = mid;
            } else {
                ranges.push((lo, mid));
                lo = mid;
            }
        }
        ranges.reverse();
        Ok(Self::from_ranges(&ranges))
    }

    /// The consistency proof from the tree of `old` leaves to the tree of
    /// `new` leaves, RFC 9162 §2.1.4.1. Empty when `old` is 0 or equal to `new`.
    pub fn consistency(old: u64, new: u64) -> Result<Self, ProofError> {
        if old > new {
            return Err(ProofError::SizesOutOfOrder { old, new });
        }
        if old == 0 || old == new {
            return Ok(Self::from_ranges(&[]));
        }
        let mut ranges = Vec::new();
        let (mut lo, mut hi) = (0u64, new);
        let mut whole_old_tree = true;
        loop {
            if old == hi {
                if !whole_old_tree {
                    ranges.push((lo, hi));
                }
                break;
            }
            let mid = lo + split_point(hi - lo);
            if old <= mid {
                ranges.push((mid, hi));
                hi = mid;
            } else {
                ranges.push((lo, mid));
                lo = mid;
                whole_old_tree = false;
            }
        }
        ranges.reverse();
        Ok(Self::from_ranges(&ranges))
    }

    /// The root of the tree of `size` leaves. Assemble it with
    /// [`ProofPlan::assemble_root`].
    pub fn root(size: u64) -> Self {
        if size == 0 {
            return Self::from_ranges(&[]);
        }
        Self::from_ranges(&[(0, size)])
    }

    /// The perfect subtrees whose hashes [`ProofPlan::assemble`] needs, in
    /// the order it needs them.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Combines the fetched hashes (one per [`ProofPlan::nodes`] entry, same
    /// order) into the proof.
    pub fn assemble(&self, hashes: &[Hash]) -> Result<Vec<Hash>, ProofError> {
        if hashes.len() != self.nodes.len() {
            return Err(ProofError::WrongHashCount {
                expected: self.nodes.len(),
                got: hashes.len(),
            });
        }
        let mut proof = Vec::with_capacity(self.parts.len());
        let mut at = 0usize;
        for &count in &self.parts {
            let pieces = &hashes[at..at + usize::from(count)];
            at += usize::from(count);
            let mut iter = pieces.iter().rev();
            let Some(last) = iter.next() else {
                continue;
            };
            proof.push(iter.fold(*last, |acc, left| node_hash(left, &acc)));
        }
        Ok(proof)
    }

    /// Like [`ProofPlan::assemble`] for a plan made by [`ProofPlan::root`]:
    /// the root itself (the empty root for size 0).
    pub fn assemble_root(&self, hashes: &[Hash]) -> Result<Hash, ProofError> {
        Ok(self
            .assemble(hashes)?
            .into_iter()
            .next()
            .unwrap_or_else(empty_root))
    }
}

/// The root that an inclusion proof leads to (RFC 9162 §2.1.3.2 steps 1–4).
pub fn root_from_inclusion_proof(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode != 0 && fnode & 1 == 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::ProofTooShort);
    }
    Ok(r)
}

/// Checks that `leaf` is the leaf hash at `index` in the tree of `size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion_proof(leaf, index, size, proof)?;
    if &computed != root {
        return Err(ProofError::RootMismatch {
            expected: *root,
            computed,
        });
    }
    Ok(())
}

/// Checks that the tree of `old` leaves with root `old_root` is a prefix of
/// the tree of `new` leaves with root `new_root` (RFC 9162 §2.1.4.2).
///
/// Sizes RFC 9162 leaves out: equal sizes need an empty proof and equal
/// roots; the empty tree (old = 0, root `SHA-256()`) is a prefix of every
/// tree, with an empty proof.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old > new {
        return Err(ProofError::SizesOutOfOrder { old, new });
    }
    if old == 0 || old == new {
        if !proof.is_empty() {
            return Err(ProofError::ProofNotEmpty);
        }
        let expected_old = if old == 0 { empty_root() } else { *new_root };
        if *old_root != expected_old {
            return Err(ProofError::OldRootMismatch {
                expected: expected_old,
                computed: *old_root,
            });
        }
        return Ok(());
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(ProofError::ProofTooShort);
    };
    // Step 2: when `old` is a power of two, the old root is the first node.
    let (start, path) = if old.is_power_of_two() {
        (old_root, proof)
    } else {
        (first, rest)
    };
    let (mut fnode, mut snode) = (old - 1, new - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in path {
        if snode == 0 {
            return Err(ProofError::ProofTooLong);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode != 0 && fnode & 1 == 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::ProofTooShort);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch {
            expected: *old_root,
            computed: fr,
        });
    }
    if sr != *new_root {
        return Err(ProofError::RootMismatch {
            expected: *new_root,
            computed: sr,
        });
    }
    Ok(())
}
