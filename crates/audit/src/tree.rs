//! Growing a tree: the compact [`Frontier`] a writer keeps, the
//! [`NodeSource`] trait a store implements to serve proofs, and
//! [`MemoryTree`], an in-memory tree that keeps every node.
//!
//! The frontier is the list of perfect subtree roots that make up the tree
//! (one per set bit of its size), so appending is O(log n) amortised O(1)
//! hashes and the root costs at most 63 hashes. While appending, the
//! frontier reports every perfect subtree it completes; a store that keeps
//! those `(level, index) → hash` rows can serve any proof (see
//! [`crate::ProofPlan`]) and restore the frontier after a restart from at most
//! 64 rows ([`Frontier::plan`], [`Frontier::restore`]).

use thiserror::Error;

use crate::merkle::{Hash, NodeId, ProofError, ProofPlan, empty_root, leaf_hash, node_hash};

/// A tree that cannot grow or be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TreeError {
    #[error("the tree already holds u64::MAX leaves")]
    Full,
    #[error("restoring a frontier of size {size} needs {expected} subtree hashes, got {got}")]
    WrongNodeCount {
        size: u64,
        expected: usize,
        got: usize,
    },
}

/// The perfect subtree roots of a tree: enough to append and to compute
/// the root, nothing more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, the largest subtree first.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one leaf hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> Result<u64, TreeError> {
        self.push_with(leaf, |_, _| {})
    }

    /// Appends the leaf hash of `entry` (`SHA-256(0x00 ‖ entry)`); returns
    /// its index.
    pub fn push_entry(&mut self, entry: &[u8]) -> Result<u64, TreeError> {
        self.push(leaf_hash(entry))
    }

    /// Appends one leaf hash and calls `completed` for every perfect subtree
    /// this completes, the leaf itself (level 0) first, then upward. A store
    /// keeps these rows to serve proofs. Returns the leaf's index.
    pub fn push_with(
        &mut self,
        leaf: Hash,
        mut completed: impl FnMut(NodeId, &Hash),
    ) -> Result<u64, TreeError> {
        let index = self.size;
        let size = index.checked_add(1).ok_or(TreeError::Full)?;
        let mut hash = leaf;
        completed(NodeId::leaf(index), &hash);
        let mut level: u8 = 0;
        // Every set low bit of the old size is a perfect subtree of that
        // height waiting on the frontier for a right sibling.
        while (index >> level) & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                // The invariant (one node per set bit) makes this unreachable;
                // stop merging rather than panic.
                break;
            };
            hash = node_hash(&left, &hash);
            level += 1;
            completed(
                NodeId {
                    level,
                    index: index >> level,
                },
                &hash,
            );
        }
        self.nodes.push(hash);
        self.size = size;
        Ok(index)
    }

    /// The current root (RFC 9162 MTH); `SHA-256()` for the empty tree.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// The subtrees whose hashes [`Frontier::restore`] needs for a tree of
    /// `size` leaves, in order.
    pub fn plan(size: u64) -> Vec<NodeId> {
        ProofPlan::root(size).nodes().to_vec()
    }

    /// Rebuilds the frontier of a tree of `size` leaves from the hashes of
    /// the subtrees [`Frontier::plan`] named, in that order.
    pub fn restore(size: u64, hashes: Vec<Hash>) -> Result<Self, TreeError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(TreeError::WrongNodeCount {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self {
            size,
            nodes: hashes,
        })
    }

    /// The frontier's subtrees with their hashes, largest first (what a
    /// store would persist to restore it).
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, Hash)> + '_ {
        Self::plan(self.size)
            .into_iter()
            .zip(self.nodes.iter().copied())
    }
}

/// Where proof generation reads subtree hashes: a store's node table, or
/// [`MemoryTree`].
pub trait NodeSource {
    /// Why a lookup failed (a database error, say).
    type Error;

    /// The hashes of `ids`, in the same order. A node that is not complete
    /// in the source is an error.
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

/// A proof that could not be produced from a [`NodeSource`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SourceError<E> {
    #[error(transparent)]
    Proof(ProofError),
    #[error("reading subtree hashes failed: {0}")]
    Source(E),
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<S: NodeSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, SourceError<S::Error>> {
    let plan = ProofPlan::inclusion(index, size).map_err(SourceError::Proof)?;
    let hashes = source.nodes(plan.nodes()).map_err(SourceError::Source)?;
    plan.assemble(&hashes).map_err(SourceError::Proof)
}

/// The consistency proof from the tree of `old` leaves to that of `new`.
pub fn consistency_proof<S: NodeSource>(
    source: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, SourceError<S::Error>> {
    let plan = ProofPlan::consistency(old, new).map_err(SourceError::Proof)?;
    let hashes = source.nodes(plan.nodes()).map_err(SourceError::Source)?;
    plan.assemble(&hashes).map_err(SourceError::Proof)
}

/// The root of the tree of `size` leaves.
pub fn root_at<S: NodeSource>(source: &S, size: u64) -> Result<Hash, SourceError<S::Error>> {
    let plan = ProofPlan::root(size);
    let hashes = source.nodes(plan.nodes()).map_err(SourceError::Source)?;
    plan.assemble_root(&hashes).map_err(SourceError::Proof)
}

/// A tree held in memory with every perfect subtree hash (about 2n
/// hashes): appends are O(1) amortised, proofs and past roots O(log² n).
/// For tests, tools and small logs; a store does the same with its tables.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    /// `levels[l][i]` is the hash of `NodeId { level: l, index: i }`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The frontier (what a writer keeps).
    pub fn frontier(&self) -> &Frontier {
        &self.frontier
    }

    /// Appends a leaf hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> Result<u64, TreeError> {
        let levels = &mut self.levels;
        self.frontier.push_with(leaf, |id, hash| {
            let level = usize::from(id.level);
            if levels.len() <= level {
                levels.resize_with(level + 1, Vec::new);
            }
            levels[level].push(*hash);
        })
    }

    /// Appends the leaf hash of `entry`; returns its index.
    pub fn push_entry(&mut self, entry: &[u8]) -> Result<u64, TreeError> {
        self.push(leaf_hash(entry))
    }

    /// The leaf hash at `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.node(NodeId::leaf(index))
    }

    fn node(&self, id: NodeId) -> Option<Hash> {
        let index = usize::try_from(id.index).ok()?;
        self.levels.get(usize::from(id.level))?.get(index).copied()
    }

    /// The root the tree had when it held `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, ProofError> {
        self.check_size(size)?;
        root_at(self, size).map_err(flatten)
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(size)?;
        inclusion_proof(self, index, size).map_err(flatten)
    }

    /// The consistency proof from the tree of `old` leaves to that of `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ProofError> {
        self.check_size(new)?;
        consistency_proof(self, old, new).map_err(flatten)
    }

    fn check_size(&self, requested: u64) -> Result<(), ProofError> {
        if requested > self.size() {
            return Err(ProofError::SizeBeyondTree {
                requested,
                size: self.size(),
            });
        }
        Ok(())
    }
}

fn flatten(error: SourceError<ProofError>) -> ProofError {
    match error {
        SourceError::Proof(e) | SourceError::Source(e) => e,
    }
}

impl NodeSource for MemoryTree {
    type Error = ProofError;

    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ProofError> {
        ids.iter()
            .map(|id| self.node(*id).ok_or(ProofError::MissingNode(*id)))
            .collect()
    }
}
