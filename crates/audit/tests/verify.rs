//! Whole-log verification: an honest log verifies; every kind of tampering
//! with a stored entry or checkpoint is caught, and the report names the
//! right entry or checkpoint.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::convert::Infallible;

use gatehouse_audit::canonical;
use gatehouse_audit::checkpoint::CheckpointError;
use gatehouse_audit::{
    Checkpoint, CheckpointRef, Ed25519Signer, EntryLeaf, Hash, KeyName, MemoryTree, Mismatch,
    NoteError, Progress, Report, StoredCheckpoint, StoredEntry, VerifierKey, VerifyError,
    VerifyOptions, leaf_hash, verify_log,
};
use proptest::prelude::*;
use serde_json::json;

const ORIGIN: &str = "gatehouse.example/audit/acme";

fn signer(seed: u8) -> Ed25519Signer {
    Ed25519Signer::from_seed(KeyName::parse(ORIGIN).unwrap(), &[seed; 32])
}

fn body(i: u64, variant: &str) -> Vec<u8> {
    canonical::to_vec(&json!({
        "index": i,
        "kind": "gate.decided",
        "tenant": "ten_acme",
        "sealed": format!("{variant}-ciphertext-{i}"),
    }))
    .unwrap()
}

fn entry(index: u64, bytes: Vec<u8>) -> StoredEntry {
    let hash = leaf_hash(&bytes);
    StoredEntry {
        index,
        leaf: EntryLeaf::Body {
            bytes,
            stored_hash: Some(hash),
        },
    }
}

fn sign(signer: &Ed25519Signer, origin: &str, size: u64, root: Hash) -> String {
    let cp = Checkpoint::new(origin, size, root).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(cp.sign(signer)).unwrap().to_string()
}

#[derive(Debug, Clone)]
struct Log {
    entries: Vec<StoredEntry>,
    checkpoints: Vec<StoredCheckpoint>,
    sizes: Vec<u64>,
}

/// A log of `n` entries with checkpoints at `sizes` (strictly increasing).
fn build(n: u64, sizes: &[u64]) -> Log {
    let signer = signer(1);
    let mut tree = MemoryTree::new();
    let mut entries = Vec::new();
    for i in 0..n {
        let bytes = body(i, "orig");
        tree.push_entry(&bytes).unwrap();
        entries.push(entry(i, bytes));
    }
    let checkpoints = sizes
        .iter()
        .enumerate()
        .map(|(seq, &size)| StoredCheckpoint {
            seq: seq as u64,
            note: sign(&signer, ORIGIN, size, tree.root_at(size).unwrap()),
        })
        .collect();
    Log {
        entries,
        checkpoints,
        sizes: sizes.to_vec(),
    }
}

fn keys() -> Vec<VerifierKey> {
    use gatehouse_audit::Signer as _;
    vec![signer(1).verifier_key()]
}

fn run(log: &Log, kept: &[String]) -> Result<Report, Mismatch> {
    let keys = keys();
    let options = VerifyOptions::new(ORIGIN, &keys);
    let entries = log.entries.iter().cloned().map(Ok::<_, Infallible>);
    verify_log(entries, &log.checkpoints, kept, &options, |_| {}).map_err(|e| match e {
        VerifyError::Mismatch(m) => m,
        VerifyError::Source(never) => match never {},
    })
}

#[test]
fn an_honest_log_verifies() {
    let log = build(37, &[1, 8, 20, 37]);
    let report = run(&log, &[log.checkpoints[2].note.clone()]).unwrap();
    let mut tree = MemoryTree::new();
    for i in 0..37 {
        tree.push_entry(&body(i, "orig")).unwrap();
    }
    assert_eq!(
        report,
        Report {
            entries: 37,
            root: tree.root(),
            stored_checkpoints: 4,
            kept_checkpoints: 1,
            signed_size: Some(37),
        }
    );
    // Leaf hashes alone verify too (an export without bodies).
    let hashes_only = Log {
        entries: log
            .entries
            .iter()
            .map(|e| StoredEntry {
                index: e.index,
                leaf: match &e.leaf {
                    EntryLeaf::Body { bytes, .. } => EntryLeaf::Hash(leaf_hash(bytes)),
                    other => other.clone(),
                },
            })
            .collect(),
        ..log.clone()
    };
    assert_eq!(run(&hashes_only, &[]).unwrap().root, tree.root());
    // An empty log with an empty checkpoint verifies.
    let empty = build(0, &[0]);
    assert_eq!(run(&empty, &[]).unwrap().entries, 0);
}

