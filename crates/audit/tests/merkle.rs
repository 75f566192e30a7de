//! RFC 9162 trees and proofs: the published RFC 6962 test vectors, and
//! properties against a naive reference implementation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_audit::NodeSource;
use gatehouse_audit::merkle::{self, root_from_inclusion_proof};
use gatehouse_audit::{
    Frontier, Hash, MemoryTree, NodeId, ProofError, ProofPlan, empty_root, leaf_hash, node_hash,
    verify_consistency, verify_inclusion,
};
use proptest::prelude::*;

/// The leaves of the RFC 6962 test vectors (transparency-dev/merkle).
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The roots for sizes 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn h(hex: &str) -> Hash {
    Hash::from_hex(hex).unwrap()
}

fn vector_tree() -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in LEAVES {
        tree.push_entry(&hex::decode(leaf).unwrap()).unwrap();
    }
    tree
}

#[test]
fn roots_match_rfc6962_vectors() {
    assert_eq!(empty_root(), h(ROOTS[0]));
    let tree = vector_tree();
    let leaves: Vec<Hash> = (0..8).map(|i| tree.leaf(i).unwrap()).collect();
    for size in 0..=8u64 {
        assert_eq!(
            tree.root_at(size).unwrap(),
            h(ROOTS[size as usize]),
            "size {size}"
        );
        assert_eq!(
            merkle::root(&leaves[..size as usize]),
            h(ROOTS[size as usize])
        );
    }
    assert_eq!(tree.root(), h(ROOTS[8]));
}