#[test]
fn progress_is_reported_while_replaying() {
    let log = build(10, &[10]);
    let keys = keys();
    let mut options = VerifyOptions::new(ORIGIN, &keys);
    options.progress_every = 4;
    options.expected_entries = Some(10);
    let mut seen = Vec::new();
    let entries = log.entries.iter().cloned().map(Ok::<_, Infallible>);
    verify_log(entries, &log.checkpoints, &[], &options, |p: &Progress| {
        seen.push((p.entries, p.checkpoints, p.expected_entries))
    })
    .unwrap();
    assert_eq!(
        seen,
        [(4, 0, Some(10)), (8, 0, Some(10)), (10, 1, Some(10))]
    );
}

#[test]
fn a_failing_source_is_reported_as_such() {
    let log = build(3, &[3]);
    let keys = keys();
    let options = VerifyOptions::new(ORIGIN, &keys);
    let entries = log
        .entries
        .iter()
        .cloned()
        .map(Ok)
        .take(1)
        .chain(std::iter::once(Err("disk on fire")));
    match verify_log(entries, &log.checkpoints, &[], &options, |_| {}) {
        Err(VerifyError::Source(e)) => assert_eq!(e, "disk on fire"),
        other => panic!("expected a source error, got {other:?}"),
    }
}

#[test]
fn non_canonical_bodies_and_foreign_checkpoints_are_named() {
    let mut log = build(4, &[4]);
    // Same JSON, not canonical (whitespace), hash rewritten to match.
    log.entries[2] = entry(2, b"{\"index\": 2}".to_vec());
    assert!(matches!(
        run(&log, &[]),
        Err(Mismatch::EntryNotCanonical { position: 2, .. })
    ));

    // A checkpoint of another tenant's log, signed by the same key.
    let mut log = build(4, &[4]);
    let tree_root = match &run(&log, &[]) {
        Ok(report) => report.root,
        Err(e) => panic!("{e}"),
    };
    log.checkpoints[0].note = sign(&signer(1), "gatehouse.example/audit/globex", 4, tree_root);
    assert!(matches!(
        run(&log, &[]),
        Err(Mismatch::Checkpoint {
            at: CheckpointRef::Stored { seq: 0 },
            error: CheckpointError::WrongOrigin { .. }
        })
    ));
}

/// Cutting the newest entries *and* the newest stored checkpoints leaves a
/// consistent shorter log; only a checkpoint kept outside catches it.
#[test]
fn a_cut_tail_is_caught_by_a_kept_checkpoint() {
    let full = build(20, &[10, 20]);
    let kept = vec![full.checkpoints[1].note.clone()];
    let mut cut = full.clone();
    cut.entries.truncate(15);
    cut.checkpoints.truncate(1);
    assert!(run(&cut, &[]).is_ok());
    assert_eq!(
        run(&cut, &kept),
        Err(Mismatch::CheckpointBeyondLog {
            at: CheckpointRef::Kept { ordinal: 0 },
            size: 20,
            log_size: 15,
        })
    );
    // A kept checkpoint that disagrees with the log is named as such.
    let other = build(20, &[20]);
    let mut rewritten = other.clone();
    rewritten.entries[3] = entry(3, body(3, "rewritten"));
    rewritten.checkpoints.clear();
    assert!(matches!(
        run(&rewritten, &kept),
        Err(Mismatch::CheckpointRootMismatch {
            at: CheckpointRef::Kept { ordinal: 0 },
            size: 20,
            since: 0,
            ..
        })
    ));
}

#[derive(Debug, Clone)]
enum Tamper {
    /// Change an entry's bytes, leave its stored hash.
    EditBody(usize),
    /// Rewrite an entry's bytes and its stored hash consistently.
    RewriteEntry(usize),
    /// Delete an entry's row.
    DeleteRow(usize),
    /// Delete an entry and renumber the rows after it.
    DeleteRenumber(usize),
    /// Insert a row that repeats an existing index, after it.
    InsertDuplicate(usize),
    /// Insert an entry and renumber the rows after it.
    InsertRenumber(usize),
    /// Swap two entries' contents (bytes and hashes), keeping the indices.
    SwapContents(usize, usize),
    /// Swap two rows, indices and all, in the order the store returns them.
    SwapRows(usize, usize),
    /// Change the root a stored checkpoint signs.
    EditCheckpoint(usize),
    /// Delete a stored checkpoint's row (not the newest).
    DeleteCheckpoint(usize),
    /// Swap the notes of two consecutive stored checkpoints.
    SwapCheckpoints(usize),
    /// Insert a copy of a stored checkpoint after it, renumbering.
    CopyCheckpoint(usize),
    /// Insert a checkpoint signed by an untrusted key, renumbering.
    ForgeCheckpoint(usize),
}

/// The first checkpoint (by sequence) covering entry `i`, and the size of
/// the one before it.
fn covering(sizes: &[u64], i: u64) -> (u64, u64, u64) {
    let seq = sizes.iter().position(|&s| s > i).unwrap();
    let since = if seq == 0 { 0 } else { sizes[seq - 1] };
    (seq as u64, sizes[seq], since)
}

fn root_mismatch_at(result: &Result<Report, Mismatch>, sizes: &[u64], i: u64) -> bool {
    let (seq, size, since) = covering(sizes, i);
    matches!(result, Err(Mismatch::CheckpointRootMismatch { at: CheckpointRef::Stored { seq: s }, size: z, since: c, .. })
        if *s == seq && *z == size && *c == since)
}

fn arb_case() -> impl Strategy<Value = (Log, Tamper)> {
    (2u64..40)
        .prop_flat_map(|n| {
            (
                Just(n),
                prop::collection::btree_set(1..n, 0..5),
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
                0u8..13,
            )
        })
        .prop_map(|(n, mut sizes, a, b, kind)| {
            sizes.insert(n);
            let sizes: Vec<u64> = sizes.into_iter().collect();
            let log = build(n, &sizes);
            let (i, j) = {
                let (x, y) = (a.index(n as usize), b.index(n as usize));
                (x.min(y), x.max(y))
            };
            let c = sizes.len();
            let k = a.index(c);
            let tamper = match kind {
                0 => Tamper::EditBody(i),
                1 => Tamper::RewriteEntry(i),
                2 => Tamper::DeleteRow(i),
                3 => Tamper::DeleteRenumber(i),
                4 => Tamper::InsertDuplicate(i),
                5 => Tamper::InsertRenumber(i),
                6 if i != j => Tamper::SwapContents(i, j),
                7 if i != j => Tamper::SwapRows(i, j),
                6 | 7 => Tamper::RewriteEntry(i),
                8 => Tamper::EditCheckpoint(k),
                9 if c > 1 => Tamper::DeleteCheckpoint(b.index(c - 1)),
                10 if c > 1 => Tamper::SwapCheckpoints(b.index(c - 1)),
                11 => Tamper::CopyCheckpoint(k),
                _ => Tamper::ForgeCheckpoint(k),
            };
            (log, tamper)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tampering_is_detected_at_the_right_position((log, tamper) in arb_case()) {
        prop_assert!(run(&log, &[]).is_ok());
        let n = log.entries.len() as u64;
        let sizes = log.sizes.clone();
        let mut t = log.clone();
        let result;
        match tamper {
            Tamper::EditBody(i) => {
                if let EntryLeaf::Body { bytes, .. } = &mut t.entries[i].leaf {
                    *bytes = body(i as u64, "edited");
                }
                result = run(&t, &[]);
                prop_assert!(matches!(result, Err(Mismatch::LeafHashMismatch { position, .. }) if position == i as u64), "{result:?}");
            }
            Tamper::RewriteEntry(i) => {
                t.entries[i] = entry(i as u64, body(i as u64, "rewritten"));
                result = run(&t, &[]);
                prop_assert!(root_mismatch_at(&result, &sizes, i as u64), "{result:?}");
            }
            Tamper::DeleteRow(i) => {
                t.entries.remove(i);
                result = run(&t, &[]);
                if (i as u64) < n - 1 {
                    prop_assert_eq!(result, Err(Mismatch::EntryMissing { position: i as u64, found: i as u64 + 1 }));
                } else {
                    let last = sizes.len() as u64 - 1;
                    prop_assert_eq!(result, Err(Mismatch::CheckpointBeyondLog { at: CheckpointRef::Stored { seq: last }, size: n, log_size: n - 1 }));
                }
            }
            Tamper::DeleteRenumber(i) => {
                t.entries.remove(i);
                for (pos, e) in t.entries.iter_mut().enumerate() { e.index = pos as u64; }
                result = run(&t, &[]);
                let (seq, size, _) = covering(&sizes, i as u64);
                if size < n {
                    prop_assert!(root_mismatch_at(&result, &sizes, i as u64), "{result:?}");
                } else {
                    prop_assert_eq!(result, Err(Mismatch::CheckpointBeyondLog { at: CheckpointRef::Stored { seq }, size, log_size: n - 1 }));
                }
            }
            Tamper::InsertDuplicate(i) => {
                t.entries.insert(i + 1, entry(i as u64, body(i as u64, "inserted")));
                result = run(&t, &[]);
                prop_assert_eq!(result, Err(Mismatch::EntryOutOfOrder { position: i as u64 + 1, found: i as u64 }));
            }
            Tamper::InsertRenumber(i) => {
                t.entries.insert(i, entry(i as u64, body(i as u64, "inserted")));
                for (pos, e) in t.entries.iter_mut().enumerate() { e.index = pos as u64; }
                result = run(&t, &[]);
                prop_assert!(root_mismatch_at(&result, &sizes, i as u64), "{result:?}");
            }
            Tamper::SwapContents(i, j) => {
                let (a, b) = (t.entries[i].leaf.clone(), t.entries[j].leaf.clone());
                t.entries[i].leaf = b;
                t.entries[j].leaf = a;
                result = run(&t, &[]);
                prop_assert!(root_mismatch_at(&result, &sizes, i as u64), "{result:?}");
            }
            Tamper::SwapRows(i, j) => {
                t.entries.swap(i, j);
                result = run(&t, &[]);
                prop_assert_eq!(result, Err(Mismatch::EntryMissing { position: i as u64, found: j as u64 }));
            }
            Tamper::EditCheckpoint(k) => {
                let note = &t.checkpoints[k].note;
                let other_root = Hash::from_bytes([0xab; 32]).to_base64();
                let mut lines: Vec<&str> = note.split('\n').collect();
                lines[2] = &other_root;
                t.checkpoints[k].note = lines.join("\n");
                result = run(&t, &[]);
                prop_assert!(matches!(&result, Err(Mismatch::Checkpoint { at: CheckpointRef::Stored { seq }, error: CheckpointError::Signature(NoteError::BadSignature { .. }) }) if *seq == k as u64), "{result:?}");
            }
            Tamper::DeleteCheckpoint(k) => {
                t.checkpoints.remove(k);
                result = run(&t, &[]);
                prop_assert_eq!(result, Err(Mismatch::CheckpointMissing { expected: k as u64, found: k as u64 + 1 }));
            }
            Tamper::SwapCheckpoints(k) => {
                let (a, b) = (t.checkpoints[k].note.clone(), t.checkpoints[k + 1].note.clone());
                t.checkpoints[k].note = b;
                t.checkpoints[k + 1].note = a;
                result = run(&t, &[]);
                prop_assert_eq!(result, Err(Mismatch::CheckpointNotGrowing { at: CheckpointRef::Stored { seq: k as u64 + 1 }, size: sizes[k], previous: sizes[k + 1] }));
            }
            Tamper::CopyCheckpoint(k) => {
                let copy = t.checkpoints[k].clone();
                t.checkpoints.insert(k + 1, copy);
                for (seq, c) in t.checkpoints.iter_mut().enumerate() { c.seq = seq as u64; }
                result = run(&t, &[]);
                prop_assert_eq!(result, Err(Mismatch::CheckpointNotGrowing { at: CheckpointRef::Stored { seq: k as u64 + 1 }, size: sizes[k], previous: sizes[k] }));
            }
            Tamper::ForgeCheckpoint(k) => {
                let forged = sign(&signer(2), ORIGIN, sizes[k], Hash::from_bytes([1; 32]));
                t.checkpoints.insert(k, StoredCheckpoint { seq: 0, note: forged });
                for (seq, c) in t.checkpoints.iter_mut().enumerate() { c.seq = seq as u64; }
                result = run(&t, &[]);
                prop_assert!(matches!(&result, Err(Mismatch::Checkpoint { at: CheckpointRef::Stored { seq }, error: CheckpointError::Signature(NoteError::NoTrustedSignature(_)) }) if *seq == k as u64), "{result:?}");
            }
        }
    }
}