#[test]
fn proofs_match_rfc6962_vectors() {
    let tree = vector_tree();
    let inclusion: [(u64, u64, &[&str]); 3] = [
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (0, 1, &[]),
    ];
    for (index, size, proof) in inclusion {
        let expected: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(tree.inclusion_proof(index, size).unwrap(), expected);
        let leaf = tree.leaf(index).unwrap();
        verify_inclusion(&leaf, index, size, &expected, &h(ROOTS[size as usize])).unwrap();
    }
    let consistency: [(u64, u64, &[&str]); 3] = [
        (
            2,
            8,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for (old, new, proof) in consistency {
        let expected: Vec<Hash> = proof.iter().map(|p| h(p)).collect();
        assert_eq!(tree.consistency_proof(old, new).unwrap(), expected);
        verify_consistency(
            old,
            new,
            &h(ROOTS[old as usize]),
            &h(ROOTS[new as usize]),
            &expected,
        )
        .unwrap();
    }
}

#[test]
fn edge_cases_have_clear_errors() {
    let tree = vector_tree();
    let root = tree.root();
    let leaf = tree.leaf(0).unwrap();
    assert_eq!(
        verify_inclusion(&leaf, 8, 8, &[], &root),
        Err(ProofError::IndexOutOfRange { index: 8, size: 8 })
    );
    assert_eq!(
        tree.inclusion_proof(0, 9),
        Err(ProofError::SizeBeyondTree {
            requested: 9,
            size: 8
        })
    );
    assert_eq!(
        verify_consistency(5, 4, &root, &root, &[]),
        Err(ProofError::SizesOutOfOrder { old: 5, new: 4 })
    );
    // Equal sizes: empty proof, equal roots.
    verify_consistency(8, 8, &root, &root, &[]).unwrap();
    assert_eq!(
        verify_consistency(8, 8, &root, &root, &[root]),
        Err(ProofError::ProofNotEmpty)
    );
    assert!(verify_consistency(8, 8, &leaf, &root, &[]).is_err());
    // The empty tree is a prefix of everything, with its own root.
    verify_consistency(0, 8, &empty_root(), &root, &[]).unwrap();
    assert!(verify_consistency(0, 8, &root, &root, &[]).is_err());
    assert_eq!(
        verify_consistency(3, 8, &h(ROOTS[3]), &root, &[]),
        Err(ProofError::ProofTooShort)
    );
    assert_eq!(
        ProofPlan::inclusion(0, 8).unwrap().assemble(&[]),
        Err(ProofError::WrongHashCount {
            expected: 3,
            got: 0
        })
    );
    assert!(Hash::from_hex("00").is_err());
    assert!(Hash::from_base64("not base64").is_err());
}

#[test]
fn frontier_reports_completed_subtrees_and_restores() {
    let mut frontier = Frontier::new();
    let mut seen = Vec::new();
    for i in 0..4u64 {
        frontier
            .push_with(leaf_hash(&i.to_be_bytes()), |id, _| seen.push(id))
            .unwrap();
    }
    let ids = |pairs: &[(u8, u64)]| -> Vec<NodeId> {
        pairs
            .iter()
            .map(|&(level, index)| NodeId { level, index })
            .collect()
    };
    assert_eq!(
        seen,
        ids(&[(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0)])
    );
    assert_eq!(Frontier::plan(13), ids(&[(3, 0), (2, 2), (0, 12)]));
}

/// The RFC 9162 MTH, literally.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = largest_power_below(n);
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

fn largest_power_below(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 9162 §2.1.3.1 PATH, literally.
fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = largest_power_below(n);
    if m < k {
        let mut p = naive_path(m, &leaves[..k]);
        p.push(naive_root(&leaves[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &leaves[k..]);
        p.push(naive_root(&leaves[..k]));
        p
    }
}

/// RFC 9162 §2.1.4.1 SUBPROOF, literally.
fn naive_subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if whole {
            Vec::new()
        } else {
            vec![naive_root(leaves)]
        };
    }
    let k = largest_power_below(n);
    if m <= k {
        let mut p = naive_subproof(m, &leaves[..k], whole);
        p.push(naive_root(&leaves[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &leaves[k..], false);
        p.push(naive_root(&leaves[..k]));
        p
    }
}

fn leaves(n: usize, salt: u64) -> Vec<Hash> {
    (0..n as u64)
        .map(|i| leaf_hash(&[i.to_be_bytes(), salt.to_be_bytes()].concat()))
        .collect()
}

fn tree_of(leaves: &[Hash]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in leaves {
        tree.push(*leaf).unwrap();
    }
    tree
}

fn flip(proof: &[Hash], at: usize, bit: u8) -> Vec<Hash> {
    let mut out = proof.to_vec();
    let mut bytes = *out[at].as_bytes();
    bytes[usize::from(bit / 8)] ^= 1 << (bit % 8);
    out[at] = Hash::from_bytes(bytes);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn roots_match_the_naive_definition(n in 0usize..300, salt in any::<u64>()) {
        let leaves = leaves(n, salt);
        let tree = tree_of(&leaves);
        prop_assert_eq!(tree.root(), naive_root(&leaves));
        prop_assert_eq!(merkle::root(&leaves), naive_root(&leaves));
        for size in [0, n / 3, n / 2, n.saturating_sub(1)] {
            prop_assert_eq!(tree.root_at(size as u64).unwrap(), naive_root(&leaves[..size]));
        }
        // A frontier restored from the planned nodes continues identically.
        let plan = Frontier::plan(n as u64);
        let hashes = tree.nodes(&plan).unwrap();
        let mut restored = Frontier::restore(n as u64, hashes).unwrap();
        prop_assert_eq!(&restored, tree.frontier());
        let extra = leaf_hash(b"one more");
        restored.push(extra).unwrap();
        let mut longer = leaves.clone();
        longer.push(extra);
        prop_assert_eq!(restored.root(), naive_root(&longer));
    }

    #[test]
    fn inclusion_proofs_verify_and_nothing_else_does(
        n in 1usize..300, pick in any::<prop::sample::Index>(), salt in any::<u64>(),
        at in any::<prop::sample::Index>(), bit in any::<u8>(),
    ) {
        let leaves = leaves(n, salt);
        let tree = tree_of(&leaves);
        let root = tree.root();
        let m = pick.index(n);
        let proof = tree.inclusion_proof(m as u64, n as u64).unwrap();
        prop_assert_eq!(&proof, &naive_path(m, &leaves));
        let (m64, n64) = (m as u64, n as u64);
        verify_inclusion(&leaves[m], m64, n64, &proof, &root).unwrap();

        // Wrong leaf, wrong index, wrong root: all fail.
        prop_assert!(verify_inclusion(&leaf_hash(b"forged"), m64, n64, &proof, &root).is_err());
        for other in [m64 + 1, m64 ^ 1, m64.wrapping_sub(1)] {
            if other != m64 {
                prop_assert!(verify_inclusion(&leaves[m], other, n64, &proof, &root).is_err());
            }
        }
        // (A wrong *size* alone can pass when the path has the same shape,
        // e.g. leaf 0 in 7 or 8 leaves: the size is bound to the root by the
        // signed checkpoint, not by the proof.)
        prop_assert!(verify_inclusion(&leaves[m], m64, n64, &proof, &leaf_hash(b"x")).is_err());
        // Tampered proofs: a flipped bit, a dropped or added hash.
        if !proof.is_empty() {
            let tampered = flip(&proof, at.index(proof.len()), bit);
            prop_assert!(verify_inclusion(&leaves[m], m64, n64, &tampered, &root).is_err());
            let shorter = &proof[..proof.len() - 1];
            prop_assert_eq!(
                root_from_inclusion_proof(&leaves[m], m64, n64, shorter),
                Err(ProofError::ProofTooShort)
            );
        }
        let mut longer = proof.clone();
        longer.push(root);
        prop_assert_eq!(
            root_from_inclusion_proof(&leaves[m], m64, n64, &longer),
            Err(ProofError::ProofTooLong)
        );
    }

    #[test]
    fn consistency_proofs_verify_and_nothing_else_does(
        n in 1usize..300, pick in any::<prop::sample::Index>(), salt in any::<u64>(),
        at in any::<prop::sample::Index>(), bit in any::<u8>(),
    ) {
        let leaves = leaves(n, salt);
        let tree = tree_of(&leaves);
        let m = pick.index(n) + 1; // 1..=n
        let (m64, n64) = (m as u64, n as u64);
        let old_root = tree.root_at(m64).unwrap();
        let new_root = tree.root();
        let proof = tree.consistency_proof(m64, n64).unwrap();
        if m < n {
            prop_assert_eq!(&proof, &naive_subproof(m, &leaves, true));
        } else {
            prop_assert!(proof.is_empty());
        }
        verify_consistency(m64, n64, &old_root, &new_root, &proof).unwrap();

        if m < n {
            // A different old tree (same size, one leaf changed) is not a prefix.
            let mut forked = leaves.clone();
            forked[m - 1] = leaf_hash(b"rewritten history");
            let forked_root = naive_root(&forked[..m]);
            prop_assert!(verify_consistency(m64, n64, &forked_root, &new_root, &proof).is_err());
            prop_assert!(verify_consistency(m64, n64, &old_root, &leaf_hash(b"x"), &proof).is_err());
            let tampered = flip(&proof, at.index(proof.len()), bit);
            prop_assert!(verify_consistency(m64, n64, &old_root, &new_root, &tampered).is_err());
            prop_assert!(
                verify_consistency(m64, n64, &old_root, &new_root, &proof[..proof.len() - 1]).is_err()
            );
            let mut longer = proof.clone();
            longer.push(new_root);
            prop_assert!(verify_consistency(m64, n64, &old_root, &new_root, &longer).is_err());
            if m > 1 {
                let smaller_root = tree.root_at(m64 - 1).unwrap();
                prop_assert!(
                    verify_consistency(m64 - 1, n64, &smaller_root, &new_root, &proof).is_err()
                );
            }
        }
    }
}

/// A store-like source that counts the subtree hashes it is asked for.
struct Counting<'a> {
    tree: &'a MemoryTree,
    asked: std::cell::Cell<usize>,
}

impl NodeSource for Counting<'_> {
    type Error = ProofError;
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, ProofError> {
        self.asked.set(self.asked.get() + ids.len());
        self.tree.nodes(ids)
    }
}

/// Proofs from a store read O(log² n) subtree hashes, never the leaves.
#[test]
fn proofs_from_a_source_read_few_nodes() {
    let n = 100_003u64;
    let mut tree = MemoryTree::new();
    for i in 0..n {
        tree.push(leaf_hash(&i.to_be_bytes())).unwrap();
    }
    let source = Counting {
        tree: &tree,
        asked: std::cell::Cell::new(0),
    };
    let bound = 17 * 17; // log2(100 003) < 17
    for (index, size) in [(0, n), (n - 1, n), (54_321, n), (99_999, 100_000)] {
        source.asked.set(0);
        let proof = gatehouse_audit::tree::inclusion_proof(&source, index, size).unwrap();
        assert!(source.asked.get() <= bound, "{} nodes", source.asked.get());
        verify_inclusion(
            &tree.leaf(index).unwrap(),
            index,
            size,
            &proof,
            &tree.root_at(size).unwrap(),
        )
        .unwrap();
    }
    for (old, new) in [(1, n), (65_537, n), (99_999, 100_001)] {
        source.asked.set(0);
        let proof = gatehouse_audit::tree::consistency_proof(&source, old, new).unwrap();
        assert!(source.asked.get() <= bound, "{} nodes", source.asked.get());
        verify_consistency(
            old,
            new,
            &tree.root_at(old).unwrap(),
            &tree.root_at(new).unwrap(),
            &proof,
        )
        .unwrap();
    }
    source.asked.set(0);
    let root = gatehouse_audit::tree::root_at(&source, n).unwrap();
    assert_eq!(root, tree.root());
    assert_eq!(source.asked.get(), n.count_ones() as usize);
}
